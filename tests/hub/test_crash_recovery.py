"""A hub process killed with SIGKILL mid-run and restarted on the same data loses no task and completes none twice."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import SCALE

REPO = Path(__file__).resolve().parents[2]
N_TASKS = 200
KILL_AFTER = 60


class HubProcess:
    """``python -m hub`` as a real process on port 0."""

    def __init__(self, data_dir: Path, admin_token: str, log: IO[bytes]) -> None:
        self.data_dir = data_dir
        self.admin_token = admin_token
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        env = {
            **os.environ,
            "AGENTCOM_ADMIN_TOKEN": self.admin_token,
            "AGENTCOM_ACCEPTANCE_TIMEOUT_S": "1",
            "AGENTCOM_RECONNECT_GRACE_S": "20",
            "AGENTCOM_SWEEP_INTERVAL_S": "0.05",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "WARNING",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.log,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30 * SCALE):
            while not (line := (await self.proc.stdout.readline()).decode()).startswith("agentcom hub ready url="):
                assert line, "the hub exited before it was ready"
        self.url = line.split("url=", 1)[1].strip()
        assert (self.data_dir / "hub.url").read_text().strip() == self.url
        return self.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    async def _reap(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        await self.proc.stdout.read()
        return await self.proc.wait()

    async def kill(self) -> int:
        assert self.proc is not None
        self.proc.kill()
        return await self._reap()

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        return await self._reap()


Hold = Literal["until_killed", "until_continue"] | None


class DurableSim:
    """A simulated sidecar that behaves like the real one across connections.

    Results stay in an outbox until the hub acknowledges (or refuses) them and are re-sent after every reconnect;
    a task still running at reconnect is reported with ``state_report`` and dropped on ``abort``. ``hold`` keeps
    the first task's result back: until the hub has been killed (so it must be re-sent), or until the new hub
    answers ``state_report`` with continue.
    """

    def __init__(self, agent_id: str, token: str, on_complete: Callable[[str], None], hold: Hold = None) -> None:
        self.agent_id = agent_id
        self.token = token
        self.on_complete = on_complete
        self.hold = hold
        self.active: dict[str, int] = {}
        self.outbox: dict[str, dict[str, Any]] = {}
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.identified = asyncio.Event()
        self.holding = asyncio.Event()
        self.killed = asyncio.Event()
        self.continued = asyncio.Event()
        self.held_sent = asyncio.Event()
        self.held_task: str | None = None
        self.workers: set[asyncio.Task[None]] = set()
        self.n_resent = 0
        self.n_state_reports = 0
        self.refused: list[dict[str, Any]] = []

    async def connect(self, ws_url: str) -> None:
        self.ws = await websockets.connect(ws_url, compression=None)
        self.identified = asyncio.Event()
        self.reader = asyncio.create_task(self._read(self.ws))
        await self._send(
            {"type": "identify", "agent_id": self.agent_id, "token": self.token, "client_type": "durable_sim"}
        )
        await asyncio.wait_for(self.identified.wait(), 10 * SCALE)
        for message in list(self.outbox.values()):
            self.n_resent += 1
            await self._send(message)
        for task_id, generation in list(self.active.items()):
            self.n_state_reports += 1
            await self._send(
                {"type": "state_report", "task_id": task_id, "generation": generation, "status": "working"}
            )

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            assert self.ws is not None
            await self.ws.send(json.dumps({"protocol_version": 1, **message}))
        except websockets.ConnectionClosed:
            pass  # the hub is gone; outbox and state_report cover it after the reconnect

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                await self._on(json.loads(frame))
        except websockets.ConnectionClosed:
            pass

    async def _on(self, msg: dict[str, Any]) -> None:
        kind, task_id = msg.get("type"), msg.get("task_id", "")
        if kind == "identified":
            self.identified.set()
        elif kind == "task_assign":
            self.active[task_id] = msg["generation"]
            await self._send({"type": "task_accepted", "task_id": task_id, "generation": msg["generation"]})
            worker = asyncio.create_task(self._work(task_id, msg["generation"]))
            self.workers.add(worker)
            worker.add_done_callback(self.workers.discard)
        elif kind == "task_ack":
            if msg["status"] == "accepted" and task_id == self.held_task:
                self.holding.set()
            elif msg["status"] != "accepted" and self.outbox.pop(task_id, None) is not None:
                if msg["status"] == "complete":
                    self.on_complete(task_id)
        elif kind == "error" and task_id:
            self.refused.append(msg)
            self.outbox.pop(task_id, None)  # refused for good: someone else holds the task now
        elif kind == "state_report_ack":
            if msg["action"] == "abort":
                self.active.pop(task_id, None)
            elif task_id == self.held_task:
                self.continued.set()
        elif kind == "task_cancelled":
            self.active.pop(task_id, None)

    async def _work(self, task_id: str, generation: int) -> None:
        if self.hold is not None and self.held_task is None:
            self.held_task = task_id
            await (self.killed if self.hold == "until_killed" else self.continued).wait()
        else:
            await asyncio.sleep(0.005)  # the work itself
        if self.active.get(task_id) != generation:
            return  # cancelled or aborted meanwhile
        del self.active[task_id]
        message = {
            "type": "task_complete",
            "task_id": task_id,
            "generation": generation,
            "result": {"status": "success", "output": self.agent_id},
            "tokens_used": 1,
        }
        self.outbox[task_id] = message  # kept until acknowledged
        await self._send(message)
        if task_id == self.held_task:
            self.held_sent.set()

    async def disconnected(self) -> None:
        if self.reader is not None:
            await self.reader

    async def close(self) -> None:
        for worker in list(self.workers):
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


async def test_sigkill_mid_run_loses_nothing_and_completes_nothing_twice(tmp_path: Path) -> None:
    """200 tasks, sims working, SIGKILL the hub; after a restart on the same data every task completes exactly once."""
    data_dir = tmp_path / "hub"
    admin = "admin-" + uuid.uuid4().hex
    with (tmp_path / "hub-1.log").open("wb") as log1, (tmp_path / "hub-2.log").open("wb") as log2:
        first = HubProcess(data_dir, admin, log1)
        await first.start()
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(base_url=first.url, headers=headers, timeout=30) as http:
            submitted = []
            for start in range(0, N_TASKS, 25):
                replies = await asyncio.gather(
                    *(http.post("/api/tasks", json={"description": f"job {n}"}) for n in range(start, start + 25))
                )
                assert all(r.status_code == 201 for r in replies)
                submitted += [r.json()["task_id"] for r in replies]
            tokens = {}
            for name in ("resender", "reporter", "plain-1", "plain-2"):
                r = await http.post("/admin/tokens", json={"agent_id": name})
                tokens[name] = r.json()["token"]

        done: set[str] = set()
        enough, finished = asyncio.Event(), asyncio.Event()
        acks: list[str] = []

        def on_complete(task_id: str) -> None:
            acks.append(task_id)
            done.add(task_id)
            if len(done) >= KILL_AFTER:
                enough.set()
            if len(done) == N_TASKS:
                finished.set()

        sims = [
            DurableSim("resender", tokens["resender"], on_complete, hold="until_killed"),
            DurableSim("reporter", tokens["reporter"], on_complete, hold="until_continue"),
            DurableSim("plain-1", tokens["plain-1"], on_complete),
            DurableSim("plain-2", tokens["plain-2"], on_complete),
        ]
        try:
            for sim in sims:
                await sim.connect(first.ws_url)
            async with asyncio.timeout(30 * SCALE):
                await enough.wait()
                await sims[0].holding.wait()
                await sims[1].holding.wait()
            assert await first.kill() == -9
            n_before = len(done)
            for sim in sims:
                await sim.disconnected()
            sims[0].killed.set()
            await asyncio.wait_for(sims[0].held_sent.wait(), 10 * SCALE)
            assert sims[0].held_task in sims[0].outbox, "sent to a dead hub: still unacknowledged"
            assert sims[1].held_task in sims[1].active

            second = HubProcess(data_dir, admin, log2)
            await second.start()
            try:
                for sim in sims:
                    await sim.connect(second.ws_url)
                async with asyncio.timeout(60 * SCALE):
                    await finished.wait()
                async with httpx.AsyncClient(base_url=second.url, headers=headers, timeout=30) as http:
                    tasks = (await http.get("/api/tasks", params={"limit": 10_000})).json()["tasks"]
                    health = (await http.get("/health")).json()
            finally:
                assert await second.stop() == 0
        finally:
            for sim in sims:
                await sim.close()

    by_id = {t["id"]: t for t in tasks}
    assert set(by_id) == set(submitted), "no task lost, none invented"
    assert [t for t in tasks if t["status"] != "completed"] == []
    assert {tid: sum(h["event"] == "completed" for h in by_id[tid]["history"]) for tid in submitted} == {
        tid: 1 for tid in submitted
    }, "every task completed exactly once"
    assert len(acks) == len(set(acks)) == N_TASKS, "each result acknowledged once, to the agent that made it"
    assert KILL_AFTER <= n_before < N_TASKS
    assert sims[0].n_resent >= 1 and sims[1].n_state_reports >= 1
    assert by_id[sims[0].held_task]["result"]["output"] == "resender"
    assert by_id[sims[1].held_task]["result"]["output"] == "reporter"
    assert health["status"] == "ok" and health["tasks"] == {"queued": 0, "in_flight": 0, "quarantined": 0}
