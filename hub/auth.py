"""Tokens and roles. Tokens are random 256-bit strings, stored only as SHA-256 hashes.

Roles: ``admin`` (everything), ``agent`` (its own socket, submit and read tasks), ``viewer`` (read-only, for the
dashboard).

Each token has a stable, non-secret id (:func:`token_id`, a hash of its hash) by which it is listed and revoked one
at a time. Sockets opened with a token :meth:`Auth.watch` it: a revocation closes them before the admin is answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hub.clock import Clock
from hub.store import DeleteToken, PutToken, Store, TokenRow

logger = logging.getLogger(__name__)


class Role(StrEnum):
    ADMIN = "admin"
    AGENT = "agent"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    agent_id: str
    role: Role
    token_id: str = ""
    """The non-secret id of the token that authenticated (``admin`` for the admin token)."""


ADMIN_TOKEN_ID = "admin"
OnRevoke = Callable[[], Awaitable[None]]
"""Called when a watched token is revoked; it closes whatever that token opened."""
CLOSE_TIMEOUT_S = 5.0
"""How long one socket's close may hold up a revocation (a peer that never reads cannot stall the admin)."""


class AmbiguousPrefix(Exception):
    """More than one token starts with the prefix given; nothing was revoked."""

    def __init__(self, token_ids: list[str]) -> None:
        super().__init__(f"{len(token_ids)} tokens share this prefix")
        self.token_ids = token_ids


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token_hash: str) -> str:
    """A token's public id: derived from its stored hash, but neither the hash nor a way back to it."""
    return "tok-" + hashlib.sha256(b"agentcom-token-id:" + token_hash.encode()).hexdigest()[:16]


def new_token() -> str:
    return secrets.token_hex(32)


def load_admin_token(data_dir: Path, configured: str | None) -> str:
    """The configured admin token, else the one in DATA_DIR/admin.token, else a new one written there (0600)."""
    if configured:
        return configured
    path = data_dir / "admin.token"
    if path.exists():
        return path.read_text().strip()
    token = new_token()
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    logger.warning("generated an admin token; it is in %s", path)
    return token


class Auth:
    """Verifies tokens and mints, lists and revokes per-agent tokens; tells sockets when their token is revoked."""

    def __init__(self, store: Store, clock: Clock, admin_token: str) -> None:
        self._store = store
        self._clock = clock
        self._admin_hash = hash_token(admin_token)
        self._by_hash: dict[str, Principal] = {}
        self._meta: dict[str, dict[str, object]] = {}
        self._watchers: dict[str, set[OnRevoke]] = {}
        self.n_revoked = 0

    def __repr__(self) -> str:
        return f"<Auth tokens={len(self._by_hash)} watched={len(self._watchers)} revoked={self.n_revoked}>"

    def _add(self, digest: str, agent_id: str, role: str, prefix: str, created_at: int) -> None:
        tid = token_id(digest)
        self._by_hash[digest] = Principal(agent_id, Role(role), tid)
        self._meta[digest] = {
            "token_id": tid,
            "agent_id": agent_id,
            "role": role,
            "prefix": prefix,
            "created_at": created_at,
        }

    async def load(self) -> None:
        """Read every stored token back; StoreError naming the row and the fix if one has a role this hub lacks."""
        for row in await self._store.load_tokens(tuple(Role)):
            self._add(row.token_hash, row.agent_id, row.role, row.prefix, row.created_at)

    def verify(self, token: str | None) -> Principal | None:
        if not token:
            return None
        digest = hash_token(token)
        if secrets.compare_digest(digest, self._admin_hash):
            return Principal("admin", Role.ADMIN, ADMIN_TOKEN_ID)
        return self._by_hash.get(digest)

    async def mint(self, agent_id: str, role: Role = Role.AGENT) -> tuple[str, str]:
        """A new token for ``agent_id``; returns the token (shown once) and its id."""
        token = new_token()
        digest = hash_token(token)
        now = self._clock.now_ms()
        await self._store.write([PutToken(TokenRow(digest, agent_id, str(role), token[:8], now))])
        self._add(digest, agent_id, str(role), token[:8], now)
        return token, token_id(digest)

    async def revoke(self, agent_id: str) -> list[str]:
        """Revoke every token of ``agent_id``; returns the ids revoked."""
        return await self._revoke([h for h, p in self._by_hash.items() if p.agent_id == agent_id])

    async def revoke_id(self, tid: str) -> list[str]:
        """Revoke the token whose id is ``tid``; returns ``[tid]``, or ``[]`` when there is none."""
        return await self._revoke([h for h, p in self._by_hash.items() if p.token_id == tid])

    async def revoke_prefix(self, prefix: str) -> list[str]:
        """Revoke the one token starting with ``prefix`` (the 8 characters listed); refuses if several do."""
        doomed = [h for h, m in self._meta.items() if m["prefix"] == prefix]
        if len(doomed) > 1:
            raise AmbiguousPrefix(sorted(self._by_hash[h].token_id for h in doomed))
        return await self._revoke(doomed)

    async def _revoke(self, digests: list[str]) -> list[str]:
        """Forget the tokens (no request authenticates with them from here on), close every socket they opened
        (all at once, each within :data:`CLOSE_TIMEOUT_S`), then persist; returns the ids revoked."""
        if not digests:
            return []
        revoked = [self._by_hash.pop(d).token_id for d in digests]
        for digest in digests:
            del self._meta[digest]
        self.n_revoked += len(revoked)
        closing = [on_revoke for tid in revoked for on_revoke in self._watchers.pop(tid, ())]
        await asyncio.gather(*(self._notify(on_revoke) for on_revoke in closing))
        await self._store.write([DeleteToken(digest) for digest in digests])
        return revoked

    @staticmethod
    async def _notify(on_revoke: OnRevoke) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await on_revoke()
        except Exception:  # one socket failing to close must not keep the others open
            logger.warning("closing a socket of a revoked token failed", exc_info=True)

    def watch(self, tid: str, on_revoke: OnRevoke) -> Callable[[], None]:
        """Call ``on_revoke`` if token ``tid`` is revoked; returns the function that stops watching."""
        self._watchers.setdefault(tid, set()).add(on_revoke)

        def unwatch() -> None:
            watchers = self._watchers.get(tid)
            if watchers is not None:
                watchers.discard(on_revoke)
                if not watchers:
                    del self._watchers[tid]

        return unwatch

    def list(self) -> list[dict[str, object]]:
        return sorted(self._meta.values(), key=lambda m: (str(m["agent_id"]), int(m["created_at"])))  # type: ignore[call-overload]
