"""``agentcom doctor --hub``, run as a real process against real data dirs: a healthy running hub, a damaged
database, a port another process holds, a stale backup."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import SCALE, HubHandle

REPO = Path(__file__).resolve().parents[2]


async def doctor(*args: str) -> tuple[int, str]:
    """Run ``agentcom doctor --hub ARGS`` to its exit; its status and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.agentcom", "doctor", "--hub", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")},
    )  # fmt: skip
    async with asyncio.timeout(60 * SCALE):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def line(out: str, name: str) -> str:
    found = [ln for ln in out.splitlines() if ln[7:].startswith(name + ":")]
    assert len(found) == 1, out
    return found[0]


async def test_a_healthy_running_hub(make_hub: Any, tmp_path: Path) -> None:
    """Against the data dir of a running hub: the store passes quick_check, the fresh backup is named with its age,
    the hub is found by its pid and answers /ready, no endpoint is registered; exit 0."""
    hub: HubHandle = await make_hub(data_dir=tmp_path / "hub")
    await hub.submit(description="something stored")
    assert (await hub.http.post("/admin/backup")).status_code == 200
    code, out = await doctor("--data-dir", str(hub.data_dir))
    assert code == 0, out
    assert "passes quick_check" in line(out, "database")
    assert line(out, "backups").startswith("[ok  ] backups: 1, newest agentcom-")
    assert line(out, "hub") == f"[ok  ] hub: running, pid {os.getpid()}, {hub.url}"
    assert line(out, "ready") == f"[ok  ] ready: {hub.url}/ready: HTTP 200"
    assert line(out, "endpoints") == "[ok  ] endpoints: none registered"
    assert out.rstrip().endswith("all required checks passed")


async def test_a_damaged_database_fails_naming_the_restore(make_hub: Any, tmp_path: Path) -> None:
    """Pages of a stopped hub's database overwritten with garbage: the doctor fails on it and names `agentcom hub
    restore`; a backup older than twice the interval is a warning."""
    data_dir = tmp_path / "hub"
    hub: HubHandle = await make_hub(data_dir=data_dir)
    for i in range(200):
        await hub.submit(description=f"task {i} " + "x" * 200)
    backup = Path((await hub.http.post("/admin/backup")).json()["path"])
    await hub.server.stop()
    stale = time.time() - 3 * 86_400
    os.utime(backup, (stale, stale))
    db = data_dir / "agentcom.db"
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    with db.open("r+b") as f:
        f.seek(page * 3)
        f.write(b"\xa5" * page * 4)
    code, out = await doctor("--data-dir", str(data_dir), "--port", "0")
    assert code == 1, out
    assert "is damaged" in line(out, "database") and "agentcom hub restore" in line(out, "database")
    assert line(out, "database").startswith("[FAIL]")
    assert line(out, "backups").startswith("[warn]") and "older than twice the interval" in line(out, "backups")
    assert line(out, "hub") == "[ok  ] hub: no hub holds this data dir"


async def test_a_port_in_use_fails(tmp_path: Path) -> None:
    """No hub holds the data dir and another process listens on its port: the doctor says so and fails."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = await doctor("--data-dir", str(tmp_path), "--port", str(port))
    assert code == 1, out
    assert line(out, "port").startswith(f"[FAIL] port: 127.0.0.1:{port} cannot be bound")
    code, out = await doctor("--data-dir", str(tmp_path), "--port", str(port))
    assert code == 0, out
    assert line(out, "port") == f"[ok  ] port: 127.0.0.1:{port} is free"
    assert line(out, "database").endswith("does not exist yet (a first start creates it)")
