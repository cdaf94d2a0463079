"""How the task queue commits: each change's task rows and lifecycle events go to the store in one transaction, and
the events are numbered when made and delivered (to the lossless feed, then the lossy bus) only once committed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hub import lifecycle as L
from hub.clock import Clock
from hub.events import EventBus, bus_event
from hub.listeners import EventFeed
from hub.store import Change, PutTask, Store, TaskRow
from hub.task_index import TaskIndex
from hub.tasks import Task

OnApplied = Callable[[str], Awaitable[None]]
"""Called with the ack status once an attempt's end is applied in memory and queued for commit, before the commit
completes: freeing the agent there lets its next assignment share the same commit."""


Told = tuple[L.LifecycleEvent, Task | None]
"""A lifecycle event and the task it is about (for the dashboard's view of it; None for events of several)."""


def task_row(task: Task) -> TaskRow:
    """``task`` as the store keeps it: its indexed columns and its JSON body."""
    return TaskRow(
        task.id, str(task.status), task.priority, task.created_at, task.updated_at, task.assigned_to, task.goal_id,
        task.to_json(),
    )  # fmt: skip


def _row(task: Task) -> PutTask:
    return PutTask(task.id, partial(task_row, task))


class QueueCommits(TaskIndex):
    """The commits of :class:`hub.queue.TaskQueue` (which sets these attributes)."""

    _store: Store
    _bus: EventBus
    feed: EventFeed
    _clock: Clock
    _max_history: int

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
