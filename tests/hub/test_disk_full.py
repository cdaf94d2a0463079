"""A full disk (a real, small tmpfs filled up) degrades the hub instead of stopping it: writes wait and are retried,
state-changing requests get 507, /health says degraded; once space returns everything resumes and nothing is lost."""

from __future__ import annotations

import asyncio
import errno
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from hub.store.sqlite import UPSERT_TASK, SqliteStore
from tests.conftest import SCALE
from tests.hub.hub_process import hub_env, spawn, stop, tmpfs, wait_ready


def fill(disk: Path) -> Path:
    """Write a file until the filesystem has no block left; removing it gives the space back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        chunk = b"\0" * 65536
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    """Wait until ``condition()`` holds (checked every 20 ms), failing after ``timeout_s``."""
    async with asyncio.timeout(timeout_s * SCALE):
        while not await condition():
            await asyncio.sleep(0.02)


async def test_store_waits_out_a_full_disk(tmp_path: Path) -> None:
    """At the store: a write that finds the disk full is not answered, the store reports degraded, and the write
    commits once space is freed; acknowledged writes and the waiting one are all in the reopened database."""
    with tmpfs(tmp_path / "disk", 4096) as disk:
        path = disk / "store.db"
        s = await SqliteStore.open(path)
        writer = asyncio.create_task(s.run_writer())
        try:
            await asyncio.gather(
                *(s.write([(UPSERT_TASK, (f"t{n}", "queued", 2, n, n, None, None, "{}"))]) for n in range(20))
            )
            wal = path.with_name("store.db-wal").stat().st_size
            big = "x" * (wal + 512 * 1024)  # more than the WAL can hold without growing
            filler = fill(disk)
            waiting = asyncio.ensure_future(s.write([(UPSERT_TASK, ("big", "queued", 2, 0, 0, None, None, big))]))

            async def degraded() -> bool:
                return s.degraded is not None

            await until(degraded)
            assert "database or disk is full" in s.stats()["degraded"]
            assert not waiting.done(), "nothing is answered that is not on disk"
            assert not writer.done(), "a full disk does not stop the writer"
            filler.unlink()
            await asyncio.wait_for(waiting, 30 * SCALE)
            assert s.degraded is None and s.stats()["disk_full_retries"] >= 1
        finally:
            await s.close()
            await writer
        s = await SqliteStore.open(path)
        try:
            rows = dict(await s.fetch_all("SELECT id, length(body) FROM tasks"))
        finally:
            await s.close()
    assert rows == {**{f"t{n}": 2 for n in range(20)}, "big": len(big)}


async def test_hub_on_a_full_disk_answers_507_then_resumes_losing_nothing(tmp_path: Path) -> None:
    """A real hub whose data dir fills up: the submission in flight waits, the next one gets 507 insufficient_storage
    (reads still work), /health is degraded with the reason; after space returns the waiting one is answered 201,
    a new one succeeds, and after a restart every acknowledged task is there and the refused one is not."""
    admin = "admin-" + uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {admin}"}
    env = hub_env(AGENTCOM_ADMIN_TOKEN=admin)
    with tmpfs(tmp_path / "disk", 8192) as disk:
        data_dir = disk / "hub"
        proc = await spawn(data_dir, "--port", "0", env=env)
        url = await wait_ready(proc)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60 * SCALE) as http:
            before = [
                (await http.post("/api/tasks", json={"description": f"before {n}"})).json()["task_id"]
                for n in range(20)
            ]
            wal = (data_dir / "agentcom.db-wal").stat().st_size
            big = "y" * (wal + 300 * 1024)  # more than the WAL can hold without growing
            filler = fill(disk)
            in_flight = asyncio.ensure_future(
                http.post("/api/tasks", json={"description": "in flight", "metadata": {"blob": big}})
            )

            async def degraded() -> bool:
                return (await http.get("/health")).json()["status"] == "degraded"

            await until(degraded)
            health = (await http.get("/health")).json()
            assert "disk full" in health["reason"] and health["store"]["degraded"] == health["reason"]
            refused = await http.post("/api/tasks", json={"description": "refused"})
            assert refused.status_code == 507
            assert refused.json()["error"] == "insufficient_storage" and "disk full" in refused.json()["reason"]
            assert refused.headers["retry-after"] == "5"
            assert (await http.post("/admin/tokens", json={"agent_id": "late"})).status_code == 507
            assert (await http.get(f"/api/tasks/{before[0]}")).json()["description"] == "before 0"
            assert not in_flight.done(), "the submission that met the full disk is not answered before it is stored"

            filler.unlink()
            answered = await asyncio.wait_for(in_flight, 60 * SCALE)
            assert answered.status_code == 201
            waited = answered.json()["task_id"]

            async def healthy() -> bool:
                return (await http.get("/health")).json()["status"] == "ok"

            await until(healthy)
            after = await http.post("/api/tasks", json={"description": "after"})
            assert after.status_code == 201
        code, stderr = await stop(proc)
        assert code == 0, stderr
        assert "Traceback" not in stderr

        proc = await spawn(data_dir, "--port", "0", env=env)
        url = await wait_ready(proc)
        try:
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
                tasks = (await http.get("/api/tasks", params={"limit": 1000})).json()["tasks"]
                blob = (await http.get(f"/api/tasks/{waited}")).json()["metadata"]["blob"]
        finally:
            assert (await stop(proc))[0] == 0
    assert {t["id"]: t["description"] for t in tasks} == {
        **{tid: f"before {n}" for n, tid in enumerate(before)},
        waited: "in flight",
        after.json()["task_id"]: "after",
    }
    assert blob == big
