"""The SQLite store: WAL mode through aiosqlite, with one writer that group-commits.

Callers hand changes to :meth:`SqliteStore.write` and are answered only once the transaction holding them has
committed ("write before you say"). The writer drains everything pending into one transaction, so under load many
state changes share one fsync instead of paying one each. Each change (:mod:`hub.store.records`) becomes one statement
here; the statements themselves (:data:`Write`) are accepted too, for this module's own tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from hub.store import StoreError, schema
from hub.store.connection import connect
from hub.store.faults import open_error
from hub.store.reads import StoreReads
from hub.store.records import Change
from hub.store.statements import (  # noqa: F401 - re-exported: tests and benchmarks name them here
    DELETE_TASK,
    DELETE_TASK_EVENTS,
    DELETE_TOKEN,
    DELETE_TRAJECTORY,
    INSERT_TASK_EVENT,
    INSERT_TOKEN,
    INSERT_TRAJECTORY,
    SELECT_EVENT_SEQ_HIGH,
    SELECT_EVENTS_AFTER,
    SELECT_JOURNAL_AFTER,
    SELECT_JOURNAL_SINCE,
    SELECT_LAST_SEQS,
    SELECT_RECORDS,
    SELECT_TASK_EVENTS_AFTER,
    SELECT_TASKS,
    SELECT_TOKENS,
    SELECT_TRAJECTORY,
    STATEMENTS,
    UPSERT_TASK,
    Deferred,
    Write,
    unstorable_batches,
)
from hub.store.wal_sync import WalSyncer, WalSyncError
from hub.store.writer import (  # noqa: F401 - re-exported: named here before the writer had its own module
    BUSY_TIMEOUT_MS,
    DISK_FULL_RETRY_S,
    GroupWriter,
)

logger = logging.getLogger(__name__)


WAL_LIMIT_BYTES = 64 * 2**20
"""WAL size past which the writer makes the log start over (and the file is truncated back to it)."""


class SqliteStore(GroupWriter, StoreReads):
    """The hub's database (a :class:`hub.store.Store`): writes go through the writer task on one connection (see
    :meth:`_commit`); reads and WAL checkpoints go through a second one."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        reader: aiosqlite.Connection,
        wal_limit_bytes: int = WAL_LIMIT_BYTES,
        synchronous: str = "FULL",
    ) -> None:
        self._db = db
        self.synchronous = synchronous
        self._syncer: WalSyncer | None = None
        """With FULL: makes each commit durable (see hub/store/wal_sync.py); None means SQLite syncs in COMMIT."""
        self._wal_fd: int | None = None
        self._reader = reader
        self.path = path
        self._wal = path.with_name(path.name + "-wal")
        self.wal_limit_bytes = wal_limit_bytes
        self.n_checkpoints = 0
        self.n_restarts = 0
        self._pending: list[tuple[list[Write], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._closing = asyncio.Event()
        self._shut = False
        self._writer_running = False
        self._writer_stopped = asyncio.Event()
        self.n_commits = 0
        self.n_writes = 0
        self.commit_s_total = 0.0
        self.commit_s_max = 0.0
        self.degraded: str | None = None
        """Why writes are waiting (the disk is full), or None while they commit."""
        self.n_disk_full = 0
        self.n_refused_batches = 0
        self._checkpoint_failing = False

    def __repr__(self) -> str:
        return f"<Store {self.path.name} commits={self.n_commits} writes={self.n_writes} pending={len(self._pending)}>"

    @classmethod
    async def open(cls, path: Path, synchronous: str = "FULL", wal_limit_bytes: int = WAL_LIMIT_BYTES) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and apply pending migrations, all in one transaction.

        Raises StoreError naming the cause and the fix; then nothing is left open (no connection, no helper)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        opened: list[aiosqlite.Connection] = []
        store: SqliteStore | None = None
        try:
            # The writer's transactions run on the loop's thread (see _commit); the connection's own thread runs
            # only the fallbacks and the WAL restart, between them: the connection is used from both, never at once.
            db = await connect(path, isolation_level=None, check_same_thread=False)
            opened.append(db)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={synchronous}")
            await db.execute("PRAGMA foreign_keys=ON")
            # Checkpoints copy the WAL into the database file and fsync it: tens of ms. Done inside a commit they
            # stall every writer, so the writer never checkpoints; run_checkpointer does, on the reader connection.
            await db.execute("PRAGMA wal_autocheckpoint=0")
            await db.execute(f"PRAGMA journal_size_limit={wal_limit_bytes}")
            # Reads and checkpoints use a second connection: reads then see committed data only, and never run
            # on the writer's connection while the loop's thread is inside one of its transactions.
            reader = await connect(path, isolation_level=None)
            opened.append(reader)
            await reader.execute(f"PRAGMA synchronous={synchronous}")
            store = cls(db, path, reader, wal_limit_bytes, synchronous)
            await store._migrate()
            await db.execute("PRAGMA busy_timeout=0")  # see _begin: the loop's thread never waits for a lock
            if synchronous == "FULL":
                await store._start_syncer()
        except BaseException as exc:
            if store is not None and store._syncer is not None:
                await store._syncer.close()
            for conn in opened:  # each has a thread that would keep the process alive
                await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(open_error(path, exc)) from exc
            raise
        return store

    async def _start_syncer(self) -> None:
        try:
            self._syncer = await WalSyncer.start(self._wal)
        except (WalSyncError, OSError) as exc:
            logger.warning("%s; SQLite syncs each commit on its thread instead (slower under load)", exc)
            return
        await self._db.execute("PRAGMA synchronous=OFF")  # the frames are written; the helper syncs them

    async def _migrate(self) -> None:
        """Apply every pending migration in one transaction: a failure leaves the database as it was."""
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = row[0] if row else 0
        todo, latest = schema.pending(self.path, version)
        if todo:
            await self._on_thread(schema.apply, self._db._conn, self.path, todo, version, latest)
            logger.info("store migrated from version %d to %d", version, latest)

    async def close(self) -> None:
        """Stop taking writes, let the writer commit what is pending, then close the connection (idempotent)."""
        if self._shut:
            return
        self._shut = True
        self._closed = True
        self._closing.set()
        self._wake.set()
        if self._writer_running:
            await self._writer_stopped.wait()
        try:
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous}")  # the checkpoint syncs as configured
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # a full disk: the WAL keeps the commits, the next open replays it
            logger.warning("final checkpoint failed (the WAL keeps every commit): %s", exc)
        await self._reader.close()
        await self._db.close()
        if self._syncer is not None:
            await self._syncer.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)

    def stats(self) -> dict[str, Any]:
        """Commit counters for /health: how many, how many rows, and how long they take."""
        return {
            "commits": self.n_commits,
            "writes": self.n_writes,
            "pending": len(self._pending),
            "commit_ms_avg": round(1000 * self.commit_s_total / self.n_commits, 3) if self.n_commits else 0.0,
            "commit_ms_max": round(1000 * self.commit_s_max, 3),
            "wal_restarts": self.n_restarts,
            "wal_sync": "helper" if self._syncer is not None else "sqlite" if self.synchronous == "FULL" else "none",
            "wal_syncs": self._syncer.n_syncs if self._syncer is not None else 0,
            "degraded": self.degraded,
            "disk_full_retries": self.n_disk_full,
            "refused_batches": self.n_refused_batches,
        }

    def enqueue(self, changes: Iterable[Change | Write]) -> asyncio.Future[None]:
        """Queue ``changes`` for the next transaction; the future resolves once it has committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = [c if type(c) is tuple else STATEMENTS[type(c)](c) for c in changes]
        if self._closed:
            fut.set_exception(StoreError("store is closed"))
        elif not batch:
            fut.set_result(None)
        else:
            self._pending.append((batch, fut))
            self._wake.set()
        return fut

    async def write(self, changes: Iterable[Change | Write]) -> None:
        """Queue ``changes`` for the next transaction and return once it has committed."""
        await self.enqueue(changes)
