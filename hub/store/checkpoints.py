"""WAL checkpoints of the SQLite store: the periodic passive copy beside the writer, and the restart that keeps the
WAL bounded between two commits."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import aiosqlite

from hub.store.connection import WriterThread
from hub.store.faults import disk_full
from hub.store.wal_sync import WalSyncer

logger = logging.getLogger("hub.store.sqlite")  # the store's log lines keep one name, whichever part writes them


class WalCheckpoints(WriterThread):
    """Checkpoints of :class:`hub.store.sqlite.SqliteStore` (which sets these attributes)."""

    _reader: aiosqlite.Connection
    _syncer: WalSyncer | None
    _wal: Path
    synchronous: str
    wal_limit_bytes: int
    n_checkpoints: int
    n_restarts: int
    _checkpoint_failing: bool

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
