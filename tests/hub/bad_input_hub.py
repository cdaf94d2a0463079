"""The hub the bad-input tables run against: one per test module that asks for ``shared`` (every bad input of a
table lands on the same hub, which must keep serving), with a token of each role; and the checks that it still does.

A test module takes the fixture by importing ``shared_hub`` (pytest knows it as ``shared``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim
from tests.conftest import HubHandle, wait_tasks

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="shared")
async def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[HubHandle, dict[str, str]]]:
    """One real hub for the whole module, with a token of each role."""
    data_dir = tmp_path_factory.mktemp("shared-hub")
    server = HubServer(HubSettings(host="127.0.0.1", port=0, data_dir=data_dir))
    await server.start()
    handle = HubHandle(server, data_dir)
    tokens = {
        "admin": handle.admin_token,
        "agent": await handle.mint_token("submitter"),
        "viewer": await handle.mint_token("watcher", "viewer"),
        "none": "",
        "bad": "not-a-token",
    }
    yield handle, tokens
    await handle.http.aclose()
    await server.stop()


async def assert_healthy(handle: HubHandle) -> None:
    r = await handle.http.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def assert_serves_a_task(handle: HubHandle) -> None:
    """A well-behaved agent connects and completes a task."""
    agent_id = f"healthy-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id))
    await sim.connect()
    try:
        tid = await handle.submit(description="still alive?", assign_to=agent_id)
        await wait_tasks(handle, [tid], {"completed"})
        await sim.settled()
        assert sim.completed_count == 1
    finally:
        await sim.close()
