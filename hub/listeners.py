"""Lossless delivery of lifecycle events: every listener gets every committed event, once, in order of ``seq``.

The queue numbers each event (:meth:`EventFeed.next_seq`), writes it in the commit of the change it describes
(:meth:`EventFeed.rows`) and hands it to :meth:`EventFeed.deliver` once that commit is done. A listener
(:meth:`EventFeed.subscribe_lossless`) is an async iterator with a cursor, the ``seq`` of the last event it was
given. Delivered events wait in its bounded buffer; when the buffer overflows (the listener fell behind) it is
emptied and the listener reads the table from its cursor instead, as it does when it starts: so one started after
a restart with the cursor it saved goes on where it stopped. It is consumed by whoever owns it, in that owner's
TaskGroup; the feed never runs a task of its own.

Events of tasks that retention has pruned are deleted with them: a listener that lags behind retention (days, by
default) does not get those, only the ``tasks_pruned`` event that names them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from types import TracebackType

from hub import lifecycle as L
from hub.store import AppendEvent, EventRow, Store
from shared import jsonsafe

logger = logging.getLogger(__name__)

BUFFER_SIZE = 10_000
"""Events a listener may lag behind before it reads the table instead (per listener)."""
PAGE = 1000
"""Events read from the table at a time when catching up."""
MAX_SEQ = jsonsafe.MAX_INT


class EventFeed:
    """The lifecycle events of one hub, numbered, stored and delivered after commit (see the module docstring)."""

    def __init__(self, store: Store, buffer_size: int = BUFFER_SIZE, page: int = PAGE) -> None:
        self._store = store
        self._buffer_size = buffer_size
        self._page = page
        self._seq = 0
        self.delivered_seq = 0
        """The ``seq`` of the last event delivered (at the start: the last one stored)."""
        self._listeners: set[Subscription] = set()
        self.n_delivered = 0

    def __repr__(self) -> str:
        return f"<EventFeed seq={self._seq} listeners={sorted(s.name for s in self._listeners)}>"

    async def load(self) -> None:
        """Continue numbering after the highest ``seq`` ever stored (deleted rows included)."""
        self._seq = self.delivered_seq = max(0, await self._store.last_event_seq())

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the last event numbered (perhaps not committed yet)."""
        return self._seq

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @staticmethod
    def rows(events: Iterable[L.LifecycleEvent]) -> list[AppendEvent]:
        """The rows that record ``events``, for the transaction of the change they describe."""
        return [AppendEvent(EventRow(e.seq, e.at, getattr(e, "task_id", None), e.kind, L.body(e))) for e in events]

    def deliver(self, events: Iterable[L.LifecycleEvent]) -> None:
        """Hand committed events (in order of ``seq``) to every listener; never blocks."""
        for event in events:
            self.delivered_seq = event.seq
            self.n_delivered += 1
            for listener in self._listeners:
                listener._push(event)

    def subscribe_lossless(self, name: str, from_seq: int = 0, buffer_size: int | None = None) -> Subscription:
        """A listener that gets every event after ``from_seq``; use as ``async with`` (or close it) and iterate.

        It listens from this call on: events committed meanwhile wait for it (up to ``buffer_size``, then in the
        table)."""
        return Subscription(self, name, from_seq, buffer_size or self._buffer_size)

    async def read(self, after_seq: int = 0, limit: int = PAGE) -> list[L.LifecycleEvent]:
        """Stored events after ``after_seq``, in order, at most ``limit``."""
        rows = await self._store.read_events(_clamp(after_seq, 0), _clamp(limit, 1))
        return [L.from_row(*row) for row in rows]

    async def read_task(self, task_id: str, after_seq: int = 0, limit: int = PAGE) -> list[L.LifecycleEvent]:
        """Stored events of one task after ``after_seq``, in order, at most ``limit``."""
        rows = await self._store.read_events(_clamp(after_seq, 0), _clamp(limit, 1), task_id)
        return [L.from_row(*row) for row in rows]


def _clamp(n: int, low: int) -> int:
    return min(max(n, low), MAX_SEQ)


class Subscription:
    """One listener: an async iterator over the events after its cursor (see the module docstring)."""

    def __init__(self, feed: EventFeed, name: str, from_seq: int, buffer_size: int) -> None:
        self.name = name
        self.buffer_size = buffer_size
        self.cursor = max(0, from_seq)
        """The ``seq`` of the last event this listener was given."""
        self._feed = feed
        self._buffer: deque[L.LifecycleEvent] = deque()
        self._read: deque[L.LifecycleEvent] = deque()
        """Events read from the table, not given yet."""
        self._behind = self.cursor < feed.delivered_seq
        """The table holds events the buffer does not: read it before the buffer. Not so for a listener that
        starts at the last event delivered: every later one is delivered to it."""
        self._wake = asyncio.Event()
        self.n_overflows = 0
        self.n_read = 0
        """Events this listener got from the table rather than from its buffer."""
        self._closed = False
        feed._listeners.add(self)

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.name} cursor={self.cursor} buffered={len(self._buffer)} overflows={self.n_overflows}>"
        )

    def _push(self, event: L.LifecycleEvent) -> None:
        if len(self._buffer) >= self.buffer_size:
            self._buffer.clear()  # fell behind: the table has all of them
            self._behind = True
            self.n_overflows += 1
        self._buffer.append(event)
        self._wake.set()

    def close(self) -> None:
        """Stop listening: iterating ends (a waiting ``async for`` ends at its next event or cancellation)."""
        self._closed = True
        self._feed._listeners.discard(self)
        self._buffer.clear()
        self._wake.set()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> L.LifecycleEvent:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._read:
                event = self._read.popleft()
            elif self._behind:
                # Cleared before the read: an overflow while it runs sets it again, and the next read picks up.
                self._behind = False
                page = await self._feed.read(self.cursor, self._feed._page)
                self.n_read += len(page)
                self._read.extend(page)
                if len(page) == self._feed._page:
                    self._behind = True  # more to read after this page
                continue
            elif self._buffer:
                event = self._buffer.popleft()
            else:
                self._wake.clear()
                await self._wake.wait()
                continue
            if event.seq > self.cursor:  # the table and the buffer overlap while catching up
                self.cursor = event.seq
                return event
