"""Operating agents from the hub: restarting a sidecar (never in the middle of a task) and removing an offboarded
agent, against a real hub with agents over real WebSockets."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.agent_sim import AgentSim
from tests.conftest import HubHandle, wait_tasks


async def restarts_of(sim: AgentSim, n: int = 1) -> None:
    await sim.wait_for(lambda m: sum(x.get("type") == "restart_sidecar" for x in sim.inbox) >= n, timeout_s=15)


async def test_an_idle_agent_is_restarted_at_once(hub: HubHandle, make_agent: Any) -> None:
    """POST /api/agents/{id}/restart on an idle agent sends restart_sidecar now and answers `restarting`."""
    sim = await make_agent()
    r = await hub.http.post(f"/api/agents/{sim.agent_id}/restart")
    assert r.status_code == 202 and r.json()["status"] == "restarting"
    await restarts_of(sim)


async def test_a_busy_agent_restarts_only_after_its_task_and_gets_no_new_work(hub: HubHandle, make_agent: Any) -> None:
    """A restart asked while a task runs is deferred: no restart_sidecar until the task ends, no new task meanwhile,
    then the restart is sent; the queued task waits for another agent."""
    sim = await make_agent(behaviour="ignore")  # holds the task until told to finish
    first = await hub.submit(description="long work")
    await sim.wait_for(lambda m: m.get("type") == "task_assign")
    second = await hub.submit(description="queued behind it")
    r = await hub.http.post(f"/api/agents/{sim.agent_id}/restart")
    assert r.json() == {"agent_id": sim.agent_id, "status": "deferred", "task_id": first}
    assert not any(m.get("type") == "restart_sidecar" for m in sim.inbox)
    await sim.send({"type": "task_accepted", "task_id": first, "generation": 1})
    await sim.finish(sim.received[0])
    await wait_tasks(hub, [first], {"completed"})
    await restarts_of(sim)
    assert [r.task_id for r in sim.received] == [first]  # never given the second task
    assert (await hub.task(second))["status"] == "queued"
    other = await make_agent()
    await wait_tasks(hub, [second], {"completed"})
    assert [r.task_id for r in other.received] == [second]


async def test_restart_of_unknown_or_offline_agents_and_roles(hub: HubHandle, make_agent: Any) -> None:
    """Unknown agent 404, an offline one 409, a viewer 403."""
    assert (await hub.http.post("/api/agents/nobody/restart")).status_code == 404
    sim = await make_agent()
    await sim.close()
    async with asyncio.timeout(10):
        while hub.hub.agents.get(sim.agent_id) is not None:
            await asyncio.sleep(0.01)
    assert (await hub.http.post(f"/api/agents/{sim.agent_id}/restart")).status_code == 409
    viewer = await hub.mint_token("watcher", role="viewer")
    r = await hub.http.post(f"/api/agents/{sim.agent_id}/restart", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403


async def test_an_offboarded_agent_is_removed_with_its_tokens(hub: HubHandle, make_agent: Any) -> None:
    """DELETE refuses a connected agent (409); once offline it forgets the agent and revokes its tokens (its old
    token no longer identifies); a second DELETE is 404."""
    sim = await make_agent()
    assert (await hub.http.delete(f"/api/agents/{sim.agent_id}")).status_code == 409
    await sim.close()
    async with asyncio.timeout(10):
        while hub.hub.agents.get(sim.agent_id) is not None:
            await asyncio.sleep(0.01)
    r = await hub.http.delete(f"/api/agents/{sim.agent_id}")
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1
    assert sim.agent_id not in {a["agent_id"] for a in (await hub.http.get("/api/agents")).json()["agents"]}
    again = AgentSim(hub.ws_url, sim.agent_id, sim.token)
    await again.connect(identify=False)
    await again.send({"type": "identify", "agent_id": sim.agent_id, "token": sim.token})
    error = await again.wait_for(lambda m: m.get("type") == "error")
    assert error["error"] in ("invalid_token", "unauthorized", "auth_failed")
    await again.close()
    assert (await hub.http.delete(f"/api/agents/{sim.agent_id}")).status_code == 404
