"""Refuse state-changing HTTP requests with 507 while the store cannot write (the disk is full).

The check runs before the request reaches a route, so a refused request has changed nothing in memory. Reads are
served as usual; agents' WebSocket reports are not refused, they wait for the disk (the sidecar's outbox keeps
them until acknowledged). The store clears its degraded state itself once a retried commit succeeds.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_AFTER_S = 5


class StorageGuard:
    """ASGI middleware: 507 ``{"error": "insufficient_storage", ...}`` for writes while ``hub.store.degraded``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            store = getattr(scope["app"].state.hub, "store", None)
            reason = store.degraded if store is not None else None
            if reason is not None:
                await _refuse(send, reason)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, reason: str) -> None:
    body = json.dumps(
        {
            "error": "insufficient_storage",
            "reason": reason,
            "retry_after_s": RETRY_AFTER_S,
            "detail": "the hub cannot store anything until disk space is freed; nothing was changed, retry later",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 507,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
