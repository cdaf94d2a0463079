"""The durable store (hub/store/sqlite.py): acknowledged writes survive SIGKILL, group commit, errors and reopening."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import psutil
import pytest

from hub.store import StoreError
from hub.store.schema import migrations
from hub.store.sqlite import INSERT_TOKEN, UPSERT_TASK, SqliteStore
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, wait_tasks

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import asyncio, sys
from pathlib import Path
from hub.store.sqlite import UPSERT_TASK, SqliteStore

async def main() -> None:
    store = await SqliteStore.open(Path(sys.argv[1]))
    writer = asyncio.create_task(store.run_writer())

    async def one(n: int) -> None:
        await store.write([(UPSERT_TASK, (f"t{n}", "queued", 2, n, n, None, None, "{}"))])
        print(n, flush=True)  # said only once committed

    n = 0
    while True:
        await asyncio.gather(*(one(n + k) for k in range(8)))
        n += 8

asyncio.run(main())
"""


def row(n: int) -> tuple[str, tuple[object, ...]]:
    return (UPSERT_TASK, (f"t{n}", "queued", 2, n, n, None, None, "{}"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open store with its writer running; closed after the test."""
    s = await SqliteStore.open(tmp_path / "store.db")
    writer = asyncio.create_task(s.run_writer())
    yield s
    if not writer.done():
        await s.close()
    await writer


def task_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT id FROM tasks")}


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """Every write SqliteStore.write acknowledged is in the database after its process is killed with SIGKILL."""
    path = tmp_path / "killed.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    acknowledged: set[str] = set()
    async with asyncio.timeout(30 * SCALE):
        while len(acknowledged) < 400:
            line = await proc.stdout.readline()
            assert line, "the writer died on its own"
            acknowledged.add(f"t{int(line)}")
    helpers = psutil.Process(proc.pid).children()  # the WAL sync helper
    assert len(helpers) == 1
    proc.send_signal(signal.SIGKILL)
    rest = await proc.stdout.read()  # acknowledged before it died, still in the pipe
    acknowledged |= {f"t{int(n)}" for n in rest.split()}
    assert await proc.wait() == -signal.SIGKILL
    stored = task_ids(path)
    assert acknowledged <= stored, f"lost {len(acknowledged - stored)} acknowledged writes"
    _, alive = psutil.wait_procs(helpers, timeout=10 * SCALE)  # its pipe closed with the writer: it exits too
    assert not alive


async def test_concurrent_writes_share_commits(store: SqliteStore) -> None:
    """Writes made at once are group-committed: fewer transactions than writes, and every write is stored."""
    await asyncio.gather(*(store.write([row(n)]) for n in range(200)))
    assert store.n_writes == 200
    assert store.n_commits < 200
    assert len(await store.fetch_all("SELECT id FROM tasks")) == 200


async def test_write_returns_after_commit(store: SqliteStore, tmp_path: Path) -> None:
    """Once write returns, another connection already sees the row."""
    await store.write([row(1), row(2)])
    assert task_ids(tmp_path / "store.db") == {"t1", "t2"}


async def test_failed_write_raises_and_stops_the_writer(tmp_path: Path) -> None:
    """A write the database refuses raises StoreError to its caller, commits none of its batch, and stops the
    writer loudly: memory has moved past the disk, so the hub must restart rather than answer on a lost write."""
    s = await SqliteStore.open(tmp_path / "refuse.db")
    writer = asyncio.create_task(s.run_writer())
    await s.write([(INSERT_TOKEN, ("h1", "a", "agent", "p", 1))])
    with pytest.raises(StoreError):
        await s.write([row(5), (INSERT_TOKEN, ("h1", "b", "agent", "p", 2))])
    with pytest.raises(StoreError):
        await writer
    assert await s.fetch_all("SELECT id FROM tasks") == []
    await s.close()


async def test_bad_read_raises_store_error(store: SqliteStore) -> None:
    """A read the database refuses raises StoreError, not a sqlite3 error."""
    with pytest.raises(StoreError):
        await store.fetch_all("SELECT nope FROM nowhere")


async def test_close_commits_what_is_pending_then_refuses(store: SqliteStore, tmp_path: Path) -> None:
    """Closing lets the writer commit pending writes; a write after close raises StoreError."""
    pending = asyncio.ensure_future(store.write([row(7)]))
    await asyncio.sleep(0)  # queue the write before closing
    await store.close()
    await pending
    assert task_ids(tmp_path / "store.db") == {"t7"}
    with pytest.raises(StoreError):
        await store.write([row(8)])


async def test_empty_write_is_a_no_op(store: SqliteStore) -> None:
    """Writing nothing returns at once without a transaction."""
    await store.write([])
    assert store.n_commits == 0


async def test_reopen_keeps_data_and_migrates_once(tmp_path: Path) -> None:
    """The database is WAL, versioned by user_version, and reopening keeps data without re-running migrations."""
    path = tmp_path / "re.db"
    for n in range(2):
        s = await SqliteStore.open(path)
        writer = asyncio.create_task(s.run_writer())
        await s.write([row(n)])
        assert await s.fetch_all("PRAGMA journal_mode") == [("wal",)]
        assert await s.fetch_all("PRAGMA user_version") == [(4,)]
        await s.close()
        await writer
    assert task_ids(path) == {"t0", "t1"}


async def test_hub_restart_reloads_tasks_and_tokens(make_hub, tmp_path: Path) -> None:
    """A hub restarted on the same data dir has every task (status and history) and every token back."""
    data_dir = tmp_path / "same"
    first = await make_hub(data_dir=data_dir)
    token = await first.mint_token("keeper")
    queued = await first.submit(description="waits", priority="high")
    dep = await first.submit(description="depends", depends_on=[queued])
    before = {t: await first.task(t) for t in (queued, dep)}
    await first.server.stop()

    second = await make_hub(data_dir=data_dir)
    assert second.admin_token == first.admin_token, "the generated admin token is reused"
    assert {t: await second.task(t) for t in (queued, dep)} == before
    sim = AgentSim(second.ws_url, "keeper", token)
    await sim.connect()
    await wait_tasks(second, [queued, dep], {"completed"})
    assert [r.task_id for r in sim.received] == [queued, dep]
    await sim.close()


async def test_version_1_database_loses_the_unused_status_index(tmp_path: Path) -> None:
    """A database made before migration 2 keeps its rows and drops the status index no query used (every status
    change rewrote a page of it)."""
    path = tmp_path / "v1.db"
    (sql_v1,) = [sql for number, sql in migrations() if number == 1]
    with closing(sqlite3.connect(path)) as db:
        db.executescript(sql_v1 + ";PRAGMA user_version=1;")
        db.execute("INSERT INTO tasks VALUES ('old', 'queued', 2, 1, 1, NULL, NULL, '{}')")
        db.commit()
    s = await SqliteStore.open(path)
    try:
        assert await s.fetch_all("PRAGMA user_version") == [(4,)]
        assert await s.fetch_all("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'tasks_status'") == []
        assert await s.fetch_all("SELECT id, status FROM tasks") == [("old", "queued")]
    finally:
        await s.close()


async def test_a_lock_held_by_another_process_never_blocks_the_loop(tmp_path: Path) -> None:
    """While another connection holds the write lock, a write waits for it off the loop's thread (the loop keeps
    running), then commits once the lock is released; nothing is lost."""
    path = tmp_path / "locked.db"
    s = await SqliteStore.open(path)
    writer = asyncio.create_task(s.run_writer())
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        pending = asyncio.ensure_future(s.write([row(1)]))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):  # the loop turns freely while the write waits for the lock
            await asyncio.sleep(0.005)
        assert loop.time() - started < 1.0
        assert not pending.done()
        other.execute("COMMIT")
        await asyncio.wait_for(pending, 10)
        await s.write([row(2)])  # and the next commit takes the fast path again
    finally:
        other.close()
        await s.close()
        await writer
    assert task_ids(path) == {"t1", "t2"}


async def test_wal_stays_bounded_under_sustained_writes(tmp_path: Path) -> None:
    """Back-to-back commits never give a passive checkpoint the gap it needs to reset the WAL; past the limit the
    writer checkpoints between two commits, so the log stays near the limit instead of growing with each one."""
    path = tmp_path / "wal.db"
    limit = 256 * 1024
    s = await SqliteStore.open(path, wal_limit_bytes=limit)
    writer = asyncio.create_task(s.run_writer())
    checkpointer = asyncio.create_task(s.run_checkpointer(interval_s=0.01))
    body = "x" * 2000
    wal = path.with_name("wal.db-wal")
    largest = 0
    try:
        for n in range(150):  # ~3 MB of row data, 20 rows a commit, always one commit in flight
            await asyncio.gather(
                *(s.write([(UPSERT_TASK, (f"t{n}-{i}", "queued", 2, n, n, None, None, body))]) for i in range(20))
            )
            largest = max(largest, wal.stat().st_size)
    finally:
        checkpointer.cancel()
        await asyncio.gather(checkpointer, return_exceptions=True)
        await s.close()
        await writer
    assert s.n_restarts >= 1
    assert largest < 2 * limit, f"WAL reached {largest} bytes"
    assert len(task_ids(path)) == 3000
