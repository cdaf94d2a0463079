"""One socket's sending side: a byte-bounded outbox drained by one writer; every write and every close has a deadline.

``send`` only queues (it never waits for the network), so a peer that stops reading delays nobody but itself. Over
``send_buffer_bytes`` queued, or past ``send_timeout_s`` on one write, the socket is dropped: aborted (a close frame
would sit unread behind the data it did not read), counted, and its handler ends through the normal disconnect path.
``close`` only asks: the writer sends the close frame after what is already queued, within ``close_timeout_s``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hub.settings import HubSettings
from hub.socket_counters import SocketCounters

logger = logging.getLogger(__name__)
_conn_ids = itertools.count(1)
ABORT_EXTENSION = "agentcom.abort"
"""Scope extension set by :mod:`hub.server_protocols`: drops the TCP connection at once, unsent data and all."""


@dataclass(frozen=True)
class SendLimits:
    buffer_bytes: int
    send_timeout_s: float
    close_timeout_s: float

    @classmethod
    def of(cls, settings: HubSettings) -> SendLimits:
        return cls(settings.send_buffer_bytes, settings.send_timeout_s, settings.close_timeout_s)


class ConnectionDropped(ConnectionError):
    """The socket is closing or was dropped; nothing more is sent on it."""


def frame_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


class Connection:
    """One socket's outbound side; :meth:`run` (the writer) belongs to the socket handler's TaskGroup."""

    def __init__(self, ws: WebSocket, limits: SendLimits, counters: SocketCounters) -> None:
        self.ws = ws
        self.key = f"conn-{next(_conn_ids)}"
        self._limits = limits
        self._counters = counters
        self._outbox: deque[str] = deque()
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._close_by: float | None = None
        self._abort = False
        self._deadline: asyncio.Timeout | None = None
        self.dropped: str | None = None
        """Why the hub dropped this socket (None when it closed normally)."""
        self.closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Connection {self.key} queued={self.queued_bytes}B closing={self._closing}>"

    @property
    def closing(self) -> bool:
        return self._closing is not None

    async def send(self, text: str) -> None:
        """Queue one frame (never waits for the network); raises :class:`ConnectionDropped` once closing."""
        if self._closing is not None:
            raise ConnectionDropped(f"{self.key} is closing")
        size = frame_bytes(text)
        if self.queued_bytes + size > self._limits.buffer_bytes:
            self._counters.n_dropped_full += 1
            self.drop(1008, "send buffer full")
            raise ConnectionDropped(f"{self.key}: send buffer full")
        self._outbox.append(text)
        self.queued_bytes += size
        self._wake.set()

    async def close(self, code: int, reason: str) -> None:
        """Ask for the socket to close after what is queued; returns at once. The writer closes it: what is queued
        and the close frame must be taken within ``close_timeout_s``, or the connection is aborted."""
        if self._closing is None:
            self._closing = (code, reason)
            self._close_by = asyncio.get_running_loop().time() + self._limits.close_timeout_s
            if self._deadline is not None and not self._deadline.expired():
                when = self._deadline.when()
                self._deadline.reschedule(self._close_by if when is None else min(when, self._close_by))
            self._wake.set()

    def drop(self, code: int, reason: str) -> None:
        """Give up on a peer that does not read: discard what is queued, cut the write in progress, abort."""
        if self.dropped is None:
            logger.warning("dropping socket %s: %s (%d bytes unsent)", self.key, reason, self.queued_bytes)
            self.dropped = reason
        self._closing = self._closing or (code, reason)
        self._abort = True
        self._outbox.clear()
        self.queued_bytes = 0
        if self._deadline is not None and not self._deadline.expired():
            self._deadline.reschedule(asyncio.get_running_loop().time())  # the write in progress ends now
        self._wake.set()

    async def write(self, text: str) -> None:
        """Write one frame now, within ``send_timeout_s``; past it the socket is dropped."""
        if self._abort:
            raise ConnectionDropped(f"{self.key} was dropped")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.send_timeout_s
        if self._close_by is not None:
            deadline = min(deadline, self._close_by)
        try:
            async with asyncio.timeout_at(deadline) as self._deadline:
                await self.ws.send_text(text)
        except TimeoutError:
            self._deadline = None
            if self.dropped is None:
                if self._close_by is not None and loop.time() >= self._close_by:
                    self._counters.n_close_aborted += 1
                    self.drop(*(self._closing or (1000, "bye")))
                else:
                    self._counters.n_dropped_slow += 1
                    self.drop(1008, "send timeout")
            raise ConnectionDropped(f"{self.key}: {self.dropped}") from None
        finally:
            self._deadline = None

    async def run(self) -> None:
        """The writer: send queued frames in order; once asked to close, close (bounded) and return."""
        try:
            while True:
                while self._outbox and not self._abort:
                    text = self._outbox.popleft()
                    self.queued_bytes -= frame_bytes(text)
                    await self.write(text)
                if self._closing is not None:
                    break
                self._wake.clear()
                await self._wake.wait()
        except ConnectionDropped:
            pass
        except (RuntimeError, OSError, WebSocketDisconnect) as exc:  # the peer is gone already
            logger.info("socket %s: write failed: %r", self.key, exc)
        except asyncio.CancelledError:
            self._abort_transport()
            raise
        await self._finish()

    async def _finish(self) -> None:
        code, reason = self._closing or (1000, "bye")
        self._outbox.clear()
        self.queued_bytes = 0
        if not self._abort and self.ws.application_state == WebSocketState.CONNECTED:
            try:
                async with asyncio.timeout_at(
                    self._close_by or asyncio.get_running_loop().time() + self._limits.close_timeout_s
                ):
                    await self.ws.close(code, reason)
            except TimeoutError:
                self._counters.n_close_aborted += 1
                self._abort = True
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass  # already gone
        if self._abort:
            self._abort_transport()
        self.closed.set()

    def _abort_transport(self) -> None:
        abort: Callable[[], None] | None = self.ws.scope.get("extensions", {}).get(ABORT_EXTENSION)
        if abort is not None:
            abort()
