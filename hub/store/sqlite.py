"""The SQLite store: WAL mode through aiosqlite, with one writer that group-commits.

Callers hand changes to :meth:`SqliteStore.write` and are answered only once the transaction holding them has
committed ("write before you say"). The writer drains everything pending into one transaction, so under load many
state changes share one fsync instead of paying one each. Each change (:mod:`hub.store.records`) becomes one statement
here; the statements themselves (:data:`Write`) are accepted too, for this module's own tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiosqlite

from hub.store import StoreError, schema
from hub.store.faults import disk_full, open_error, table, unknown_role
from hub.store.records import (
    Change,
    EventRow,
    JournalRow,
    RawTask,
    RecordRow,
    TokenRow,
    TrajectoryRow,
)
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

logger = logging.getLogger(__name__)
R = TypeVar("R")


WAL_LIMIT_BYTES = 64 * 2**20
"""WAL size past which the writer makes the log start over (and the file is truncated back to it)."""
BUSY_TIMEOUT_MS = 30_000
"""How long a commit waits for another process's write lock (an operator's sqlite3 shell, a backup) before the
store gives up; the hub keeps serving meanwhile."""


DISK_FULL_RETRY_S = (0.05, 2.0)
"""A commit refused for lack of space is retried after the first delay, doubling up to the second."""


async def _connect(path: Path, **kwargs: Any) -> aiosqlite.Connection:
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


class SqliteStore:
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
            db = await _connect(path, isolation_level=None, check_same_thread=False)
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
            reader = await _connect(path, isolation_level=None)
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
        await self._on_thread(self._fsync_wal)  # OSError here: durability unknown, the caller stops the hub
        await self._db.execute("PRAGMA synchronous=FULL")

    async def _on_thread(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` on the writer connection's own thread, between its other calls (aiosqlite has no public
        call for this; its documented-in-source ``_execute`` is used)."""
        result: R = await self._db._execute(fn, *args)  # type: ignore[no-untyped-call]
        return result

    def _fsync_wal(self) -> None:
        if self._wal_fd is None:
            self._wal_fd = os.open(self._wal, os.O_RDONLY)
        getattr(os, "fdatasync", os.fsync)(self._wal_fd)  # as the helper does

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
        """Commit ``group`` in one transaction and answer its futures.

        A batch whose rows cannot be built or stored (a lone surrogate, an integer past 64 bits, a build that
        raises) fails alone with StoreError and the rest commits: a bad row never stops the writer. While the disk
        is full the group stays pending, retried with a capped backoff (nothing is answered that is not on disk).
        Any other failure is fatal (see the end).
        """
        delay_s = DISK_FULL_RETRY_S[0]
        while group:
            by_sql, bad = self._rows(group)
            if bad:
                group = self._refuse(group, bad)
                continue
            started = time.perf_counter()
            try:
                # The statements run here: on the connection's thread each row's step would wait for the GIL the
                # loop holds (about 80 us a row measured under load). The fsync never runs here: with FULL the
                # helper process syncs the WAL (hub/store/wal_sync.py), or without it SQLite does in a COMMIT on the
                # connection's thread (aiosqlite has no public call for running a function there; its
                # documented-in-source one is used); NORMAL commits never sync.
                if not self._begin(by_sql):  # another process holds the write lock: wait on the connection's thread
                    await self._on_thread(self._transaction, by_sql)
                elif self._syncer is None and self.synchronous == "FULL":
                    await self._on_thread(self._finish)
                else:
                    self._finish()
            except Exception as exc:  # rolled back: nothing of the group is in the database
                if disk_full(exc) and not self._closed:
                    self._disk_is_full(exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), delay_s)
                    delay_s = min(2 * delay_s, DISK_FULL_RETRY_S[1])
                    continue
                if bad := unstorable_batches(group):
                    group = self._refuse(group, bad)
                    continue
                if disk_full(exc):  # and closing: the hub stops anyway, and restarts from what is on disk
                    self._fail(group, StoreError(f"not committed, the disk is full: {exc}"))
                    return
                self._stop(group, exc)
            try:
                if self._syncer is not None:
                    await self._sync_commit()
            except (sqlite3.Error, OSError) as exc:
                self._stop(group, exc)
            took = time.perf_counter() - started
            self.commit_s_total += took
            self.commit_s_max = max(self.commit_s_max, took)
            if self.degraded is not None:
                logger.warning("disk space is back: writes commit again")
                self.degraded = None
            self.n_commits += 1
            self.n_writes += sum(len(rows) for rows in by_sql.values())
            for _, fut in group:
                if not fut.done():
                    fut.set_result(None)
            return

    def _rows(
        self, group: list[tuple[list[Write], asyncio.Future[None]]]
    ) -> tuple[dict[str, list[Sequence[Any]]], dict[int, str]]:
        """The group's rows by statement, and the batches (by index) whose deferred rows failed to build."""
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
        failed: dict[tuple[str, str], str] = {}
        for sql, rows in deferred.items():  # built here, on the loop's thread, where the objects are owned
            built = by_sql.setdefault(sql, [])
            for d in rows.values():
                try:
                    built.append(d.build())
                except Exception as exc:
                    failed[sql, d.key] = f"building the {table(sql)} row {d.key!r} raised {exc!r}"
        if not failed:
            return by_sql, {}
        return by_sql, {
            i: failed[key]
            for i, (writes, _) in enumerate(group)
            for sql, params in writes
            if isinstance(params, Deferred) and (key := (sql, params.key)) in failed
        }

    def _refuse(
        self, group: list[tuple[list[Write], asyncio.Future[None]]], bad: dict[int, str]
    ) -> list[tuple[list[Write], asyncio.Future[None]]]:
        """Fail the ``bad`` batches alone and return the rest of the group."""
        for i, reason in bad.items():
            logger.error("store refused a batch of %d writes: unencodable row: %s", len(group[i][0]), reason)
            self.n_refused_batches += 1
            if not group[i][1].done():
                group[i][1].set_exception(StoreError(f"unencodable row: {reason}"))
        return [batch for i, batch in enumerate(group) if i not in bad]

    def _disk_is_full(self, exc: Exception) -> None:
        self.n_disk_full += 1
        if self.degraded is None:
            logger.error(
                "the disk is full (%s): writes wait and are retried; state-changing requests are refused "
                "until space is freed",
                exc,
            )
        self.degraded = f"disk full: {exc}"

    @staticmethod
    def _fail(group: list[tuple[list[Write], asyncio.Future[None]]], error: StoreError) -> None:
        for _, fut in group:
            if not fut.done():
                fut.set_exception(error)

    def _stop(self, group: list[tuple[list[Write], asyncio.Future[None]]], exc: BaseException) -> NoReturn:
        logger.critical("store commit failed: %s", exc)
        error = StoreError(str(exc))
        self._fail(group, error)
        # The state in memory already moved past what is on disk and cannot be rolled back: carrying on would
        # let later answers rest on writes that never happened. Stop; a restart reloads the committed state.
        raise error from exc

    async def run_checkpointer(self, interval_s: float = 1.0) -> None:
        """Copy committed WAL pages into the database file every ``interval_s``, beside the writer, never blocking
        it (PASSIVE); owned by the hub's TaskGroup. The WAL's reset is the writer's (see _keep_wal_bounded)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.n_checkpoints += 1
            except sqlite3.Error as exc:
                if not self._checkpoint_failing:  # once per spell (a full disk fails it every interval)
                    logger.warning("checkpoint failed (will retry): %s", exc)
                self._checkpoint_failing = True
            else:
                self._checkpoint_failing = False

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
        try:
            restarted = await self._on_thread(self._restart_wal)
        except sqlite3.Error as exc:  # the database file could not grow: the WAL keeps the pages meanwhile
            if not disk_full(exc):
                raise
            if not self._checkpoint_failing:
                logger.warning("checkpoint failed (will retry): %s", exc)
            self._checkpoint_failing = True
            return
        if restarted:
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

    # --- reads (on the reader connection: committed data only) ---------------------------------------------------

    async def load_tasks(self) -> list[RawTask]:
        # As bytes: text that is not UTF-8 would make SQLite's driver fail the whole query, not just that row.
        return await self.fetch_all(SELECT_TASKS)

    async def load_tokens(self, known_roles: Collection[str]) -> list[TokenRow]:
        rows = [TokenRow(*row) for row in await self.fetch_all(SELECT_TOKENS)]
        for row in rows:
            if row.role not in known_roles:
                raise StoreError(unknown_role(self.path, row.role, known_roles))
        return rows

    async def last_trajectory_seqs(self) -> dict[str, int]:
        return dict(await self.fetch_all(SELECT_LAST_SEQS))

    async def read_trajectory(self, task_id: str, after_seq: int, limit: int) -> list[TrajectoryRow]:
        return [TrajectoryRow(*row) for row in await self.fetch_all(SELECT_TRAJECTORY, (task_id, after_seq, limit))]

    async def read_events(self, after_seq: int, limit: int, task_id: str | None = None) -> list[EventRow]:
        if task_id is None:
            rows = await self.fetch_all(SELECT_EVENTS_AFTER, (after_seq, limit))
        else:
            rows = await self.fetch_all(SELECT_TASK_EVENTS_AFTER, (task_id, after_seq, limit))
        return [EventRow(seq, ts, tid, kind, body) for seq, ts, tid, kind, body in rows]

    async def last_event_seq(self) -> int:
        rows = await self.fetch_all(SELECT_EVENT_SEQ_HIGH)
        return int(rows[0][0] or 0) if rows else 0

    async def load_records(self, kind: str) -> list[RecordRow]:
        return [RecordRow(*row) for row in await self.fetch_all(SELECT_RECORDS, (kind,))]

    async def read_journal(
        self, kind: str, after_seq: int = 0, limit: int = 1000, since_ts: int | None = None
    ) -> list[JournalRow]:
        if since_ts is None:
            rows = await self.fetch_all(SELECT_JOURNAL_AFTER, (kind, after_seq, limit))
        else:
            rows = await self.fetch_all(SELECT_JOURNAL_SINCE, (kind, since_ts, after_seq, limit))
        return [JournalRow(*row) for row in rows]

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            async with self._reader.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
