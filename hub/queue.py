"""The task queue: the one owner of task records.

Tasks live in memory (indexed by status and priority lane) and every change is committed to the store before the
call that made it returns, so whatever a caller says next is already durable. Decisions about single tasks are
the pure functions in :mod:`hub.tasks`; this module applies them, persists, indexes and publishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from hub import tasks as T
from hub.clock import Clock
from hub.events import EventBus
from hub.store import UPSERT_TASK, Deferred, Store, Write
from hub.tasks import EndReason, Task, TaskStatus, TransitionError

logger = logging.getLogger(__name__)


OnApplied = Callable[[str], Awaitable[None]]
"""Called with the ack status once an attempt's end is applied in memory and queued for commit, before the commit
completes: freeing the agent there lets its next assignment share the same commit."""


class UnknownDependencies(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown depends_on ids: {', '.join(missing)}")
        self.missing = missing


class TaskNotFound(Exception):
    pass


def _row(task: Task) -> Write:
    def build() -> tuple[Any, ...]:
        return (task.id, str(task.status), task.priority, task.created_at, task.updated_at, task.assigned_to,
                task.goal_id, task.to_json())

    return UPSERT_TASK, Deferred(task.id, build)


class TaskQueue:
    def __init__(self, store: Store, bus: EventBus, clock: Clock, max_history: int = 50) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._max_history = max_history
        self.tasks: dict[str, Task] = {}
        self._lanes: list[dict[str, Task]] = [{} for _ in T.Priority]
        self._in_flight: dict[str, Task] = {}
        """Assigned and working tasks (at most one per agent), so neither sweeps nor reconnects scan every task."""
        self._dependents: dict[str, set[str]] = {}
        self.n_submitted = 0
        self.n_quarantined = 0
        """Stored rows skipped at load because they cannot be read back (see :meth:`load`)."""

    def __repr__(self) -> str:
        counts = Counter(t.status for t in self.tasks.values())
        return "<TaskQueue " + " ".join(f"{s}={n}" for s, n in sorted(counts.items())) + ">"

    # --- loading and indexing --------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read every stored task back. A row that cannot be read (see ``Task.from_json``) is quarantined: left
        untouched on disk, counted in ``n_quarantined`` and named in one warning, so one bad row never blocks the
        start; the hub never writes it again, since nothing in memory stands for it."""
        # As bytes: text that is not UTF-8 would make SQLite's driver fail the whole query, not just that row.
        rows = await self._store.fetch_all("SELECT CAST(id AS BLOB), CAST(body AS BLOB) FROM tasks ORDER BY created_at")
        for raw_id, body in rows:
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
        logger.info("task queue loaded %d tasks (%d quarantined)", len(self.tasks), self.n_quarantined)

    def _index(self, task: Task) -> None:
        for lane in self._lanes:
            lane.pop(task.id, None)
        if task.status is TaskStatus.QUEUED:
            self._lanes[task.priority][task.id] = task
        if task.status in T.IN_FLIGHT:
            self._in_flight[task.id] = task
        else:
            self._in_flight.pop(task.id, None)

    def queued_in_order(self) -> Iterable[Task]:
        """Queued tasks, most urgent lane first, FIFO (by time of queueing) inside a lane.

        A live view, not a copy (the queue can hold thousands): consume it before changing any task.
        """
        for lane in self._lanes:
            yield from lane.values()

    def in_flight(self) -> list[Task]:
        return list(self._in_flight.values())

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

    # --- persistence ------------------------------------------------------------------------------------------

    def _persist(self, changed: list[Task], events: list[tuple[str, Task, dict[str, Any]]]) -> Awaitable[None]:
        """Index ``changed`` and queue its rows for the next commit now; await the result to wait for it. The
        events are published once the commit succeeds, before any awaiting caller resumes (a done callback
        registered first runs first)."""
        for task in changed:
            self._index(task)
        committed = self._store.enqueue([_row(t) for t in changed])
        if events:
            committed.add_done_callback(partial(self._publish, events))
        return committed

    def _publish(self, events: list[tuple[str, Task, dict[str, Any]]], committed: asyncio.Future[None]) -> None:
        if committed.cancelled() or committed.exception() is not None:
            return  # never committed: nothing happened
        for event, task, extra in events:
            self._bus.publish({
                "kind": "task_event", "event": event, "task_id": task.id, "status": str(task.status),
                "agent_id": task.assigned_to, "priority": task.priority, "goal_id": task.goal_id,
                "timestamp": task.updated_at, **extra,
            })

    async def _commit(self, changed: list[Task], events: list[tuple[str, Task, dict[str, Any]]]) -> None:
        await self._persist(changed, events)

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
        for task in batch:
            T.record(task, "queued", task.created_at, self._max_history, note="submitted")
            self.tasks[task.id] = task
            for dep in task.depends_on:
                self._dependents.setdefault(dep, set()).add(task.id)
            doomed = next((d for d in task.depends_on if self.tasks[d].status in {TaskStatus.DEAD_LETTER,
                                                                                   TaskStatus.CANCELLED}), None)
            if doomed is not None:
                T.fail_dependency(task, doomed, task.created_at)
        self.n_submitted += len(batch)
        committed = self._persist(batch, [("task_submitted", t, {}) for t in batch])
        if on_applied is not None:
            await on_applied("queued")
        await committed
        return batch

    def assign_many(self, pairs: list[tuple[Task, str]]) -> tuple[list[Task], Awaitable[None]]:
        """Assign each queued task to its agent, in memory at once; returns the tasks assigned and the awaitable
        of their commit (queued now, so it can share the commit of whatever made them schedulable)."""
        now = self._clock.now_ms()
        done: list[Task] = []
        for task, agent_id in pairs:
            if task.status is TaskStatus.QUEUED:
                T.assign(task, agent_id, now)
                done.append(task)
        return done, self._persist(done, [("task_assigned", t, {}) for t in done])

    async def accept(self, task_id: str, agent_id: str, generation: int | None) -> Task:
        task = self.get(task_id)
        was = task.status
        T.accept(task, agent_id, generation, self._clock.now_ms())
        if was is not task.status:
            await self._commit([task], [("task_accepted", task, {})])
        return task

    async def complete(
        self, task_id: str, agent_id: str, generation: int, result: dict[str, Any], *,
        tokens_used: int | None = None, verification_report: dict[str, Any] | None = None,
        verification_history: list[dict[str, Any]] | None = None, on_applied: OnApplied | None = None,
    ) -> str:
        """Record a reported result; returns the ack status (``complete``, ``retried`` or ``dead_letter``).

        A result that reports failure, or whose verification failed, ends the attempt as a failure.
        """
        task = self.get(task_id)
        if task.status is TaskStatus.COMPLETED and task.generation == generation and task.assigned_to == agent_id:
            return "complete"  # the same report again (after a reconnect): already recorded
        outcome = T.outcome_of(result, verification_report)
        if outcome == "failed":
            T.require_status(task, T.IN_FLIGHT)  # the same checks, in the same order, as a successful report
            T.check_generation(task, generation)
            if task.assigned_to != agent_id:
                raise TransitionError("not_assigned_to_you")
            reason = EndReason.VERIFICATION_FAILED if result.get("status", "success") == "success" else (
                EndReason.AGENT_ERROR)
            task.verification_report = verification_report
            task.verification_history = verification_history
            error = str(result.get("error") or result.get("output") or "reported failure")[:500]
            return await self._end(task, reason, error, result=result, on_applied=on_applied)
        now = self._clock.now_ms()
        T.complete(task, agent_id, generation, result, outcome, now, tokens_used=tokens_used,
                   verification_report=verification_report, verification_history=verification_history)
        committed = self._persist([task], [("task_completed", task, {"outcome": outcome})])
        if on_applied is not None:
            await on_applied("complete")
        await committed
        return "complete"

    async def fail(self, task_id: str, agent_id: str, generation: int, error: str,
                   result: dict[str, Any] | None = None, on_applied: OnApplied | None = None) -> str:
        task = self.get(task_id)
        T.require_status(task, T.IN_FLIGHT)
        T.check_generation(task, generation)
        if task.assigned_to != agent_id:
            raise TransitionError("not_assigned_to_you")
        return await self._end(task, EndReason.AGENT_ERROR, error, result=result, on_applied=on_applied)

    async def reclaim(self, task_id: str, reason: EndReason, error: str, generation: int | None = None,
                      on_applied: OnApplied | None = None) -> str:
        """End an in-flight attempt for a reason the agent did not report (lost, timed out, stuck, rejected)."""
        task = self.get(task_id)
        T.check_generation(task, generation)
        return await self._end(task, reason, error, on_applied=on_applied)

    async def _end(self, task: Task, reason: EndReason, error: str, result: dict[str, Any] | None = None,
                   on_applied: OnApplied | None = None) -> str:
        now = self._clock.now_ms()
        agent_id = task.assigned_to
        status = T.end_attempt(task, reason, error, now, result=result)
        changed = [task]
        events: list[tuple[str, Task, dict[str, Any]]] = [
            ("task_retried" if status == "retried" else "task_dead_letter", task, {"reason": str(reason),
                                                                                   "from_agent": agent_id})
        ]
        if status == "dead_letter":
            cascaded = self._cascade(task, now)
            changed += cascaded
            events += [("task_dead_letter", t, {"reason": "dependency_failed"}) for t in cascaded]
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
        await self._commit(changed, [("task_cancelled", task, {"previous_status": str(previous)})]
                           + [("task_dead_letter", t, {"reason": "dependency_failed"}) for t in changed[1:]])
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
                if dep is not None and dep.status is TaskStatus.DEAD_LETTER and (
                    dep.dead_letter_reason == EndReason.DEPENDENCY_FAILED
                ):
                    T.retry(dep, now, by)
                    revived.append(dep)
                    stack.append(dep.id)
        await self._commit(revived, [("task_requeued", t, {}) for t in revived])
        return task

    def touch(self, task_id: str) -> None:
        """Note liveness of an in-flight task (progress); kept in memory, it only feeds the stuck sweep."""
        task = self.tasks.get(task_id)
        if task is not None and task.status in T.IN_FLIGHT:
            task.updated_at = self._clock.now_ms()

    # --- queries ----------------------------------------------------------------------------------------------

    def list(self, status: str | None = None, priority: int | None = None, assigned_to: str | None = None,
             goal_id: str | None = None, limit: int = 1000) -> list[Task]:
        out = [
            t for t in self.tasks.values()
            if (status is None or t.status == status) and (priority is None or t.priority == priority)
            and (assigned_to is None or t.assigned_to == assigned_to) and (goal_id is None or t.goal_id == goal_id)
        ]
        out.sort(key=lambda t: (t.priority, t.created_at))
        return out[:limit]

    def stats(self) -> dict[str, Any]:
        by_status = Counter(str(t.status) for t in self.tasks.values())
        by_priority = Counter(T.Priority(t.priority).name.lower() for t in self.tasks.values()
                              if t.status is TaskStatus.QUEUED)
        by_outcome = Counter(t.outcome for t in self.tasks.values() if t.status is TaskStatus.COMPLETED)
        return {
            "by_status": {s.value: by_status.get(s.value, 0) for s in TaskStatus},
            "by_priority": {p.name.lower(): by_priority.get(p.name.lower(), 0) for p in T.Priority},
            "by_outcome": dict(by_outcome),
            "dead_letter": by_status.get("dead_letter", 0),
            "total": len(self.tasks),
        }

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
                        {str(k): v for k, v in counts.items() if isinstance(v, int)})
        return {model: dict(sorted(counts.items())) for model, counts in sorted(total.items())}
