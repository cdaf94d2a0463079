"""The SQLite store's writer: it drains every pending batch into one transaction (group commit), makes it durable
(through the WAL sync helper, or SQLite's own sync), answers each batch's future, refuses a batch whose rows cannot
be stored without failing the others, waits out a full disk, and stops the hub on any other commit failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from hub.store import StoreError
from hub.store.checkpoints import WalCheckpoints
from hub.store.faults import disk_full, table
from hub.store.statements import Deferred, Write, unstorable_batches
from hub.store.wal_sync import WalSyncError

logger = logging.getLogger("hub.store.sqlite")  # the store's log lines keep one name, whichever part writes them

BUSY_TIMEOUT_MS = 30_000
"""How long a commit waits for another process's write lock (an operator's sqlite3 shell, a backup) before the
store gives up; the hub keeps serving meanwhile."""


DISK_FULL_RETRY_S = (0.05, 2.0)
"""A commit refused for lack of space is retried after the first delay, doubling up to the second."""


class GroupWriter(WalCheckpoints):
    """The writer of :class:`hub.store.sqlite.SqliteStore` (which sets these attributes)."""

    _wal_fd: int | None
    _pending: list[tuple[list[Write], asyncio.Future[None]]]
    _wake: asyncio.Event
    _closed: bool
    _closing: asyncio.Event
    _writer_running: bool
    _writer_stopped: asyncio.Event
    n_commits: int
    n_writes: int
    commit_s_total: float
    commit_s_max: float
    degraded: str | None
    n_disk_full: int
    n_refused_batches: int

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

    def _fsync_wal(self) -> None:
        if self._wal_fd is None:
            self._wal_fd = os.open(self._wal, os.O_RDONLY)
        getattr(os, "fdatasync", os.fsync)(self._wal_fd)  # as the helper does
