"""The task queue itself: loading, submitting, assigning, accepting, cancelling and pruning tasks.

Tasks live in memory (indexed by status and priority lane) and every change is committed to the store before the
call that made it returns, so whatever a caller says next is already durable. Decisions about single tasks are
the pure functions in :mod:`hub.tasks`; the queue applies them, persists, indexes and publishes (its bases, one
concept each, are listed in :mod:`hub.queue`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from hub import lifecycle as L
from hub import tasks as T
from hub.clock import Clock
from hub.events import EventBus
from hub.listeners import EventFeed
from hub.queue.attempts import AttemptEnds
from hub.queue.commits import OnApplied, Told
from hub.store import Change, DeleteEvents, DeleteTask, DeleteTrajectory, Store
from hub.task_shape import CorruptTask
from hub.tasks import EndReason, Task, TaskStatus

logger = logging.getLogger("hub.queue")  # the queue's log lines keep one name, whichever part writes them


class UnknownDependencies(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"unknown depends_on ids: {', '.join(missing)}")
        self.missing = missing


class TaskQueue(AttemptEnds):
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
