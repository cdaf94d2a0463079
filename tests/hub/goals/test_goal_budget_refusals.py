"""A goal whose own model call a budget refuses does not retry in vain: a stopping budget without a period fails it at
once with the budget's reason; a hub state's hourly budget makes it wait for the hour's end, then it goes on."""

# ruff: noqa: F811 (the cost tests' fixture is imported, then named as a parameter)
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.clock import ManualClock
from hub.goals.model import Goal
from hub.goals.model_client import period_end_ms
from shared.agent_sim import AgentSim
from tests.conftest import HubHandle, wait_tasks
from tests.hub.goals.helpers import MODEL, GoalOllama, GoalReplies, plan, submit_goal, task, wait_goal, wait_status
from tests.hub.goals.test_goal_costs import START, start  # noqa: F401 (fixture)

HOUR_END = int((START + timedelta(hours=1)).timestamp() * 1000)
"""The end of the hour :data:`START` (12:00 UTC) is in."""
SPENT = 1_000_000
"""Tokens an agent's task spends in that hour, which is the hourly budget: nothing more fits until the hour ends."""


def refused_once(goal: Goal) -> bool:
    """The goal's first decomposition is over: it failed, or it went back to wait."""
    return str(goal.status) == "failed" or (str(goal.status) == "submitted" and goal.retry_at is not None)


async def spend_this_hour(hub: HubHandle, tokens: int) -> None:
    """A real agent runs a task reporting ``tokens`` of usage; returns once the ledger books it."""
    agent_id = f"sim-{uuid.uuid4().hex[:8]}"
    sim = AgentSim(hub.ws_url, agent_id, await hub.mint_token(agent_id),
                   usage={"tokens_in": tokens, "model": "qwen:1.5b", "provider": "ollama"})  # fmt: skip
    await sim.connect()
    try:
        r = await hub.http.post("/api/tasks", json={"description": "spend"})
        assert r.status_code == 201
        await wait_tasks(hub, [r.json()["task_id"]], {"completed"})
        await sim.settled()  # the hub books a task's usage before it acknowledges the result
        days = (await hub.http.get("/api/costs", params={"group_by": "hub_state"})).json()["groups"]
        assert sum(g["tokens"] for g in days) >= tokens, days
    finally:
        await sim.close()


def test_period_end_of_budget_keys() -> None:
    """An hourly key ends at the next hour, a daily one at the next midnight (UTC); a goal's has no period."""
    assert period_end_ms("hub_state:executing:hour:2021-06-01T12") == HOUR_END
    midnight = int(datetime(2021, 6, 2, tzinfo=UTC).timestamp() * 1000)
    assert period_end_ms("hub_state:a:b:day:2021-06-01") == midnight
    assert period_end_ms("goal:g-1") is None and period_end_ms("hub_state:x:hour:soon") is None
    assert period_end_ms("goal:hour:2021-06-01T12") is None


async def test_a_goal_over_its_stopping_budget_fails_at_once(start: Any) -> None:
    """With attempts to spare, a goal whose own token budget (action stop) cannot hold a decomposition fails on the
    first refusal with the budget's reason; the model is never asked and no retry is planned."""
    async with GoalOllama(GoalReplies([plan(task("a"))])) as model:
        hub = await start(hub_model_url=model.url, hub_model=MODEL, goal_model_attempts=5)
        budget = {"goal": {"tokens": 100, "action": "stop"}}
        assert (await hub.http.put("/api/costs/budgets", json=budget)).status_code == 200
        goal = await submit_goal(hub)
        done = await wait_goal(hub, goal["id"], refused_once)
        assert model.bodies("/api/chat") == []
    assert str(done.status) == "failed" and done.retry_at is None, done.reason
    assert done.reason.startswith("over budget: budget_exhausted: ") and f"goal:{goal['id']}" in done.reason
    assert "limit 100" in done.reason
    assert [str(h.status) for h in done.history] == ["submitted", "decomposing", "failed"]
    assert hub.hub.goals.model.n_refused == 1


async def test_a_goal_refused_by_an_hourly_budget_waits_for_the_hours_end(start: Any) -> None:
    """When the hub state's hourly budget is spent, the goal waits until the hour ends (not the backoff, and no
    attempt counted), is not tried before, and is decomposed once the clock reaches the next hour."""
    async with GoalOllama(GoalReplies([plan(task("a"))])) as model:
        hub = await start(hub_model_url=model.url, hub_model=MODEL, autonomy_enabled=False, goal_model_attempts=1)
        budget = {"hub_states": {"executing": {"hourly": {"tokens": SPENT, "action": "stop"}}}}
        assert (await hub.http.put("/api/costs/budgets", json=budget)).status_code == 200
        await spend_this_hour(hub, SPENT)
        goal = await submit_goal(hub)
        waiting = await wait_goal(hub, goal["id"], refused_once)
        assert (str(waiting.status), waiting.retry_at, waiting.model_failures) == ("submitted", HOUR_END, 0)
        assert "budget_exhausted" in waiting.reason and "hub_state:executing:hour:2021-06-01T12" in waiting.reason
        assert "waiting until 2021-06-01 13:00 UTC" in waiting.reason
        assert await hub.hub.goals.advance_one() is False  # not due before the hour ends
        clock = hub.hub.clock
        assert isinstance(clock, ManualClock)
        clock.advance((HOUR_END - clock.now_ms()) / 1000)
        hub.hub.goals.wake()
        done = await wait_status(hub, goal["id"], "executing", "failed")
        assert len(model.bodies("/api/chat")) == 1
    assert str(done.status) == "executing" and len(done.task_ids) == 1, done.reason
    assert hub.hub.goals.model.n_refused == 1


async def test_a_call_no_hour_can_hold_fails_at_once(start: Any) -> None:
    """An hourly budget below one decomposition's estimate never fits, whatever the hour: the goal fails at once."""
    async with GoalOllama(GoalReplies([plan(task("a"))])) as model:
        hub = await start(hub_model_url=model.url, hub_model=MODEL, autonomy_enabled=False, goal_model_attempts=5)
        budget = {"hub_states": {"executing": {"hourly": {"tokens": 5, "action": "stop"}}}}
        assert (await hub.http.put("/api/costs/budgets", json=budget)).status_code == 200
        goal = await submit_goal(hub)
        done = await wait_goal(hub, goal["id"], refused_once)
        assert model.bodies("/api/chat") == []
    assert str(done.status) == "failed" and "hub_state:executing:hour:" in done.reason and "limit 5" in done.reason


async def test_a_verdict_refused_by_the_goals_stopping_budget_goes_to_a_person_at_once(start: Any) -> None:
    """A goal whose own budget (action stop) is lowered while its tasks run gets no verdict call: once its tasks end
    it needs human review at once, with the budget's reason, and the model was asked only to decompose it."""
    async with GoalOllama(GoalReplies([plan(task("a"))])) as model:
        hub = await start(hub_model_url=model.url, hub_model=MODEL, autonomy_enabled=False, goal_model_attempts=5)
        goal = await submit_goal(hub)
        await wait_status(hub, goal["id"], "executing")
        budget = {"goals": {goal["id"]: {"tokens": 100, "action": "stop"}}}
        assert (await hub.http.put("/api/costs/budgets", json=budget)).status_code == 200
        agent_id = f"sim-{uuid.uuid4().hex[:8]}"
        sim = AgentSim(hub.ws_url, agent_id, await hub.mint_token(agent_id))
        await sim.connect()
        try:
            done = await wait_goal(hub, goal["id"], lambda g: g.final or g.model_failures > 0)
        finally:
            await sim.close()
        assert len(model.bodies("/api/chat")) == 1
    assert str(done.status) == "needs_human_review" and done.retry_at is None, done.reason
    assert done.reason.startswith("over budget: budget_exhausted: ") and f"goal:{goal['id']}" in done.reason
