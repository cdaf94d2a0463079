"""uvicorn's httptools and websockets-sansio protocols with the bounds they lack.

What uvicorn 0.55 bounds by itself here: idle keep-alive (``timeout_keep_alive``), WebSocket frame size
(``ws_max_size``), the WebSocket handshake's header count and line length (websockets: 128 headers, 8 KiB lines).
What it does not, and this module adds:

- header time: httptools arms no timer until a first response completes, so a client that connects and trickles
  (or never sends) its request head holds the socket forever. :class:`HubHttpProtocol` gives every request head
  ``header_timeout_s`` from its first byte (or from the connection), then answers 408 and closes.
- header size: httptools (llhttp) takes any amount of header data (10 MB measured) into the request's header list;
  ``h11_max_incomplete_event_size`` applies to the h11 protocol only. Past ``max_header_bytes`` (request line and
  headers) the request is answered 431 and the connection closed.
- connections: ``limit_concurrency`` answers 503 to HTTP requests once open sockets (agents and pages included)
  reach the limit, and is not checked for WebSocket upgrades at all; so instead a connection past
  ``max_connections`` is answered 503 and closed as it is accepted.
- closing a peer that does not read: uvicorn's close waits for the write buffer to drain and then for the peer's
  close frame, and its keep-alive ping timeout only closes (flushing first). :class:`HubWebSocketProtocol` aborts
  the connection ``close_timeout_s`` after the application is done with it or at once on a ping timeout, and puts
  an abort in the scope (:data:`hub.connection.ABORT_EXTENSION`) for the hub's own send deadlines.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from hub.connection import ABORT_EXTENSION
from hub.settings import HubSettings


class HeadersTooLarge(Exception):
    """Raised from the parser callback; uvicorn turns a callback error into its 400 path, answered here as 431."""


class HubHttpProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    max_header_bytes = 32 * 1024
    max_connections = 4096

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._refusal: tuple[int, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            self._refuse(503, "too_many_connections")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        self._refuse(408, "header_timeout")

    def _refuse(self, status: int, code: str) -> None:
        if self.transport.is_closing():
            return
        body = json.dumps({"error": code}).encode()
        phrase = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}
        self.transport.write(
            f"HTTP/1.1 {status} {phrase[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self._refuse(*self._refusal)
        else:
            super().send_400_response(msg)

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_header_bytes:
            self._refusal = (431, "headers_too_large")
            raise HeadersTooLarge

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()


class HubWebSocketProtocol(WebSocketsSansIOProtocol):
    close_timeout_s = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.close_timeout_s

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][ABORT_EXTENSION] = self.abort

    def abort(self) -> None:
        """Drop the connection now, discarding anything the peer has not taken."""
        if not self.disconnected:
            self.transport.abort()

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self.loop.call_later(self.close_timeout_s, self.abort)  # whatever the peer has not taken by then is dropped

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.abort()  # no pong: the peer is gone, so do not wait to flush the close frame to it


def protocols(settings: HubSettings) -> tuple[type[HubHttpProtocol], type[HubWebSocketProtocol]]:
    """The two protocol classes, with this hub's limits."""
    http = type(
        "HubHttpProtocol",
        (HubHttpProtocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "max_header_bytes": settings.max_header_bytes,
            "max_connections": settings.max_connections,
        },
    )
    ws = type("HubWebSocketProtocol", (HubWebSocketProtocol,), {"close_timeout_s": settings.close_timeout_s})
    return http, ws


def uvicorn_options(settings: HubSettings) -> dict[str, Any]:
    """``uvicorn.Config`` keywords selecting these protocols."""
    http, ws = protocols(settings)
    return {"http": http, "ws": ws}
