"""The task queue: the one owner of task records.

Tasks live in memory (indexed by status and priority lane) and every change is committed to the store before the
call that made it returns, so whatever a caller says next is already durable. Decisions about single tasks are
the pure functions in :mod:`hub.tasks`; this module applies them, persists, indexes and publishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from hub import lifecycle as L
from hub import tasks as T
from hub.clock import Clock
from hub.events import EventBus, bus_event
from hub.listeners import EventFeed
from hub.store import Change, DeleteEvents, DeleteTask, DeleteTrajectory, PutTask, Store, TaskRow
from hub.task_index import TaskIndex
from hub.task_shape import CorruptTask
from hub.tasks import EndReason, Task, TaskStatus, TransitionError
from shared.payloads import Payload, TaskResult, Usage, VerificationReport

logger = logging.getLogger(__name__)


OnApplied = Callable[[str], Awaitable[None]]
"""Called with the ack status once an attempt's end is applied in memory and queued for commit, before the commit
completes: freeing the agent there lets its next assignment share the same commit."""


Told = tuple[L.LifecycleEvent, Task | None]
"""A lifecycle event and the task it is about (for the dashboard's view of it; None for events of several)."""


class UnknownDependencies(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown depends_on ids: {', '.join(missing)}")
        self.missing = missing


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


class TaskQueue(TaskIndex):
    def __init__(self, store: Store, bus: EventBus, clock: Clock, max_history: int = 50) -> None:
        super().__init__()
        self._store = store
        self._bus = bus
        self.feed = EventFeed(store)
        """The typed lifecycle events: stored with each change, delivered to lossless listeners after its commit."""
        self._clock = clock
        self._max_history = max_history
        self.n_submitted = 0
        self.n_pruned = 0
        self.n_quarantined = 0
        """Stored rows skipped at load because they cannot be read back (see :meth:`load`)."""
        self.backoff: Callable[[int], int] = lambda ended: 0
        """The wait (ms) before a retry after ``ended`` attempts ended (hub/retry_backoff.py sets it)."""

    def __repr__(self) -> str:
        counts = {s: len(d) for s, d in self._by_status.items() if d}
        return "<TaskQueue " + " ".join(f"{s}={n}" for s, n in sorted(counts.items())) + ">"

    # --- loading ----------------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read every stored task back. A row that cannot be read (see ``Task.from_json``) is quarantined: left
        untouched on disk, counted in ``n_quarantined`` and named in one warning, so one bad row never blocks the
        start; the hub never writes it again, since nothing in memory stands for it."""
        for raw_id, body in await self._store.load_tasks():
            row_id = bytes(raw_id or b"").decode("utf-8", "backslashreplace")
            try:
                task = Task.from_json(body)
                if task.id != row_id:
                    raise CorruptTask(f"the body's id is {task.id[:64]!r}")
            except CorruptTask as exc:
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
        status = T.end_attempt(task, reason, error, now, result=result, backoff_ms=self.backoff(task.retry_count + 1))
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

    async def dead_letter_queued(self, tasks: Sequence[Task], reason: str, detail: str) -> list[Task]:
        """Dead-letter queued tasks that will not be run (a goal stopped by fail-fast), their dependents with them;
        tasks no longer queued are left alone. Returns the tasks dead-lettered (the dependents included)."""
        now = self._clock.now_ms()
        changed: list[Task] = []
        events: list[Told] = []
        for task in tasks:
            if task.status is not TaskStatus.QUEUED:
                continue
            task.status = TaskStatus.DEAD_LETTER
            task.dead_letter_reason = reason
            task.last_error = f"{reason}: {detail}"[:2000]
            T.record(task, "dead_letter", now, reason=reason, detail=detail[:500])
            cascaded = self._cascade(task, now)
            changed += [task, *cascaded]
            events += [
                self._told(L.TaskDeadLettered, task, reason=reason, dependency_id=""),
                *self._cascaded(cascaded, task),
            ]
        if changed:
            await self._commit(changed, events)
        return changed
