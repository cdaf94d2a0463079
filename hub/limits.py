"""Request limits at the edge: body size caps and rate limits, as two thin ASGI middlewares.

:class:`BodyLimit` refuses a body larger than its cap with 413 ``{"error": "payload_too_large", "limit_bytes": N}``
before it is read into memory: from ``Content-Length`` up front, else by counting the bytes as they stream in.

:class:`RateLimit` takes one token per request from a bucket (hub/rate_limit.py decides): the token's principal's
bucket (tier by role, all tokens of one agent id share it), or without a valid token the client address's. A 401
and a refused /ws identify are charged to a stricter per-address bucket; once that is spent, the address gets 429
on anything without a valid token and cannot open sockets until it refills (with progressive backoff). A valid
token is never refused for its address's failures: tokens are 256 random bits, so the failures guard the hub's
time, not the tokens, and a fleet behind one address keeps working. Refusals are 429
``{"error": "rate_limited", "retry_after_ms": N, "tier": ..., "scope": ...}`` with ``Retry-After`` in seconds.

Overrides per agent id or address are set by an admin (hub/api_limits.py) and persisted in
``DATA_DIR/rate_limits.json``, so they survive a restart.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from hub import rate_limit as RL
from hub.auth import Principal, Role
from hub.settings import HubSettings

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)

MAX_BUCKETS = 10_000
"""Buckets kept per kind; the least recently used goes first (it restarts full: at worst a second burst)."""
BATCH_PATH = "/api/tasks/batch"
OVERRIDES_FILE = "rate_limits.json"


def _json_response(
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[Message]:
    data = json.dumps(body, separators=(",", ":")).encode()
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        },
        {"type": "http.response.body", "body": data},
    ]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def normalise_address(text: str) -> str:
    """An IP address in canonical form; ValueError if it is not one."""
    return str(ipaddress.ip_address(text.strip()))


# --- body size ---------------------------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Caps request bodies: ``max_bytes`` everywhere, ``batch_bytes`` for the batch endpoint."""

    def __init__(self, app: ASGIApp, hub: Hub, max_bytes: int, batch_bytes: int) -> None:
        self.app = app
        self.hub = hub
        self.max_bytes = max_bytes
        self.batch_bytes = batch_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.batch_bytes if scope["path"] == BATCH_PATH else self.max_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            # The server delivers no more than the declared length, so a body within it needs no counting.
            if not declared.isdigit() or int(declared) > limit:
                await self._refuse(send, limit)
            else:
                await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:  # a chunked body: count it as it streams in
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:  # raised while the body is read, before any answer can have started
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        self.hub.n_http_rejections += 1
        for message in _json_response(
            413, {"error": "payload_too_large", "limit_bytes": limit}, [(b"connection", b"close")]
        ):
            await send(message)


# --- rate limits -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    retry_after_s: float
    tier: str
    scope: str
    """What ran dry: ``token`` (the principal's bucket), ``address`` or ``auth_failures``."""

    def body(self) -> dict[str, Any]:
        return {
            "error": "rate_limited",
            "retry_after_ms": int(self.retry_after_s * 1000) + 1,
            "tier": self.tier,
            "scope": self.scope,
        }


class RateLimiter:
    """The buckets, the tiers and the admin's overrides; every decision is :func:`hub.rate_limit.take`."""

    def __init__(self, settings: HubSettings, path: Path | None = None) -> None:
        self.enabled = settings.rate_limits_enabled
        self.tiers: dict[str, RL.Limit] = {
            Role.ADMIN: RL.Limit(*settings.rate_limit_admin),
            Role.AGENT: RL.Limit(*settings.rate_limit_agent),
            Role.VIEWER: RL.Limit(*settings.rate_limit_viewer),
            "anonymous": RL.Limit(*settings.rate_limit_anonymous),
            "auth_failures": RL.Limit(*settings.rate_limit_auth_failures),
        }
        self.backoff_s = settings.rate_limit_backoff_s
        self.quiet_s = settings.rate_limit_quiet_s
        self.overrides: dict[str, RL.Limit] = {}
        """By ``agent:<id>`` or ``address:<ip>``."""
        self._buckets: OrderedDict[str, RL.Bucket] = OrderedDict()
        self._failures: OrderedDict[str, RL.Bucket] = OrderedDict()
        self._path = path
        self.n_refused = 0
        self.n_auth_failures = 0
        self._load()

    def __repr__(self) -> str:
        return (
            f"<RateLimiter buckets={len(self._buckets)} failing={len(self._failures)} refused={self.n_refused} "
            f"overrides={len(self.overrides)}>"
        )

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def _keep(self, table: OrderedDict[str, RL.Bucket], key: str, bucket: RL.Bucket | None) -> None:
        if bucket is None:
            table.pop(key, None)
            return
        table[key] = bucket
        table.move_to_end(key)
        if len(table) > MAX_BUCKETS:
            table.popitem(last=False)

    def check(self, principal: Principal | None, address: str, now: float) -> Refusal | None:
        """Take one request's token; a :class:`Refusal` when there is none."""
        if principal is None:
            wait = RL.wait_s(self._failures.get(address), self.tiers["auth_failures"], now)
            if wait > 0:
                self.n_refused += 1
                return Refusal(wait, "anonymous", "auth_failures")
            key, tier, scope = f"address:{address}", "anonymous", "address"
        else:
            key, tier, scope = f"agent:{principal.agent_id}", str(principal.role), "token"
        limit = self.overrides.get(key) or self.tiers[tier]
        if limit.unlimited:
            return None
        bucket_key = f"{tier}:{key}"
        bucket, decision = RL.take(self._buckets.get(bucket_key), limit, now, self.backoff_s, self.quiet_s)
        self._keep(self._buckets, bucket_key, bucket)
        if decision.allowed:
            return None
        self.n_refused += 1
        return Refusal(decision.retry_after_s, tier, scope)

    def auth_failed(self, address: str, now: float) -> None:
        """Book a failed authentication (a 401, a refused identify) against the client address."""
        self.n_auth_failures += 1
        limit = self.tiers["auth_failures"]
        self._keep(
            self._failures, address, RL.charge(self._failures.get(address), limit, now, self.backoff_s, self.quiet_s)
        )

    def auth_blocked_s(self, address: str, now: float) -> float:
        return RL.wait_s(self._failures.get(address), self.tiers["auth_failures"], now)

    # --- overrides ---------------------------------------------------------------------------------------------

    def set_override(self, key: str, limit: RL.Limit) -> None:
        self.overrides[key] = limit
        self._forget(key)
        self._save()

    def delete_override(self, key: str) -> bool:
        if self.overrides.pop(key, None) is None:
            return False
        self._forget(key)
        self._save()
        return True

    def _forget(self, key: str) -> None:
        for name in [k for k in self._buckets if k.endswith(":" + key)]:
            del self._buckets[name]

    def view(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "persisted": self._path is not None,
            "tiers": {name: limit.view() for name, limit in self.tiers.items()},
            "backoff_s": list(self.backoff_s),
            "quiet_s": self.quiet_s,
            "overrides": [{"key": k, **v.view()} for k, v in sorted(self.overrides.items())],
            "stats": {
                "refused": self.n_refused,
                "auth_failures": self.n_auth_failures,
                "buckets": len(self._buckets),
                "failing_addresses": len(self._failures),
            },
        }

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_text())
            self.overrides = {
                str(k): RL.Limit(float(v["capacity"]), float(v["refill_per_s"])) for k, v in data["overrides"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.error("ignoring unreadable rate-limit overrides in %s (%s); the tiers apply", self._path, exc)

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "overrides": {
                        k: {"capacity": v.capacity, "refill_per_s": v.refill_per_s} for k, v in self.overrides.items()
                    }
                },
                indent=1,
            )
        )
        os.replace(tmp, self._path)


def _bearer(scope: Scope) -> str | None:
    header = _header(scope, b"authorization")
    if header is None or header[:7].lower() != b"bearer ":
        return None
    return header[7:].strip().decode("latin-1")


class RateLimit:
    """Asks the limiter before each request and books the 401s after; refuses /ws handshakes from an address whose
    failed authentications are spent."""

    def __init__(self, app: ASGIApp, hub: Hub, limiter: RateLimiter) -> None:
        self.app = app
        self.hub = hub
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not self.limiter.enabled or kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        now = self.limiter.now()
        if kind == "websocket":
            wait = self.limiter.auth_blocked_s(address, now)
            if wait > 0:
                await self._refuse_handshake(scope, receive, send, Refusal(wait, "anonymous", "auth_failures"))
                return
            await self.app(scope, receive, send)
            return
        principal = self.hub.auth.verify(_bearer(scope))
        refusal = self.limiter.check(principal, address, now)
        if refusal is not None:
            headers = [(b"retry-after", RL.retry_after_header(refusal.retry_after_s).encode())]
            for message in _json_response(429, refusal.body(), headers):
                await send(message)
            return
        if principal is not None:
            await self.app(scope, receive, send)
            return
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watching_send)
        if status == 401:
            self.limiter.auth_failed(address, self.limiter.now())

    async def _refuse_handshake(self, scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
        self.limiter.n_refused += 1
        if (await receive())["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            headers = [(b"retry-after", RL.retry_after_header(refusal.retry_after_s).encode())]
            for message in _json_response(429, refusal.body(), headers):
                await send({**message, "type": message["type"].replace("http.", "websocket.http.", 1)})
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})


def install(app: FastAPI) -> None:
    """Add the body cap and the rate limits to ``app`` (the rate limits outermost: a refusal reads nothing)."""
    hub: Hub = app.state.hub
    settings = hub.settings
    limiter = RateLimiter(settings, settings.data_dir / OVERRIDES_FILE)
    app.state.rate_limiter = limiter
    app.add_middleware(BodyLimit, hub=hub, max_bytes=settings.max_body_bytes, batch_bytes=settings.max_batch_body_bytes)
    app.add_middleware(RateLimit, hub=hub, limiter=limiter)


def note_failed_auth(ws: WebSocket) -> None:
    """Book a refused identify on an agent socket against its client address."""
    limiter: RateLimiter | None = getattr(ws.app.state, "rate_limiter", None)
    if limiter is not None and limiter.enabled:
        limiter.auth_failed(client_address(ws.scope), limiter.now())
