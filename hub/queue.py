"""The task queue: the one owner of task records.

Tasks live in memory (indexed by status and priority lane) and every change is committed to the store before the
call that made it returns, so whatever a caller says next is already durable. Decisions about single tasks are
the pure functions in :mod:`hub.tasks`; this module applies them, persists, indexes and publishes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from hub import lifecycle as L
from hub import tasks as T
from hub.clock import Clock
from hub.events import EventBus, bus_event
from hub.listeners import EventFeed
from hub.store import Change, DeleteEvents, DeleteTask, DeleteTrajectory, PutTask, Store, TaskRow
from hub.tasks import EndReason, Task, TaskStatus, TransitionError
from shared.payloads import Payload, TaskResult, Usage, VerificationReport

logger = logging.getLogger(__name__)


OnApplied = Callable[[str], Awaitable[None]]
"""Called with the ack status once an attempt's end is applied in memory and queued for commit, before the commit
completes: freeing the agent there lets its next assignment share the same commit."""


RECENT_KEPT = 100
"""Tasks kept in the recently-changed list (the dashboard shows as many)."""

Told = tuple[L.LifecycleEvent, Task | None]
"""A lifecycle event and the task it is about (for the dashboard's view of it; None for events of several)."""


class UnknownDependencies(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown depends_on ids: {', '.join(missing)}")
        self.missing = missing


class TaskNotFound(Exception):
    pass


@dataclass(slots=True)
class Submission:
    """One request submitted with an idempotency key: what a retry of it is answered with."""

    sha256: str
    task_ids: list[str]
    committed: asyncio.Future[None] | None = None
    """The commit of its tasks, while pending (None once loaded from the store)."""


def _row(task: Task) -> PutTask:
    def build() -> TaskRow:
        return TaskRow(
            task.id,
            str(task.status),
            task.priority,
            task.created_at,
            task.updated_at,
            task.assigned_to,
            task.goal_id,
            task.to_json(),
        )

    return PutTask(task.id, build)


def _stored(payload: Payload | None) -> dict[str, Any] | None:
    """A reported payload as the task record keeps it: the fields the sidecar sent, unknown ones left out."""
    return None if payload is None else payload.model_dump(mode="json", exclude_unset=True)


def _stored_report(report: VerificationReport) -> dict[str, Any]:
    """A verification report as the task record keeps it, its ``outcome`` the one its checks show."""
    return {**report.model_dump(mode="json", exclude_unset=True), "outcome": report.verdict()}


class TaskQueue:
    def __init__(self, store: Store, bus: EventBus, clock: Clock, max_history: int = 50) -> None:
        self._store = store
        self._bus = bus
        self.feed = EventFeed(store)
        """The typed lifecycle events: stored with each change, delivered to lossless listeners after its commit."""
        self._clock = clock
        self._max_history = max_history
        self.tasks: dict[str, Task] = {}
        self._lanes: list[dict[str, Task]] = [{} for _ in T.Priority]
        self._in_flight: dict[str, Task] = {}
        """Assigned and working tasks (at most one per agent), so neither sweeps nor reconnects scan every task."""
        self._dependents: dict[str, set[str]] = {}
        self.n_submitted = 0
        self.submissions: dict[tuple[str, str], Submission] = {}
        """Requests made with an idempotency key, by (submitter, key); rebuilt from the tasks at start."""
        self.on_forget: list[Callable[[str], None]] = []
        """Called with each pruned task's id, for whoever keeps something per task (the trajectory's sequence)."""
        # Indexes kept as tasks change, so counts, lists and snapshots never scan every stored task.
        self._by_status: dict[TaskStatus, dict[str, Task]] = {s: {} for s in TaskStatus}
        """Tasks per status, each in the order they entered it (oldest first: what retention prunes first)."""
        self._by_priority: list[dict[str, Task]] = [{} for _ in T.Priority]
        """Every task per priority, in order of submission (``created_at``): the order ``list`` answers in."""
        self._indexed: dict[str, tuple[TaskStatus, str | None]] = {}
        """The status (and outcome) each task is counted under."""
        self._by_outcome: Counter[str | None] = Counter()
        self._recent: OrderedDict[str, Task] = OrderedDict()
        """The tasks changed last (most recent at the end), at most RECENT_KEPT."""
        self.n_pruned = 0
        self.n_quarantined = 0
        """Stored rows skipped at load because they cannot be read back (see :meth:`load`)."""

    def __repr__(self) -> str:
        counts = {s: len(d) for s, d in self._by_status.items() if d}
        return "<TaskQueue " + " ".join(f"{s}={n}" for s, n in sorted(counts.items())) + ">"

    # --- loading and indexing --------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read every stored task back. A row that cannot be read (see ``Task.from_json``) is quarantined: left
        untouched on disk, counted in ``n_quarantined`` and named in one warning, so one bad row never blocks the
        start; the hub never writes it again, since nothing in memory stands for it."""
        for raw_id, body in await self._store.load_tasks():
            row_id = bytes(raw_id or b"").decode("utf-8", "backslashreplace")
            try:
                task = Task.from_json(body)
                if task.id != row_id:
                    raise T.CorruptTask(f"the body's id is {task.id[:64]!r}")
            except T.CorruptTask as exc:
                self.n_quarantined += 1
                logger.warning("task row %r quarantined (left on disk, not loaded): %s", row_id[:128], exc)
                continue
            self.tasks[task.id] = task
            self._index(task)
            for dep in task.depends_on:
                self._dependents.setdefault(dep, set()).add(task.id)
        self._order_finished()
        logger.info("task queue loaded %d tasks (%d quarantined)", len(self.tasks), self.n_quarantined)
        self._index_submissions(self.tasks.values())
        await self.feed.load()

    def _index(self, task: Task) -> None:
        for lane in self._lanes:
            lane.pop(task.id, None)
        if task.status is TaskStatus.QUEUED:
            self._lanes[task.priority][task.id] = task
        if task.status in T.IN_FLIGHT:
            self._in_flight[task.id] = task
        else:
            self._in_flight.pop(task.id, None)
        self._count(task)

    def _count(self, task: Task) -> None:
        """Move ``task`` between the per-status indexes and counters (O(1)); every status change passes here."""
        was = self._indexed.get(task.id)
        now = (task.status, task.outcome if task.status is TaskStatus.COMPLETED else None)
        if was != now:
            if was is None:
                self._by_priority[task.priority][task.id] = task
            else:
                del self._by_status[was[0]][task.id]
                if was[0] is TaskStatus.COMPLETED:
                    self._by_outcome[was[1]] -= 1
            self._by_status[now[0]][task.id] = task
            if now[0] is TaskStatus.COMPLETED:
                self._by_outcome[now[1]] += 1
            self._indexed[task.id] = now
        self._recent.pop(task.id, None)
        self._recent[task.id] = task
        if len(self._recent) > RECENT_KEPT:
            self._recent.popitem(last=False)

    def _order_finished(self) -> None:
        """After a load: finished tasks in the order they finished (the rows come back in order of creation)."""
        for status in T.FINAL:
            ordered = sorted(self._by_status[status].values(), key=lambda t: t.updated_at)
            self._by_status[status] = {t.id: t for t in ordered}
        self._recent = OrderedDict(
            (t.id, t)
            for t in sorted(
                heapq.nlargest(RECENT_KEPT, self.tasks.values(), key=lambda t: t.updated_at), key=lambda t: t.updated_at
            )
        )

    def queued_in_order(self) -> Iterable[Task]:
        """Queued tasks, most urgent lane first, FIFO (by time of queueing) inside a lane.

        A live view, not a copy (the queue can hold thousands): consume it before changing any task.
        """
        for lane in self._lanes:
            yield from lane.values()

    def in_flight(self) -> list[Task]:
        return list(self._in_flight.values())

    def recent(self, n: int) -> list[Task]:
        """Up to ``n`` tasks changed last, most recent first."""
        return list(itertools.islice(reversed(self._recent.values()), n))

    def latest(self, status: TaskStatus, n: int) -> list[Task]:
        """Up to ``n`` tasks of ``status``, those that entered it last first."""
        return list(itertools.islice(reversed(self._by_status[status].values()), n))

    def oldest(self, status: TaskStatus) -> Iterator[Task]:
        """Tasks of ``status``, those that entered it first first. A live view: consume it before any change."""
        return iter(self._by_status[status].values())

    def count(self, status: TaskStatus) -> int:
        return len(self._by_status[status])

    def depended_on(self, task: Task) -> bool:
        """Whether a stored task that may still run (anything not completed) depends on ``task``."""
        return any(
            (dep := self.tasks.get(d)) is not None and dep.status is not TaskStatus.COMPLETED
            for d in self._dependents.get(task.id, ())
        )

    def assigned_to(self, agent_id: str) -> Task | None:
        for task in self._in_flight.values():
            if task.assigned_to == agent_id:
                return task
        return None

    def deps_done(self, task: Task) -> bool:
        return all(
            (dep := self.tasks.get(d)) is not None and dep.status is TaskStatus.COMPLETED for d in task.depends_on
        )

    def get(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise TaskNotFound(task_id) from None

    def _index_submissions(self, tasks: Iterable[Task], committed: Awaitable[None] | None = None) -> None:
        """Remember the tasks submitted with an idempotency key, in their request's order. A request whose commit
        fails is forgotten, so its retry submits again. A malformed stored entry is skipped, never fatal."""
        for task in tasks:
            idem = task.idempotency
            if not isinstance(idem, dict) or task.submitted_by is None:
                continue
            key, digest, index = idem.get("key"), idem.get("sha256"), idem.get("index", 0)
            if not (isinstance(key, str) and isinstance(digest, str) and type(index) is int and 0 <= index < 10_000):
                continue
            scope = (task.submitted_by, key)
            entry = self.submissions.get(scope)
            if entry is None:
                pending = asyncio.ensure_future(committed) if committed is not None else None
                entry = self.submissions[scope] = Submission(digest, [], pending)
                if pending is not None:
                    pending.add_done_callback(partial(self._forget_failed, scope, entry))
            entry.task_ids.extend([""] * (index + 1 - len(entry.task_ids)))
            entry.task_ids[index] = task.id

    def _forget_failed(self, scope: tuple[str, str], entry: Submission, committed: asyncio.Future[None]) -> None:
        if committed.cancelled() or committed.exception() is not None:
            if self.submissions.get(scope) is entry:
                del self.submissions[scope]
        else:
            entry.committed = None

    # --- persistence ------------------------------------------------------------------------------------------

    def _persist(self, changed: list[Task], events: list[Told]) -> Awaitable[None]:
        """Index ``changed`` and queue its rows and the rows of ``events`` for the next commit now (one
        transaction: the event table never disagrees with the tasks); await the result to wait for it. The events
        are delivered once the commit succeeds, before any awaiting caller resumes (a done callback registered
        first runs first), to the lossless listeners and then, as dicts, to the lossy bus."""
        for task in changed:
            self._index(task)
        changes: list[Change] = [_row(t) for t in changed]
        changes += self.feed.rows(e for e, _ in events)
        committed = self._store.enqueue(changes)
        if events:
            committed.add_done_callback(partial(self._publish, events))
        return committed

    def _publish(self, events: list[Told], committed: asyncio.Future[None]) -> None:
        if committed.cancelled() or committed.exception() is not None:
            return  # never committed: nothing happened (its seq numbers stay unused)
        self.feed.deliver(e for e, _ in events)
        for event, task in events:
            self._bus.publish(bus_event(event, task))

    async def _commit(self, changed: list[Task], events: list[Told]) -> None:
        await self._persist(changed, events)

    def _told(self, event: type[L.TaskEvent], task: Task, **fields: Any) -> Told:
        """A lifecycle event about ``task`` as it is now, numbered now (in the order of the commits)."""
        return event(seq=self.feed.next_seq(), at=task.updated_at, task_id=task.id, **fields), task

    def _ended(
        self,
        task: Task,
        then: str,
        outcome: str,
        reason: EndReason | None,
        agent_id: str | None,
        attempt: int,
        generation: int,
        usage: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Told:
        return self._told(
            L.TaskEnded,
            task,
            outcome=outcome,
            reason=None if reason is None else str(reason),
            then=then,
            agent_id=agent_id,
            generation=generation,
            attempt=attempt,
            usage=usage,
            error=error,
        )

    def _cascaded(self, failed: list[Task], root: Task) -> list[Told]:
        return [
            self._told(L.TaskDeadLettered, t, reason=str(EndReason.DEPENDENCY_FAILED), dependency_id=root.id)
            for t in failed
        ]

    def _cascade(self, root: Task, now: int) -> list[Task]:
        """Dependents of a task that can no longer complete fail visibly (transitively)."""
        failed: list[Task] = []
        stack = [root.id]
        while stack:
            for dep_id in sorted(self._dependents.get(stack.pop(), ())):
                dep = self.tasks.get(dep_id)
                if dep is not None and dep.status in T.LIVE and dep.status is TaskStatus.QUEUED:
                    T.fail_dependency(dep, root.id, now)
                    failed.append(dep)
                    stack.append(dep.id)
        return failed

    # --- operations -------------------------------------------------------------------------------------------

    async def submit(self, task: Task, on_applied: OnApplied | None = None) -> Task:
        await self.submit_many([task], on_applied)
        return task

    async def submit_many(self, batch: list[Task], on_applied: OnApplied | None = None) -> list[Task]:
        """Queue tasks in one transaction; dependencies may name earlier tasks of the same batch."""
        earlier: set[str] = set()  # not a copy of every task id: this runs on each submit
        missing = []
        for task in batch:
            missing += [d for d in task.depends_on if d not in self.tasks and d not in earlier]
            earlier.add(task.id)
        if missing:
            raise UnknownDependencies(sorted(set(missing)))
        doomed_by: dict[str, str] = {}
        for task in batch:
            T.record(task, "queued", task.created_at, self._max_history, note="submitted")
            self.tasks[task.id] = task
            for dep in task.depends_on:
                self._dependents.setdefault(dep, set()).add(task.id)
            doomed = next(
                (d for d in task.depends_on if self.tasks[d].status in {TaskStatus.DEAD_LETTER, TaskStatus.CANCELLED}),
                None,
            )
            if doomed is not None:
                T.fail_dependency(task, doomed, task.created_at)
                doomed_by[task.id] = doomed
        self.n_submitted += len(batch)
        told = [
            self._told(
                L.TaskSubmitted,
                t,
                priority=t.priority,
                goal_id=t.goal_id,
                submitted_by=t.submitted_by,
                depends_on=tuple(t.depends_on),
            )
            for t in batch
        ]
        told += [
            self._told(L.TaskDeadLettered, self.tasks[t], reason=str(EndReason.DEPENDENCY_FAILED), dependency_id=dep)
            for t, dep in doomed_by.items()
        ]
        committed = self._persist(batch, told)
        self._index_submissions(batch, committed)
        if on_applied is not None:
            await on_applied("queued")
        await committed
        return batch

    def assign_many(self, pairs: list[tuple[Task, str]]) -> tuple[list[Task], Awaitable[None]]:
        """Assign each queued task to its agent, in memory at once; returns the tasks assigned and the awaitable
        of their commit (queued now, so it can share the commit of whatever made them schedulable)."""
        now = self._clock.now_ms()
        done: list[Task] = []
        told: list[Told] = []
        for task, agent_id in pairs:
            if task.status is TaskStatus.QUEUED:
                T.assign(task, agent_id, now)
                done.append(task)
                told.append(
                    self._told(
                        L.TaskAssigned, task, agent_id=agent_id, generation=task.generation, attempt=T.attempt(task)
                    )
                )
        return done, self._persist(done, told)

    async def accept(self, task_id: str, agent_id: str, generation: int | None) -> Task:
        task = self.get(task_id)
        was = task.status
        T.accept(task, agent_id, generation, self._clock.now_ms())
        if was is not task.status:
            await self._commit(
                [task],
                [
                    self._told(
                        L.TaskAccepted, task, agent_id=agent_id, generation=task.generation, attempt=T.attempt(task)
                    )
                ],
            )
        return task

    async def complete(
        self,
        task_id: str,
        agent_id: str,
        generation: int,
        result: TaskResult,
        *,
        tokens_used: int | None = None,
        usage: Usage | None = None,
        verification_report: VerificationReport | None = None,
        verification_history: list[VerificationReport] | None = None,
        on_applied: OnApplied | None = None,
    ) -> str:
        """Record a reported result; returns the ack status (``complete``, ``retried`` or ``dead_letter``).

        The outcome is the sidecar's, held to the facts (:func:`hub.tasks.outcome_of`); a ``failed`` one ends the
        attempt as a failure (``verification_failed``, or ``agent_error`` when the run itself failed).
        """
        task = self.get(task_id)
        if task.status is TaskStatus.COMPLETED and task.generation == generation and task.assigned_to == agent_id:
            return "complete"  # the same report again (after a reconnect): already recorded
        outcome = T.outcome_of(result, verification_report)
        claimed = T.claimed_outcome(result, verification_report)
        if claimed is not None and claimed != outcome:
            logger.warning(
                "task %s: reported outcome %s does not match its checks; recording %s", task_id, claimed, outcome
            )
        stored = result.model_dump(mode="json", exclude_unset=True)
        report = None if verification_report is None else _stored_report(verification_report)
        history = None if verification_history is None else [_stored_report(r) for r in verification_history]
        used = tokens_used if tokens_used is not None or usage is None else usage.tokens_total
        if outcome == "failed":
            T.require_status(task, T.IN_FLIGHT)  # the same checks, in the same order, as a successful report
            T.check_generation(task, generation)
            if task.assigned_to != agent_id:
                raise TransitionError("not_assigned_to_you")
            reason = EndReason.AGENT_ERROR if result.failed else EndReason.VERIFICATION_FAILED
            task.verification_report, task.verification_history = report, history
            task.usage = _stored(usage)
            error = str(result.error or result.output or "reported failure")[:500]
            ack = await self._end(task, reason, error, result=stored, on_applied=on_applied)
            logger.info(
                "task %s %s outcome=failed reason=%s agent=%s generation=%d", task_id, ack, reason, agent_id, generation
            )
            return ack
        now = self._clock.now_ms()
        T.complete(
            task,
            agent_id,
            generation,
            stored,
            outcome,
            now,
            tokens_used=used,
            verification_report=report,
            verification_history=history,
            usage=_stored(usage),
        )
        told = self._ended(
            task,
            "completed",
            outcome,
            None,
            agent_id,
            T.attempt(task),
            generation,
            task.usage or L.usage_of(stored, used),
        )
        committed = self._persist([task], [told])
        logger.info("task %s completed outcome=%s agent=%s generation=%d", task_id, outcome, agent_id, generation)
        if on_applied is not None:
            await on_applied("complete")
        await committed
        return "complete"

    async def fail(
        self,
        task_id: str,
        agent_id: str,
        generation: int,
        error: str,
        result: TaskResult | None = None,
        on_applied: OnApplied | None = None,
        *,
        usage: Usage | None = None,
        verification_report: VerificationReport | None = None,
        reason: EndReason = EndReason.AGENT_ERROR,
    ) -> str:
        """Record that the agent could not produce a result: the attempt ends as ``reason`` (``agent_error``, or
        the guardrail that stopped its loop)."""
        task = self.get(task_id)
        T.require_status(task, T.IN_FLIGHT)
        T.check_generation(task, generation)
        if task.assigned_to != agent_id:
            raise TransitionError("not_assigned_to_you")
        if usage is not None:
            task.usage = _stored(usage)
        if verification_report is not None:
            task.verification_report = _stored_report(verification_report)
        stored = None if result is None else result.model_dump(mode="json", exclude_unset=True)
        ack = await self._end(task, reason, error, result=stored, on_applied=on_applied)
        logger.info(
            "task %s %s outcome=failed reason=%s agent=%s generation=%d",
            task_id,
            ack,
            reason,
            agent_id,
            generation,
        )
        return ack

    async def reclaim(
        self,
        task_id: str,
        reason: EndReason,
        error: str,
        generation: int | None = None,
        on_applied: OnApplied | None = None,
    ) -> str:
        """End an in-flight attempt for a reason the agent did not report (lost, timed out, stuck, rejected)."""
        task = self.get(task_id)
        T.check_generation(task, generation)
        return await self._end(task, reason, error, on_applied=on_applied)

    async def _end(
        self,
        task: Task,
        reason: EndReason,
        error: str,
        result: dict[str, Any] | None = None,
        on_applied: OnApplied | None = None,
    ) -> str:
        now = self._clock.now_ms()
        agent_id, attempt, generation = task.assigned_to, T.attempt(task), task.generation
        status = T.end_attempt(task, reason, error, now, result=result)
        changed = [task]
        events = [
            self._ended(
                task,
                status,
                "failed",
                reason,
                agent_id,
                attempt,
                generation,
                task.usage or L.usage_of(result),
                error[:500],
            )
        ]
        if status == "dead_letter":
            cascaded = self._cascade(task, now)
            changed += cascaded
            events += self._cascaded(cascaded, task)
        committed = self._persist(changed, events)
        if on_applied is not None:
            await on_applied(status)
        await committed
        return status

    async def cancel(self, task_id: str, by: str | None = None) -> tuple[TaskStatus, str | None]:
        task = self.get(task_id)
        agent_id = task.assigned_to if task.status in T.IN_FLIGHT else None
        previous = T.cancel(task, self._clock.now_ms(), by)
        changed = [task, *self._cascade(task, task.updated_at)]
        await self._commit(
            changed,
            [self._told(L.TaskCancelled, task, previous_status=str(previous), by=by, agent_id=agent_id)]
            + self._cascaded(changed[1:], task),
        )
        return previous, agent_id

    async def retry(self, task_id: str, by: str | None = None) -> Task:
        """Requeue a dead-lettered (or cancelled) task, and with it the dependents it took down with it."""
        task = self.get(task_id)
        now = self._clock.now_ms()
        T.retry(task, now, by)
        revived = [task]
        stack = [task.id]
        while stack:
            for dep_id in sorted(self._dependents.get(stack.pop(), ())):
                dep = self.tasks.get(dep_id)
                if (
                    dep is not None
                    and dep.status is TaskStatus.DEAD_LETTER
                    and (dep.dead_letter_reason == EndReason.DEPENDENCY_FAILED)
                ):
                    T.retry(dep, now, by)
                    revived.append(dep)
                    stack.append(dep.id)
        await self._commit(revived, [self._told(L.TaskRequeued, t, by=by, generation=t.generation) for t in revived])
        return task

    def touch(self, task_id: str) -> None:
        """Note liveness of an in-flight task (progress); kept in memory, it only feeds the stuck sweep."""
        task = self.tasks.get(task_id)
        if task is not None and task.status in T.IN_FLIGHT:
            task.updated_at = self._clock.now_ms()

    # --- queries ----------------------------------------------------------------------------------------------

    def list(
        self,
        status: str | None = None,
        priority: int | None = None,
        assigned_to: str | None = None,
        goal_id: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[Task]:
        """Matching tasks ordered by (priority, created_at), ``offset`` skipped, at most ``limit``.

        Walks the per-priority indexes (already in that order) and stops once enough match; only when a status
        is rare enough that walking would skip far more tasks than it holds are that status's tasks picked by a
        bounded heap instead. Neither sorts every stored task.
        """

        def wanted(t: Task) -> bool:
            return (
                (status is None or t.status == status)
                and (priority is None or t.priority == priority)
                and (assigned_to is None or t.assigned_to == assigned_to)
                and (goal_id is None or t.goal_id == goal_id)
            )

        want = offset + limit
        if status is not None:
            holding = self._by_status[TaskStatus(status)]
            if len(holding) * len(holding) < want * len(self.tasks):  # cheaper than walking past the others
                top = heapq.nsmallest(
                    want, (t for t in holding.values() if wanted(t)), key=lambda t: (t.priority, t.created_at)
                )
                return top[offset:]
        lanes = self._by_priority if priority is None else [self._by_priority[priority]]
        walk = (t for lane in lanes for t in lane.values() if wanted(t))
        return list(itertools.islice(walk, offset, want))

    def stats(self) -> dict[str, Any]:
        """Counts per status, per priority (queued) and per outcome (completed): from counters, never a scan."""
        return {
            "by_status": {s.value: len(self._by_status[s]) for s in TaskStatus},
            "by_priority": {p.name.lower(): len(self._lanes[p]) for p in T.Priority},
            "by_outcome": {k: n for k, n in self._by_outcome.items() if n},
            "dead_letter": len(self._by_status[TaskStatus.DEAD_LETTER]),
            "total": len(self.tasks),
        }

    # --- retention --------------------------------------------------------------------------------------------

    async def prune(self, doomed: Sequence[Task]) -> int:
        """Forget finished tasks, in memory at once and on disk (with their trajectories) in one commit.

        Tasks that are no longer finished, or that a task which may still run depends on, are kept.
        """
        gone = [t for t in doomed if self.tasks.get(t.id) is t and t.status in T.FINAL and not self.depended_on(t)]
        for task in gone:
            self._forget(task)
        self.n_pruned += len(gone)
        # The store orders a delete after any put of the same task still pending in the same transaction. The
        # tasks_pruned event is stored in the same commit; it has no task_id, so no task's deletion takes it.
        told: list[Told] = (
            [
                (
                    L.TasksPruned(
                        seq=self.feed.next_seq(), at=self._clock.now_ms(), task_ids=tuple(t.id for t in gone)
                    ),
                    None,
                )
            ]
            if gone
            else []
        )
        ids = [t.id for t in gone]
        changes: list[Change] = [*map(DeleteTask, ids), *map(DeleteTrajectory, ids), *map(DeleteEvents, ids)]
        changes += self.feed.rows(e for e, _ in told)
        committed = self._store.enqueue(changes)
        if told:
            committed.add_done_callback(partial(self._publish, told))
        await committed
        return len(gone)

    def _forget(self, task: Task) -> None:
        del self.tasks[task.id]
        status, outcome = self._indexed.pop(task.id)
        del self._by_status[status][task.id]
        if status is TaskStatus.COMPLETED:
            self._by_outcome[outcome] -= 1
        del self._by_priority[task.priority][task.id]
        self._recent.pop(task.id, None)
        for dep in task.depends_on:
            dependents = self._dependents.get(dep)
            if dependents is not None:
                dependents.discard(task.id)
                if not dependents:
                    del self._dependents[dep]
        self._dependents.pop(task.id, None)
        idem = task.idempotency
        if isinstance(idem, dict) and task.submitted_by is not None:
            # Keys hold for as long as their tasks are kept: once one is pruned, a retry submits anew.
            self.submissions.pop((task.submitted_by, str(idem.get("key"))), None)
        for forget in self.on_forget:
            forget(task.id)

    def parse_stats(self) -> dict[str, dict[str, int]]:
        """Tool-call parse paths per model, summed over every reported attempt (from ``result.parse_stats``)."""
        total: dict[str, Counter[str]] = {}
        for task in self.tasks.values():
            per_model = (task.result or {}).get("parse_stats")
            if not isinstance(per_model, dict):
                continue
            for model, counts in per_model.items():
                if isinstance(counts, dict):
                    total.setdefault(str(model), Counter()).update(
                        {str(k): v for k, v in counts.items() if isinstance(v, int)}
                    )
        return {model: dict(sorted(counts.items())) for model, counts in sorted(total.items())}
