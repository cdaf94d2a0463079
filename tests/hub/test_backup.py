"""Backups of a real hub's database: on demand and on a schedule, checked and rotated; a restore round trip through
``agentcom hub restore``; a damaged database refused at start naming the backup to restore."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.server import StartupError
from hub.store.backup import backups, check
from tests.conftest import HubHandle

ROOT = Path(__file__).resolve().parents[2]


async def restore_cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.agentcom", "hub", "restore", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_backup_and_restore_round_trip(make_hub: Any, tmp_path: Path) -> None:
    """A backup holds the tasks of its moment; restored into a stopped hub's dir, the hub comes back with exactly
    those, and the database it replaced is kept aside."""
    data_dir = tmp_path / "hub"
    hub: HubHandle = await make_hub(data_dir=data_dir)
    before = [await hub.submit(description=f"before {i}") for i in range(5)]
    r = await hub.http.post("/admin/backup")
    assert r.status_code == 200, r.text
    made = Path(r.json()["path"])
    assert made.parent == data_dir / "backups" and check(made) is None
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    after = await hub.submit(description="after the backup")
    code, out = await restore_cli("--data-dir", str(data_dir))
    assert code == 1 and "hub" in out.lower()  # refused while the hub holds the data dir
    await hub.server.stop()
    code, out = await restore_cli("--data-dir", str(data_dir))
    assert code == 0, out
    assert list(data_dir.glob("agentcom.db.before-restore-*"))
    again: HubHandle = await make_hub(data_dir=data_dir)
    ids = {t["id"] for t in (await again.http.get("/api/tasks")).json()["tasks"]}
    assert ids == set(before) and after not in ids


async def test_only_the_newest_backups_are_kept(hub: HubHandle) -> None:
    """Five backups with backup_keep 3 leave the newest three, each a sound database; GET lists them newest first."""
    paths = []
    for _ in range(5):
        r = await hub.http.post("/admin/backup")
        assert r.status_code == 200
        paths.append(r.json()["path"])
    kept = [str(p) for p in backups(hub.data_dir)]
    assert kept == paths[-3:]
    listed = (await hub.http.get("/admin/backups")).json()
    assert [b["path"] for b in listed["backups"]] == paths[-3:][::-1]
    viewer = await hub.mint_token("watcher", role="viewer")
    r = await hub.http.post("/admin/backup", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403


async def test_scheduled_backups_run_while_the_hub_serves(make_hub: Any) -> None:
    """With a short backup interval a backup appears on its own and the hub keeps accepting work meanwhile."""
    hub: HubHandle = await make_hub(backup_interval_s=0.2)
    async with asyncio.timeout(30):
        while not backups(hub.data_dir):
            await hub.submit(description="work during backups")
            await asyncio.sleep(0.05)
    assert check(backups(hub.data_dir)[-1]) is None


async def test_a_damaged_database_is_refused_naming_the_backup(make_hub: Any, tmp_path: Path) -> None:
    """Pages of the database overwritten with garbage: the next start fails, untouched, naming the newest backup and
    `agentcom hub restore`; after the restore it starts again."""
    data_dir = tmp_path / "hub"
    hub: HubHandle = await make_hub(data_dir=data_dir)
    for i in range(200):
        await hub.submit(description=f"task {i} " + "x" * 200)
    newest = Path((await hub.http.post("/admin/backup")).json()["path"])
    await hub.server.stop()
    db = data_dir / "agentcom.db"
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    with db.open("r+b") as f:
        f.seek(page * 3)
        f.write(b"\xa5" * page * 4)
    damaged = db.read_bytes()
    with pytest.raises(StartupError) as err:
        await make_hub(data_dir=data_dir)
    assert str(newest) in str(err.value) and "agentcom hub restore" in str(err.value)
    assert db.read_bytes() == damaged
    code, out = await restore_cli("--data-dir", str(data_dir))
    assert code == 0, out
    restored: HubHandle = await make_hub(data_dir=data_dir)
    assert (await restored.http.get("/api/tasks?limit=1000")).json()["count"] == 200
