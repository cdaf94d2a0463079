"""The hub's own model calls for a goal (its decomposition, its verdict) are booked to that goal, at the hub's time,
next to its tasks' calls; and the goal's budget gates them: a goal over it is not decomposed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.clock import ManualClock
from hub.goals.model_client import MAX_TOKENS
from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim
from tests.conftest import HubHandle
from tests.hub.goals.helpers import MODEL, GoalOllama, GoalReplies, plan, submit_goal, task, verdict, wait_status

START = datetime(2021, 6, 1, 12, tzinfo=UTC)
"""The hubs' (manual) time: far from the machine's, so an entry stamped by ``time.time()`` would show."""
TASK_USAGE = {"tokens_in": 100, "tokens_out": 10, "model": "qwen:1.5b", "provider": "ollama"}
HUB_CALL_TOKENS = 42 + 7
"""What the fake Ollama reports per answer (prompt_eval_count + eval_count of its default turn)."""


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[HubHandle]]]:
    """Factory: a real hub on 127.0.0.1 port 0 whose time stands still at :data:`START`."""
    handles: list[HubHandle] = []

    async def run(**overrides: Any) -> HubHandle:
        settings = HubSettings(host="127.0.0.1", port=0, data_dir=tmp_path / f"hub-{len(handles)}",
                               presence_ttl_s=10.0**6, **overrides)  # fmt: skip
        server = HubServer(settings, ManualClock(int(START.timestamp() * 1000)))
        await server.start()
        handle = HubHandle(server, settings.data_dir)
        handles.append(handle)
        return handle

    yield run
    for handle in handles:
        await handle.http.aclose()
        await handle.server.stop()


async def goal_row(hub: HubHandle, goal_id: str) -> dict[str, Any]:
    """The goal's row of ``GET /api/costs?group_by=goal``."""
    groups = (await hub.http.get("/api/costs", params={"group_by": "goal"})).json()["groups"]
    row: dict[str, Any] = next((g for g in groups if g["key"] == goal_id), {"calls": 0})
    return row


async def test_a_goals_row_counts_the_hubs_calls_and_its_tasks(start: Any) -> None:
    """After a goal is decomposed, run and verified under a goal budget that fits its calls, its cost row holds the
    decomposition, the verdict and both tasks' calls, all stamped with the hub's clock."""
    replies = GoalReplies([plan(task("a"), task("b", [0]))], [verdict(True, "done")])
    async with GoalOllama(replies) as model:
        hub = await start(hub_model_url=model.url, hub_model=MODEL)
        budget = {"goal": {"tokens": 3 * MAX_TOKENS, "action": "stop"}}  # a call reserves its prompt + MAX_TOKENS
        assert (await hub.http.put("/api/costs/budgets", json=budget)).status_code == 200
        agent_id = f"sim-{uuid.uuid4().hex[:8]}"
        sim = AgentSim(hub.ws_url, agent_id, await hub.mint_token(agent_id), usage=TASK_USAGE)
        await sim.connect()
        try:
            goal = await submit_goal(hub)
            done = await wait_status(hub, goal["id"], "complete", "failed", "needs_human_review")
            assert done.status == "complete", done.reason
            await (
                sim.settled()
            )  # a task's usage is booked before its result is acknowledged (maybe after the goal moved)
            row = await goal_row(hub, goal["id"])
        finally:
            await sim.close()
    assert row["calls"] == 4, row
    assert row["tokens"] == 2 * HUB_CALL_TOKENS + 2 * (100 + 10), row
    by_state = (await hub.http.get("/api/costs", params={"group_by": "goal"})).json()
    assert [g["key"] for g in by_state["groups"]] == [goal["id"]]  # nothing of the goal's booked without it
    days = (await hub.http.get("/api/costs", params={"group_by": "day"})).json()["groups"]
    assert [(d["key"], d["calls"]) for d in days] == [("2021-06-01", 4)]


async def test_a_goal_budget_of_a_few_tokens_stops_its_decomposition(start: Any) -> None:
    """A goal whose budget cannot hold one decomposition fails with the budget's reason; the model is never asked."""
    async with GoalOllama(GoalReplies([plan(task("a"))])) as model:
        hub = await start(hub_model_url=model.url, hub_model=MODEL, goal_model_attempts=1)
        budget = {"goal": {"tokens": 5, "action": "stop"}}
        assert (await hub.http.put("/api/costs/budgets", json=budget)).status_code == 200
        goal = await submit_goal(hub)
        done = await wait_status(hub, goal["id"], "failed", "executing")
        assert model.bodies("/api/chat") == []
    assert done.status == "failed" and done.task_ids == []
    assert "budget_exhausted" in done.reason and f"goal:{goal['id']}" in done.reason and "limit 5" in done.reason
    assert [h.status for h in done.history] == ["submitted", "decomposing", "failed"]
    assert hub.hub.goals.model.n_refused == 1 and hub.hub.goals.model.n_fallbacks == 0
    assert (await hub.http.get("/api/costs", params={"group_by": "goal"})).json()["groups"] == []
