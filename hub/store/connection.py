"""The store's two SQLite connections: opening one so that a cancellation cannot leak it, and running a function on
the writer connection's own thread (the WAL restart, the fallbacks that wait or sync there)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

R = TypeVar("R")


async def connect(path: Path, **kwargs: Any) -> aiosqlite.Connection:
    """aiosqlite.connect, except that a cancellation lets the connection finish opening and closes it: otherwise its
    thread would go on creating the file after the caller has cleaned up."""

    async def connect() -> aiosqlite.Connection:
        return await aiosqlite.connect(path, **kwargs)

    opening = asyncio.ensure_future(connect())
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await (await opening).close()
        raise


class WriterThread:
    """The writer connection, and a way onto its thread (a base of :class:`hub.store.sqlite.SqliteStore`)."""

    _db: aiosqlite.Connection

    async def _on_thread(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` on the writer connection's own thread, between its other calls (aiosqlite has no public
        call for this; its documented-in-source ``_execute`` is used)."""
        result: R = await self._db._execute(fn, *args)  # type: ignore[no-untyped-call]
        return result
