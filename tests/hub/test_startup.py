"""Failed starts and the data-dir lock: a hub that cannot start exits at once with one paragraph naming the cause and
the fix, a non-zero code, the port and helpers released and nothing half-written; a second hub on a data dir in use
refuses to start, naming the holder."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import psutil
import pytest

from hub.data_lock import DataLock
from hub.server import HubServer, StartupError
from hub.settings import HubSettings
from hub.store.schema import migrations
from tests.conftest import SCALE
from tests.hub.hub_process import helpers_of, remount, run_to_exit, spawn, stop, tmpfs, wait_ready


def make_db(path: Path, *sql: str) -> None:
    """A database of the current schema (the hub's own migrations), then ``sql`` run on it."""
    with closing(sqlite3.connect(path)) as db:
        for number, migration in migrations():
            db.executescript(migration)
            db.execute(f"PRAGMA user_version={number}")
        for statement in sql:
            db.execute(statement)
        db.commit()


def listeners(port: int) -> list[int | None]:
    """Pids of the sockets listening on ``port``."""
    return [c.pid for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def assert_no_helper(data_dir: Path) -> None:
    _, alive = psutil.wait_procs(helpers_of(data_dir), timeout=10 * SCALE)
    assert not alive, "the WAL sync helper outlived the hub"


async def test_garbage_database_fails_fast_and_is_left_untouched(tmp_path: Path) -> None:
    """A database file of garbage bytes: exit 1 at once, naming the file and the fix; the file keeps its bytes and
    no admin token, WAL or helper is left behind."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    garbage = os.urandom(16384)
    (data_dir / "agentcom.db").write_bytes(garbage)
    exited = await run_to_exit(data_dir)
    assert exited.code == 1
    assert "Traceback" not in exited.stderr
    assert exited.message.startswith(f"agentcom hub: cannot start: cannot open the database {data_dir / 'agentcom.db'}")
    assert "file is not a database" in exited.message and "move it aside" in exited.message
    assert (data_dir / "agentcom.db").read_bytes() == garbage
    assert sorted(p.name for p in data_dir.iterdir()) == ["agentcom.db", "hub.lock"]
    assert_no_helper(data_dir)


async def test_unknown_token_role_fails_fast_naming_the_row_and_the_fix(tmp_path: Path) -> None:
    """A token row with a role this hub does not know: exit 1 naming the role and the SQL that fixes it; the WAL
    sync helper (already started) ends, no admin token is generated, the row is still there."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    make_db(
        data_dir / "agentcom.db",
        "INSERT INTO tokens VALUES ('h1', 'boss', 'superuser', 'abcd1234', 1)",
        "INSERT INTO tasks VALUES ('t1', 'queued', 2, 1, 1, NULL, NULL, '{}')",
    )
    exited = await run_to_exit(data_dir)
    assert exited.code == 1
    assert "Traceback" not in exited.stderr
    assert "'superuser' is not a valid Role" in exited.message
    assert "DELETE FROM tokens WHERE role NOT IN ('admin', 'agent', 'viewer')" in exited.message
    assert not (data_dir / "admin.token").exists()
    assert_no_helper(data_dir)
    with closing(sqlite3.connect(data_dir / "agentcom.db")) as db:
        assert db.execute("SELECT role FROM tokens").fetchall() == [("superuser",)]
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    """A database whose schema clashes with the migrations: exit 1 naming the migration; the database is still at
    its old version with only its old table (all pending migrations run in one transaction)."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    with closing(sqlite3.connect(data_dir / "agentcom.db")) as db:
        db.execute("CREATE TABLE tasks (something_else TEXT)")
        db.commit()
    exited = await run_to_exit(data_dir)
    assert exited.code == 1
    assert "Traceback" not in exited.stderr
    assert "failed in migration 1" in exited.message and "still at version 0" in exited.message
    assert "table tasks already exists" in exited.message
    with closing(sqlite3.connect(data_dir / "agentcom.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("tasks",)]


async def test_database_from_a_newer_hub_is_refused(tmp_path: Path) -> None:
    """A schema version past the newest migration: exit 1 saying a newer hub wrote it; the version is unchanged."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    make_db(data_dir / "agentcom.db", "PRAGMA user_version=99")
    exited = await run_to_exit(data_dir)
    assert exited.code == 1
    assert "written by a newer hub (schema version 99" in exited.message
    with closing(sqlite3.connect(data_dir / "agentcom.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (99,)


async def test_read_only_data_dir_fails_fast(tmp_path: Path) -> None:
    """A data dir on a filesystem remounted read-only (after a first run made its database): exit 1 naming the
    directory and the fix; nothing on it changed."""
    with tmpfs(tmp_path / "disk", 8192) as disk:
        data_dir = disk / "hub"
        proc = await spawn(data_dir, "--port", "0")
        await wait_ready(proc)
        assert (await stop(proc))[0] == 0
        before = {p.name: p.read_bytes() for p in data_dir.iterdir()}
        remount(disk, "ro")
        exited = await run_to_exit(data_dir)
        assert exited.code == 1
        assert "Traceback" not in exited.stderr
        assert exited.message == (
            f"agentcom hub: cannot start: cannot write to the data dir {data_dir} (Read-only file system). Make it a "
            f"writable directory for this user (uid {os.geteuid()}), e.g. remount it read-write or fix its owner and "
            f"mode, or pass --data-dir (or AGENTCOM_DATA_DIR) naming one that is."
        )
        assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == before
        remount(disk, "rw")


async def test_port_in_use_fails_fast_and_leaves_nothing(tmp_path: Path) -> None:
    """The port is held by another process: exit 1 naming the port, no traceback, the holder is still the only
    listener, and the data dir this start created is gone again."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        data_dir = tmp_path / "new" / "hub"
        proc = await spawn(data_dir, "--port", str(port))
        async with asyncio.timeout(30 * SCALE):
            _, err = await proc.communicate()
        assert proc.returncode == 1
        stderr = err.decode()
        assert "Traceback" not in stderr
        assert stderr.strip() == (
            f"agentcom hub: cannot start: port {port} on 127.0.0.1 is already in use by another process. Stop that "
            f"process, or start the hub with another --port (or AGENTCOM_PORT; 0 picks a free one)."
        )
        assert listeners(port) == [os.getpid()]
        assert not (tmp_path / "new").exists()


async def test_second_hub_on_a_data_dir_in_use_names_the_holder(tmp_path: Path) -> None:
    """A second hub on the same data dir exits 1 naming the first one's pid and URL; once the first is killed
    (SIGKILL: the kernel drops its lock) the data dir can be used again."""
    data_dir = tmp_path / "hub"
    first = await spawn(data_dir, "--port", "0")
    url = await wait_ready(first)
    exited = await run_to_exit(data_dir)
    assert exited.code == 1
    assert "Traceback" not in exited.stderr
    assert exited.message == (
        f"agentcom hub: cannot start: data dir {data_dir} is in use by hub pid {first.pid} (url {url}). Only one hub "
        f"may use a data dir: stop that hub first, or start this one with another --data-dir."
    )
    assert (data_dir / "hub.url").read_text().strip() == url, "the refused hub touched nothing"
    first.kill()
    await first.communicate()
    second = await spawn(data_dir, "--port", "0")
    await wait_ready(second)
    code, stderr = await stop(second)
    assert code == 0 and "Traceback" not in stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signals_exit_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM and Ctrl-C (SIGINT) stop a running hub with exit 0, no traceback, and its helper ended."""
    data_dir = tmp_path / "hub"
    proc = await spawn(data_dir, "--port", "0")
    await wait_ready(proc)
    assert helpers_of(data_dir), "the WAL sync helper runs"
    proc.send_signal(sig)
    code, stderr = await stop(proc)
    assert code == 0
    assert "Traceback" not in stderr
    assert_no_helper(data_dir)


async def test_in_process_start_raises_and_releases_everything(tmp_path: Path) -> None:
    """HubServer.start raises StartupError (it does not hang) for a garbage database and for a data dir another
    hub holds, leaving no database thread, no listening socket, no helper and no lock behind: the data dir, once
    fixed, then starts."""
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    (data_dir / "agentcom.db").write_bytes(b"not a database" * 512)
    threads = set(threading.enumerate())
    settings = HubSettings(host="127.0.0.1", port=0, data_dir=data_dir)
    with pytest.raises(StartupError, match="file is not a database"):
        await asyncio.wait_for(HubServer(settings).start(), 30 * SCALE)
    for thread in set(threading.enumerate()) - threads:  # a closed connection's thread ends on its own
        await asyncio.to_thread(thread.join, 10 * SCALE)
        assert not thread.is_alive(), "a database connection's thread was left running"
    assert not (data_dir / "admin.token").exists()
    assert [c for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN] == [], (
        "the bound port was released"
    )

    (data_dir / "agentcom.db").unlink()
    first = HubServer(settings)
    await first.start()
    try:
        with pytest.raises(StartupError, match=f"is in use by hub pid {os.getpid()} \\(url {first.url}\\)"):
            await asyncio.wait_for(HubServer(settings).start(), 30 * SCALE)
    finally:
        await first.stop()
    assert not helpers_of(data_dir)
    again = HubServer(settings)
    await again.start()
    await again.stop()


async def test_a_start_cancelled_at_any_point_leaves_nothing_behind(tmp_path: Path) -> None:
    """A start cancelled (a SIGTERM while starting) at any moment, from the first instant until it serves, leaves
    no thread, helper, listening socket or lock, and removes the data dir it created unless it had begun serving."""
    threads = set(threading.enumerate())
    n_cancelled = 0
    for step in range(500):  # cancel 0, 0.5, 1, 1.5 ... ms after the start began, until one start completes
        data_dir = tmp_path / f"hub-{step}"
        server = HubServer(HubSettings(host="127.0.0.1", port=0, data_dir=data_dir))
        starting = asyncio.ensure_future(server.start())
        await asyncio.sleep(step * 0.0005)  # not a wait for anything: it picks the moment of the cancellation
        starting.cancel()
        try:
            await starting
        except asyncio.CancelledError:
            n_cancelled += 1
            assert server.server.started or not data_dir.exists(), f"left {list(data_dir.iterdir())}"
            DataLock.acquire(data_dir).release()  # the lock is free again
            continue
        await server.stop()
        break
    assert n_cancelled >= 10, "the cancellations fell inside the start"
    for thread in set(threading.enumerate()) - threads:
        await asyncio.to_thread(thread.join, 10 * SCALE)
        assert not thread.is_alive(), f"{thread.name} outlived the cancelled start"
    assert [c for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN] == []
    assert_no_helper(tmp_path)
