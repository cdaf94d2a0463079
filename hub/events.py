"""In-process event bus: state owners publish plain-dict events, subscribers read them from bounded queues."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
