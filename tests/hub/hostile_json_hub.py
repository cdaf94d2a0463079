"""What the hostile-JSON tests share: a real hub for a block or for a whole test module (``shared``: every hostile
body of a table lands on the same hub, which must keep serving), the check that a hub still serves, and parsing
answers as a browser would.

A test module takes the fixture by importing ``shared_hub`` (pytest knows it as ``shared``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hub.clock import ManualClock
from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim
from tests.conftest import HubHandle, wait_tasks

module_loop = pytest.mark.asyncio(loop_scope="module")
DEEP = 100_000


def strict_json(text: str | bytes) -> Any:
    """Parse as a browser would: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a JSON answer"))


@asynccontextmanager
async def running(data_dir: Path, clock: ManualClock | None = None, **overrides: Any) -> AsyncIterator[HubHandle]:
    """A real hub on ``data_dir`` (port 0) for the duration of the block."""
    server = HubServer(HubSettings(host="127.0.0.1", port=0, data_dir=data_dir, **overrides), clock)
    await server.start()
    handle = HubHandle(server, data_dir)
    try:
        yield handle
    finally:
        await handle.http.aclose()
        await server.stop()


async def serves_a_task(handle: HubHandle) -> None:
    """A well-behaved agent connects and completes a task: the scheduler and the store writer are alive."""
    agent_id = f"healthy-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id))
    await sim.connect()
    try:
        tid = await handle.submit(description="still alive?", assign_to=agent_id)
        await wait_tasks(handle, [tid], {"completed"})
        await sim.settled()
    finally:
        await sim.close()
    r = await handle.http.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and handle.hub.failed is None


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="shared")
async def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HubHandle]:
    """One real hub for the whole module."""
    async with running(tmp_path_factory.mktemp("hostile-hub")) as handle:
        yield handle


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth
