"""Shared fixtures: a real hub on 127.0.0.1 port 0 with its SQLite in a temp dir, and simulated agents."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim

SCALE = float(os.environ.get("AGENTCOM_TEST_TIME_SCALE", "1"))
"""Multiplies real-time waits in tests on slow machines."""


class HubHandle:
    """A running in-process hub plus a client holding the admin token."""

    def __init__(self, server: HubServer, data_dir: Path) -> None:
        self.server = server
        self.hub = server.hub
        self.url = server.url
        self.ws_url = server.ws_url
        self.data_dir = data_dir
        self.admin_token = server.hub.admin_token
        self.http = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10
        )

    async def mint_token(self, agent_id: str, role: str = "agent") -> str:
        r = await self.http.post("/admin/tokens", json={"agent_id": agent_id, "role": role})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    async def submit(self, **body: Any) -> str:
        body.setdefault("description", "a task")
        r = await self.http.post("/api/tasks", json=body)
        assert r.status_code == 201, r.text
        return r.json()["task_id"]

    async def task(self, task_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/tasks/{task_id}")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def make_hub(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[HubHandle]]]:
    """Factory: start a real hub (``**settings`` override defaults); every hub started is stopped after the test."""
    handles: list[HubHandle] = []

    async def start(data_dir: Path | None = None, **overrides: Any) -> HubHandle:
        data_dir = data_dir or tmp_path / f"hub-{uuid.uuid4().hex[:6]}"
        overrides.setdefault("retry_backoff_base_s", 0.0)  # retries at once unless a test is about the backoff
        settings = HubSettings(host="127.0.0.1", port=0, data_dir=data_dir, **overrides)
        server = HubServer(settings)
        await server.start()
        handle = HubHandle(server, data_dir)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.http.aclose()
        await handle.server.stop()


@pytest.fixture
async def hub(make_hub: Callable[..., Awaitable[HubHandle]]) -> HubHandle:
    return await make_hub()


@pytest.fixture
async def make_agent(hub: HubHandle) -> AsyncIterator[Callable[..., Awaitable[AgentSim]]]:
    """Factory: connect a simulated agent (fresh id and token) to the ``hub`` fixture."""
    sims: list[AgentSim] = []

    async def connect(agent_id: str | None = None, **kwargs: Any) -> AgentSim:
        agent_id = agent_id or f"sim-{uuid.uuid4().hex[:8]}"
        token = await hub.mint_token(agent_id)
        sim = AgentSim(hub.ws_url, agent_id, token, **kwargs)
        await sim.connect()
        sims.append(sim)
        return sim

    yield connect
    for sim in sims:
        await sim.close()


async def wait_tasks(handle: HubHandle, task_ids: list[str], statuses: set[str], timeout_s: float = 30) -> None:
    """Wait until every task is in one of ``statuses``, woken by the hub's own events (no polling)."""
    import asyncio

    queue = handle.hub.queue

    def pending() -> list[str]:
        return [t for t in task_ids if str(queue.tasks[t].status) not in statuses]

    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(timeout_s * SCALE):
            while pending():
                await events.get()
