"""Commit durability through the WAL sync helper process (hub/store/wal_sync.py and its use in hub/store/sqlite.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from hub.store.sqlite import UPSERT_TASK, SqliteStore
from hub.store.wal_sync import WalSyncer, WalSyncError


def row(n: int) -> tuple[str, tuple[object, ...]]:
    return UPSERT_TASK, (f"t{n}", "queued", 2, n, n, None, None, "{}")


def stored_ids(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {r[0] for r in db.execute("SELECT id FROM tasks")}


async def open_with_writer(path: Path, synchronous: str = "FULL") -> tuple[SqliteStore, asyncio.Task[None]]:
    store = await SqliteStore.open(path, synchronous)
    return store, asyncio.create_task(store.run_writer())


async def test_every_full_commit_is_synced_by_the_helper_before_it_is_answered(tmp_path: Path) -> None:
    store, writer = await open_with_writer(tmp_path / "full.db")
    try:
        assert store.stats()["wal_sync"] == "helper"
        for n in range(20):  # one at a time: twenty commits
            await store.write([row(n)])
        stats = store.stats()
        assert stats["commits"] == 20
        assert stats["wal_syncs"] == stats["commits"]
    finally:
        await store.close()
        await writer
    assert stored_ids(tmp_path / "full.db") == {f"t{n}" for n in range(20)}


async def test_a_dead_helper_hands_syncing_back_to_sqlite_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "fallback.db"
    store, writer = await open_with_writer(path)
    try:
        await store.write([row(0)])
        assert store._syncer is not None
        os.kill(store._syncer.pid, signal.SIGKILL)
        await store._syncer._proc.wait()  # gone before the next commit asks it
        await store.write([row(1)])  # synced on the connection's thread instead
        await store.write([row(2)])
        assert store.stats()["wal_sync"] == "sqlite"
        assert store._db._conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL again
    finally:
        await store.close()
        await writer
    assert stored_ids(path) == {"t0", "t1", "t2"}


async def test_normal_runs_no_helper(tmp_path: Path) -> None:
    store, writer = await open_with_writer(tmp_path / "normal.db", "NORMAL")
    try:
        await store.write([row(0)])
        assert store.stats()["wal_sync"] == "none"
        assert store._syncer is None
    finally:
        await store.close()
        await writer


async def test_a_helper_that_cannot_open_the_wal_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(WalSyncError, match="could not open"):
        await WalSyncer.start(tmp_path / "missing-wal")


async def test_a_failed_fdatasync_is_an_error_not_a_retry() -> None:
    """fdatasync fails on /dev/null (EINVAL), as it would on a failing disk: the caller gets OSError, which the
    store treats as a failed commit, never as a helper to replace (a retried fsync can lie)."""
    syncer = await WalSyncer.start(Path("/dev/null"))
    try:
        with pytest.raises(OSError, match="fdatasync"):
            await syncer.sync()
    finally:
        await syncer.close()


async def test_closing_the_store_stops_the_helper(tmp_path: Path) -> None:
    """(A SIGKILLed store's helper exits too: see test_store's SIGKILL test.)"""
    store, writer = await open_with_writer(tmp_path / "exit.db")
    assert store._syncer is not None
    pid = store._syncer.pid
    await store.close()
    await writer
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
