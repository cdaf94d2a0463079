"""Why a queued task waits, on the dashboard: in the snapshot and event batches, and in the task's row on the page."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets

from shared.agent_sim import AgentSim
from tests.conftest import SCALE
from tests.dashboard.conftest import needs_chromium


async def recv(ws, kind: str, predicate=lambda msg: True, timeout_s: float = 10) -> dict:
    """The next message of type ``kind`` for which ``predicate`` holds (others are skipped)."""
    async with asyncio.timeout(timeout_s * SCALE):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind and predicate(msg):
                return msg


def waiting_of(task_id: str):
    def check(msg: dict) -> bool:
        return any(e.get("task_id") == task_id and e["event"] == "task_waiting" for e in msg["data"])

    return check


async def test_snapshot_and_events_carry_the_waiting_reason(make_hub):
    """A task nobody can run arrives in a batch with its reason; a fresh snapshot lists it; once an agent that can
    run it connects and takes it, the reason is gone."""
    hub = await make_hub(dashboard_batch_ms=20)
    viewer = await hub.mint_token("screen", role="viewer")
    async with websockets.connect(hub.url.replace("http://", "ws://") + "/ws/dashboard") as ws:
        await ws.send(json.dumps({"type": "auth", "token": viewer}))
        await recv(ws, "snapshot")
        tid = await hub.submit(description="needs claude", executor="claude")
        batch = await recv(ws, "events", waiting_of(tid))
        item = next(e for e in batch["data"] if e["task_id"] == tid and e["event"] == "task_waiting")
        assert item["reason"] == "no_agent_connected"
        assert item["task"]["waiting_reason"]["code"] == "no_agent_connected"
        await ws.send(json.dumps({"type": "request_snapshot"}))
        snap = await recv(ws, "snapshot")
        (queued,) = snap["data"]["queued_tasks"]
        assert queued["waiting_reason"] == {"code": "no_agent_connected", "detail": "no agent is connected"}

        agent_id = f"m-{uuid.uuid4().hex[:6]}"
        token = await hub.mint_token(agent_id)
        sim = AgentSim(hub.ws_url, agent_id, token, behaviour="ignore")
        await sim.connect(identify=False)
        try:
            await sim.send({"type": "identify", "agent_id": agent_id, "token": token, "executors": ["claude"]})
            assigned = await recv(
                ws,
                "events",
                lambda m: any(e.get("task_id") == tid and e["event"] == "task_assigned" for e in m["data"]),
            )
            item = next(e for e in assigned["data"] if e["event"] == "task_assigned")
            assert item["task"]["waiting_reason"] is None
        finally:
            await sim.close()


@pytest.mark.browser
@needs_chromium
async def test_queued_row_shows_why_it_waits(make_hub, open_dashboard):
    """The queued task's row says why it waits, and stops saying it once an agent that can run it takes it."""
    pytest.importorskip("playwright.async_api")
    from playwright.async_api import expect

    hub = await make_hub(dashboard_batch_ms=20)
    shell_only = f"m-{uuid.uuid4().hex[:6]}"
    token = await hub.mint_token(shell_only)
    sim = AgentSim(hub.ws_url, shell_only, token, behaviour="ignore")
    await sim.connect(identify=False)
    sims = [sim]
    try:
        await sim.send({"type": "identify", "agent_id": shell_only, "token": token, "executors": ["shell"]})
        await asyncio.wait_for(sim.identified.wait(), 10 * SCALE)
        page = await open_dashboard(hub.url, hub.admin_token)
        tid = await hub.submit(description="Migrate the database", complexity_tier="complex")
        row = page.locator(f'#tasks tr[data-task-id="{tid}"]')
        await expect(row).to_have_attribute("data-status", "queued")
        reason = row.locator('[data-waiting="no_agent_with_executor"]')
        await expect(reason).to_contain_text("needs executor claude or ollama or openai; connected agents offer shell")

        cloud = f"m-{uuid.uuid4().hex[:6]}"
        token = await hub.mint_token(cloud)
        sims.append(other := AgentSim(hub.ws_url, cloud, token, behaviour="ignore"))
        await other.connect(identify=False)
        await other.send({"type": "identify", "agent_id": cloud, "token": token, "executors": ["claude"]})
        await expect(row).to_have_attribute("data-status", "assigned")
        await expect(row.locator("[data-waiting]")).to_have_count(0)
    finally:
        for s in sims:
            await s.close()
