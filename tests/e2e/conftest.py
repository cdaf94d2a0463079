"""Real processes for end-to-end tests: ``python -m hub`` and ``python -m sidecar``, with logs kept per test.

Each process writes stdout and stderr to a log file in the test's directory; a failing test shows the tail of
every log. Processes are always stopped at teardown (SIGKILL if they do not stop on SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SCALE

ROOT = Path(__file__).resolve().parents[2]
READY = "agentcom hub ready url="


def free_port() -> int:
    """A port that was free a moment ago (for a hub that must come back on the same address)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=ROOT, env=env, stdin=subprocess.DEVNULL
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def kill9(self) -> None:
        """SIGKILL: no cleanup of any kind, like a power cut for this process."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self, timeout_s: float = 10) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if self.alive:
            self.kill9()
        code = self.proc.wait(10)
        self._log_file.close()
        return code


class HubProcess(Process):
    """``python -m hub`` on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int, admin_token: str, env: dict[str, str]) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir, self.port, self.admin_token = data_dir, port, admin_token
        self.url = ""
        argv = [sys.executable, "-m", "hub", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        super().__init__("hub", argv, data_dir / "hub.log", {**env, "AGENTCOM_ADMIN_TOKEN": admin_token})
        self._seen = len(self.text())

    async def ready(self, timeout_s: float = 20) -> str:
        """Wait for the ready line of this start and return the hub's URL."""
        async with asyncio.timeout(timeout_s * SCALE):
            while True:
                fresh = self.text()[self._seen :]
                if READY in fresh:
                    self.url = fresh.split(READY, 1)[1].split()[0]
                    return self.url
                assert self.alive, f"hub exited early:\n{self.tail()}"
                await asyncio.sleep(0.05)


class Fleet:
    """Starts hubs and sidecars as processes and talks to the hub over HTTP."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.hub: HubProcess | None = None
        self.http: httpx.AsyncClient | None = None
        self.sidecars: dict[str, Process] = {}
        self.processes: list[Process] = []
        self.admin_token = f"admin-{uuid.uuid4().hex}"
        self.uid_base = 300_000 + 1000 * random.randrange(0, 50_000, 100)
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
        self._env["PYTHONUNBUFFERED"] = "1"

    async def start_hub(self, port: int = 0, **settings: Any) -> HubProcess:
        """Start (or restart, on the same data dir) the hub; ``settings`` become AGENTCOM_* variables."""
        env = {**self._env, **{f"AGENTCOM_{k.upper()}": str(v) for k, v in settings.items()}}
        self.hub = HubProcess(self.home / "hub", port, self.admin_token, env)
        self.processes.append(self.hub)
        url = await self.hub.ready()
        if self.http is not None:
            await self.http.aclose()
        self.http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10)
        return self.hub

    async def add_sidecar(self, agent_id: str | None = None, **settings: Any) -> Process:
        """Register an agent, write its config file and start ``python -m sidecar --config FILE``."""
        assert self.hub is not None and self.http is not None
        agent_id = agent_id or f"sc-{uuid.uuid4().hex[:6]}"
        home = self.home / agent_id
        if not (home / "sidecar.json").exists():
            r = await self.http.post("/admin/tokens", json={"agent_id": agent_id})
            assert r.status_code == 201, r.text
            config = {
                "agent_id": agent_id,
                "token": r.json()["token"],
                "hub_url": self.hub.url,
                "limits": {
                    "heartbeat_interval_s": 2,
                    "pong_timeout_s": 2,
                    "backoff_initial_s": 0.2,
                    "backoff_max_s": 1,
                    "resource_report_interval_s": 5,
                },
                "sandbox": {"uid_base": self.uid_base + 1000 * len(self.sidecars)},
                "workspace": {"cleanup": "keep_last", "keep_last_n": 50},
                **settings,
            }
            home.mkdir(parents=True, exist_ok=True)
            (home / "sidecar.json").write_text(json.dumps(config))
        argv = [sys.executable, "-m", "sidecar", "--config", str(home / "sidecar.json")]
        proc = Process(agent_id, argv, home / "sidecar.log", self._env)
        self.sidecars[agent_id] = proc
        self.processes.append(proc)
        await self.wait_agent_online(agent_id)
        return proc

    async def wait_agent_online(self, agent_id: str, timeout_s: float = 20) -> None:
        """Wait until the hub lists ``agent_id`` as connected."""
        assert self.http is not None
        async with asyncio.timeout(timeout_s * SCALE):
            while True:
                r = await self.http.get(f"/api/agents/{agent_id}")
                if r.status_code == 200 and r.json().get("status") == "online":
                    return
                assert self.sidecars[agent_id].alive, f"sidecar exited:\n{self.sidecars[agent_id].tail()}"
                await asyncio.sleep(0.1)

    async def submit_shell(self, command: str, **body: Any) -> str:
        """Submit a shell task; returns its id."""
        assert self.http is not None
        metadata = {"shell_command": command, **body.pop("metadata", {})}
        body.setdefault("description", f"run: {command}")
        r = await self.http.post("/api/tasks", json={"executor": "shell", "metadata": metadata, **body})
        assert r.status_code == 201, r.text
        return r.json()["task_id"]

    async def task(self, task_id: str) -> dict[str, Any]:
        assert self.http is not None
        r = await self.http.get(f"/api/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def wait_status(
        self, task_ids: list[str], statuses: set[str], timeout_s: float = 30, where: Any = None
    ) -> list[dict[str, Any]]:
        """Poll the hub until every task is in one of ``statuses`` (and ``where(task)`` holds, if given)."""
        async with asyncio.timeout(timeout_s * SCALE):
            while True:
                try:
                    tasks = [await self.task(t) for t in task_ids]
                except httpx.TransportError:
                    tasks = []
                if tasks and all(t["status"] in statuses and (where is None or where(t)) for t in tasks):
                    return tasks
                await asyncio.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} ({p.log}) -----\n{p.tail()}" for p in self.processes)

    async def close(self) -> None:
        """Stop the sidecars, then the hubs."""
        for proc in sorted(self.processes, key=lambda p: isinstance(p, HubProcess)):
            await proc.stop(timeout_s=5)
        if self.http is not None:
            await self.http.aclose()


@pytest.fixture
async def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    """A fleet of real processes, stopped after the test; their logs are printed if the test failed."""
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        await f.close()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
