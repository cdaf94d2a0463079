"""Durable store: SQLite in WAL mode through aiosqlite, with one writer that group-commits.

Callers hand writes to :meth:`Store.write` and are answered only once the transaction holding them has committed
("write before you say"). The writer drains everything pending into one transaction, so under load many state
changes share one fsync instead of paying one each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from hub.wal_sync import WalSyncer, WalSyncError

logger = logging.getLogger(__name__)

class Deferred:
    """Parameters built at commit time, once per ``key`` per transaction: a row written several times before one
    commit (a task accepted and completed in quick succession) is serialised once, in its latest state."""

    __slots__ = ("key", "build")

    def __init__(self, key: str, build: Callable[[], Sequence[Any]]) -> None:
        self.key = key
        self.build = build


Write = tuple[str, Sequence[Any] | Deferred]
"""One statement and its parameters."""

UPSERT_TASK = (
    "INSERT INTO tasks (id, status, priority, created_at, updated_at, assigned_to, goal_id, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status=excluded.status,"
    " priority=excluded.priority, updated_at=excluded.updated_at, assigned_to=excluded.assigned_to,"
    " goal_id=excluded.goal_id, body=excluded.body"
)
INSERT_TOKEN = "INSERT INTO tokens (token_hash, agent_id, role, prefix, created_at) VALUES (?, ?, ?, ?, ?)"
DELETE_TOKENS = "DELETE FROM tokens WHERE agent_id = ?"
UPSERT_AGENT = "INSERT INTO agents (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body=excluded.body"
INSERT_TRAJECTORY = "INSERT OR IGNORE INTO trajectory (task_id, seq, ts, kind, payload) VALUES (?, ?, ?, ?, ?)"
# Retention: a pruned task goes with its trajectory.
DELETE_TASK = "DELETE FROM tasks WHERE id = ?"
DELETE_TRAJECTORY = "DELETE FROM trajectory WHERE task_id = ?"


WAL_LIMIT_BYTES = 64 * 2**20
"""WAL size past which the writer makes the log start over (and the file is truncated back to it)."""
BUSY_TIMEOUT_MS = 30_000
"""How long a commit waits for another process's write lock (an operator's sqlite3 shell, a backup) before the
store gives up; the hub keeps serving meanwhile."""


class StoreError(Exception):
    """The database refused a write or a read."""


def _migrations() -> list[tuple[int, str]]:
    files = sorted(
        (p for p in resources.files("hub").joinpath("migrations").iterdir() if p.name.endswith(".sql")),
        key=lambda p: p.name,
    )
    return [(int(p.name.split("_", 1)[0]), p.read_text()) for p in files]


class Store:
    """The hub's database: writes go through the writer task on one connection (see :meth:`_commit`); reads and
    WAL checkpoints go through a second one."""

    def __init__(self, db: aiosqlite.Connection, path: Path, reader: aiosqlite.Connection,
                 wal_limit_bytes: int = WAL_LIMIT_BYTES, synchronous: str = "FULL") -> None:
        self._db = db
        self.synchronous = synchronous
        self._syncer: WalSyncer | None = None
        """With FULL: makes each commit durable (see hub/wal_sync.py); None means SQLite syncs in COMMIT."""
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
        self._writer_running = False
        self._writer_stopped = asyncio.Event()
        self.n_commits = 0
        self.n_writes = 0
        self.commit_s_total = 0.0
        self.commit_s_max = 0.0

    def __repr__(self) -> str:
        return f"<Store {self.path.name} commits={self.n_commits} writes={self.n_writes} pending={len(self._pending)}>"

    @classmethod
    async def open(cls, path: Path, synchronous: str = "FULL", wal_limit_bytes: int = WAL_LIMIT_BYTES) -> Store:
        """Open (creating if needed) the database at ``path`` and apply pending migrations."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # The writer's transactions run on the loop's thread (see _commit); the connection's own thread runs
            # only the fallbacks and the WAL restart, between them: the connection is used from both, never at once.
            db = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={synchronous}")
            await db.execute("PRAGMA foreign_keys=ON")
            # Checkpoints copy the WAL into the database file and fsync it: tens of ms. Done inside a commit they
            # stall every writer, so the writer never checkpoints; run_checkpointer does, on the reader connection.
            await db.execute("PRAGMA wal_autocheckpoint=0")
            await db.execute(f"PRAGMA journal_size_limit={wal_limit_bytes}")
            # Reads and checkpoints use a second connection: reads then see committed data only, and never run
            # on the writer's connection while the loop's thread is inside one of its transactions.
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute(f"PRAGMA synchronous={synchronous}")
            store = cls(db, path, reader, wal_limit_bytes, synchronous)
            await store._migrate()
            await db.execute("PRAGMA busy_timeout=0")  # see _begin: the loop's thread never waits for a lock
            if synchronous == "FULL":
                await store._start_syncer()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        return store

    async def _start_syncer(self) -> None:
        try:
            self._syncer = await WalSyncer.start(self._wal)
        except (WalSyncError, OSError) as exc:
            logger.warning("%s; SQLite syncs each commit on its thread instead (slower under load)", exc)
            return
        await self._db.execute("PRAGMA synchronous=OFF")  # the frames are written; the helper syncs them

    async def _sync_commit(self) -> None:
        """Make the commit just made durable (FULL with the helper). If the helper is gone, sync here, on the
        connection's thread, and let SQLite sync later commits itself."""
        assert self._syncer is not None
        try:
            await self._syncer.sync()
            return
        except WalSyncError as exc:
            logger.warning("%s; SQLite syncs each commit on its thread from now on", exc)
            syncer, self._syncer = self._syncer, None
        await syncer.close()
        await self._db._execute(self._fsync_wal)  # OSError here: durability unknown, the caller stops the hub
        await self._db.execute("PRAGMA synchronous=FULL")

    def _fsync_wal(self) -> None:
        if self._wal_fd is None:
            self._wal_fd = os.open(self._wal, os.O_RDONLY)
        getattr(os, "fdatasync", os.fsync)(self._wal_fd)  # as the helper does

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = row[0] if row else 0
        for number, sql in _migrations():
            if number <= version:
                continue
            await self._db.execute("BEGIN")
            try:
                for statement in filter(None, (s.strip() for s in sql.split(";"))):
                    await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version={number}")
                await self._db.execute("COMMIT")
            except sqlite3.Error:
                await self._db.execute("ROLLBACK")
                raise
            logger.info("store migrated to version %d", number)

    async def close(self) -> None:
        """Stop taking writes, let the writer commit what is pending, then close the connection."""
        self._closed = True
        self._wake.set()
        if self._writer_running:
            await self._writer_stopped.wait()
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.execute(f"PRAGMA synchronous={self.synchronous}")  # the checkpoint syncs as configured
        await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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
        }

    def enqueue(self, writes: Iterable[Write]) -> asyncio.Future[None]:
        """Queue ``writes`` for the next transaction; the future resolves once it has committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = list(writes)
        if self._closed:
            fut.set_exception(StoreError("store is closed"))
        elif not batch:
            fut.set_result(None)
        else:
            self._pending.append((batch, fut))
            self._wake.set()
        return fut

    async def write(self, writes: Iterable[Write]) -> None:
        """Queue ``writes`` for the next transaction and return once it has committed."""
        await self.enqueue(writes)

    async def run_writer(self) -> None:
        """Drain pending writes into transactions until the store closes (owned by the hub's TaskGroup)."""
        self._writer_running = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                # Let every task already woken this turn (a scheduler round after a completion, the next frame of
                # a socket) add its writes first, so they share this commit instead of waiting for the next one.
                await asyncio.sleep(0)
                while self._pending:
                    group, self._pending = self._pending, []
                    await self._commit(group)
                    await self._keep_wal_bounded()
                if self._closed:
                    return
        finally:
            self._writer_running = False
            self._writer_stopped.set()

    async def _commit(self, group: list[tuple[list[Write], asyncio.Future[None]]]) -> None:
        by_sql: dict[str, list[Sequence[Any]]] = {}
        deferred: dict[str, dict[str, Deferred]] = {}
        for writes, _ in group:
            for sql, params in writes:
                if isinstance(params, Deferred):
                    rows = deferred.setdefault(sql, {})
                    rows.pop(params.key, None)  # keep the order of the last write of each key
                    rows[params.key] = params
                else:
                    by_sql.setdefault(sql, []).append(params)
        for sql, rows in deferred.items():  # built here, on the loop's thread, where the objects are owned
            by_sql.setdefault(sql, []).extend(d.build() for d in rows.values())
        started = time.perf_counter()
        try:
            # The statements run here: on the connection's thread each row's step would wait for the GIL the loop
            # holds (about 80 us a row measured under load). The fsync never runs here: with FULL the helper
            # process syncs the WAL (hub/wal_sync.py), or without it SQLite does in a COMMIT on the connection's
            # thread (aiosqlite has no public call for running a function there; its documented-in-source one is
            # used); NORMAL commits never sync.
            if not self._begin(by_sql):  # another process holds the write lock: wait on the connection's thread
                await self._db._execute(self._transaction, by_sql)
            elif self._syncer is None and self.synchronous == "FULL":
                await self._db._execute(self._finish)
            else:
                self._finish()
            if self._syncer is not None:
                await self._sync_commit()
            took = time.perf_counter() - started
            self.commit_s_total += took
            self.commit_s_max = max(self.commit_s_max, took)
        except (sqlite3.Error, OSError) as exc:
            logger.critical("store commit failed: %s", exc)
            error = StoreError(str(exc))
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(error)
            # The state in memory already moved past what is on disk and cannot be rolled back: carrying on would
            # let later answers rest on writes that never happened. Stop; a restart reloads the committed state.
            raise error from exc
        self.n_commits += 1
        self.n_writes += sum(len(rows) for rows in by_sql.values())
        for _, fut in group:
            if not fut.done():
                fut.set_result(None)

    async def run_checkpointer(self, interval_s: float = 1.0) -> None:
        """Copy committed WAL pages into the database file every ``interval_s``, beside the writer, never blocking
        it (PASSIVE); owned by the hub's TaskGroup. The WAL's reset is the writer's (see _keep_wal_bounded)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.n_checkpoints += 1
            except sqlite3.Error as exc:
                logger.warning("checkpoint failed (will retry): %s", exc)

    async def _keep_wal_bounded(self) -> None:
        """Between two commits, once the WAL is past its limit, checkpoint it on the writer's connection so the
        next commit starts the log over (and journal_size_limit truncates the file back).

        Under sustained writes a passive checkpoint never finds the gap between commits it needs for that, and
        the log grows without bound (a benchmark left 119 MB). Here there is no commit to wait for; a reader
        in the way makes it return at once, to be tried again after the next commit. The passive checkpoints
        have already copied most pages, so this one is short; commits queue meanwhile, off the loop's thread.
        """
        try:
            if self._wal.stat().st_size <= self.wal_limit_bytes:
                return
        except OSError:
            return
        if await self._db._execute(self._restart_wal):
            self.n_restarts += 1

    def _restart_wal(self) -> bool:
        """Runs on aiosqlite's connection thread; True when the checkpoint completed (not blocked by a reader).

        It runs with the configured syncing: the database file must be synced before the WAL starts over."""
        conn = self._db._conn
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        finally:
            if self._syncer is not None:
                conn.execute("PRAGMA synchronous=OFF")
        return not busy

    def _begin(self, by_sql: dict[str, list[Sequence[Any]]]) -> bool:
        """Open the transaction and run every statement of one group (on the loop's thread; no fsync here).

        The writer connection's busy timeout is 0, so this never blocks the loop: when another process holds the
        write lock it returns False having done nothing, and :meth:`_transaction` waits for the lock instead.
        """
        conn = self._db._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction or "locked" not in str(exc):
                raise
            return False
        try:
            for sql, rows in by_sql.items():
                conn.executemany(sql, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True

    def _finish(self) -> None:
        """Commit the open transaction (and fsync it, when SQLite does the syncing: then on the connection's
        thread)."""
        conn = self._db._conn
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _transaction(self, by_sql: dict[str, list[Sequence[Any]]]) -> None:
        """Runs on aiosqlite's connection thread: the whole group, waiting up to BUSY_TIMEOUT_MS for the lock."""
        conn = self._db._conn
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            began = self._begin(by_sql)
        finally:
            conn.execute("PRAGMA busy_timeout=0")
        if not began:
            raise sqlite3.OperationalError(f"database is locked (waited {BUSY_TIMEOUT_MS} ms)")
        self._finish()

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            async with self._reader.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
