"""In-process event bus: state owners publish plain-dict events, subscribers read them from bounded queues.

The bus is lossy (a slow subscriber loses its oldest events): it feeds the dashboard. Whoever must not miss a task's
lifecycle event listens to the queue's feed instead (hub/listeners.py); the queue also publishes those events here,
as dicts (:func:`bus_event`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hub import lifecycle as L
from hub.repos.view import change_summary
from hub.tasks import Task

logger = logging.getLogger(__name__)

Event = dict[str, Any]


class EventBus:
    """Fan-out of events to any number of subscribers; a slow subscriber loses its oldest events, never blocks."""

    def __init__(self, queue_size: int = 10_000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self.n_published = 0
        self.n_dropped = 0

    def __repr__(self) -> str:
        return f"<EventBus subscribers={len(self._subscribers)} published={self.n_published} dropped={self.n_dropped}>"

    def publish(self, event: Event) -> None:
        self.n_published += 1
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.n_dropped += 1
            queue.put_nowait(event)

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def bus_event(event: L.LifecycleEvent, task: Task | None) -> Event:
    """The dict the dashboard reads for a lifecycle event: the task as it is now, the event's name and details."""
    if isinstance(event, L.TasksPruned):
        return {
            "kind": "retention",
            "event": "tasks_pruned",
            "count": len(event.task_ids),
            "timestamp": event.at,
            "seq": event.seq,
        }
    extra: dict[str, Any] = {}
    if isinstance(event, L.TaskEnded):
        if event.then == "completed":
            name, extra = "task_completed", {"outcome": event.outcome}
        else:
            name = "task_retried" if event.then == "retried" else "task_dead_letter"
            extra = {"reason": event.reason, "from_agent": event.agent_id}
        if task is not None and task.change is not None:
            extra["change"] = change_summary(task.change)  # the drawer's branch, commit, tier and publication
    elif isinstance(event, L.TaskDeadLettered):
        name, extra = "task_dead_letter", {"reason": event.reason}
    elif isinstance(event, L.TaskCancelled):
        name, extra = "task_cancelled", {"previous_status": event.previous_status}
    else:
        name = event.kind
    out: Event = {"kind": "task_event", "event": name, "task_id": getattr(event, "task_id", None), "seq": event.seq}
    if task is not None:
        out.update(
            status=str(task.status),
            agent_id=task.assigned_to,
            priority=task.priority,
            goal_id=task.goal_id,
            timestamp=task.updated_at,
        )
    else:
        out["timestamp"] = event.at
    return {**out, **extra}
