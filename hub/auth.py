"""Tokens and roles. Tokens are random 256-bit strings, stored only as SHA-256 hashes.

Roles: ``admin`` (everything), ``agent`` (its own socket, submit and read tasks), ``viewer`` (read-only, for the
dashboard).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from hub.clock import Clock
from hub.store import DELETE_TOKENS, INSERT_TOKEN, Store

logger = logging.getLogger(__name__)


class Role(StrEnum):
    ADMIN = "admin"
    AGENT = "agent"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    agent_id: str
    role: Role


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
    """Verifies tokens and mints, lists and revokes per-agent tokens."""

    def __init__(self, store: Store, clock: Clock, admin_token: str) -> None:
        self._store = store
        self._clock = clock
        self._admin_hash = hash_token(admin_token)
        self._by_hash: dict[str, Principal] = {}
        self._meta: dict[str, dict[str, object]] = {}

    async def load(self) -> None:
        rows = await self._store.fetch_all("SELECT token_hash, agent_id, role, prefix, created_at FROM tokens")
        for token_hash, agent_id, role, prefix, created_at in rows:
            self._by_hash[token_hash] = Principal(agent_id, Role(role))
            self._meta[token_hash] = {"agent_id": agent_id, "role": role, "prefix": prefix, "created_at": created_at}

    def verify(self, token: str | None) -> Principal | None:
        if not token:
            return None
        digest = hash_token(token)
        if secrets.compare_digest(digest, self._admin_hash):
            return Principal("admin", Role.ADMIN)
        return self._by_hash.get(digest)

    async def mint(self, agent_id: str, role: Role = Role.AGENT) -> str:
        token = new_token()
        digest = hash_token(token)
        now = self._clock.now_ms()
        await self._store.write([(INSERT_TOKEN, (digest, agent_id, str(role), token[:8], now))])
        self._by_hash[digest] = Principal(agent_id, role)
        self._meta[digest] = {"agent_id": agent_id, "role": str(role), "prefix": token[:8], "created_at": now}
        return token

    async def revoke(self, agent_id: str) -> int:
        doomed = [h for h, p in self._by_hash.items() if p.agent_id == agent_id]
        if doomed:
            await self._store.write([(DELETE_TOKENS, (agent_id,))])
        for digest in doomed:
            del self._by_hash[digest]
            del self._meta[digest]
        return len(doomed)

    def list(self) -> list[dict[str, object]]:
        return sorted(self._meta.values(), key=lambda m: (str(m["agent_id"]), int(m["created_at"])))  # type: ignore[call-overload]
