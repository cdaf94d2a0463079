"""Budgets gate every model call: a real hub, simulated agents sending budget_request / usage_report frames."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from shared.agent_sim import AgentSim

EXECUTING_HOURLY = {"hub_states": {"executing": {"hourly": {"usd": 1.25, "action": "stop"}}}}


async def held_task(hub, make_agent, **task: Any) -> tuple[AgentSim, str]:
    """An agent holding one task (assigned to it, never finished)."""
    agent = await make_agent(behaviour="ignore")
    tid = await hub.submit(assign_to=agent.agent_id, **task)
    await agent.wait_for(lambda m: m.get("type") == "task_assign" and m["task_id"] == tid)
    return agent, tid


async def ask(agent: AgentSim, tid: str, n: int, **est: Any) -> list[dict[str, Any]]:
    """Send ``n`` budget_request frames at once (no waiting in between) and return the ``n`` answers."""
    ids = [f"r-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    for rid in ids:
        await agent.send({"type": "budget_request", "request_id": rid, "task_id": tid, **est})
    return [await agent.wait_for(lambda m, r=rid: m.get("type") == "budget_grant" and m["request_id"] == r)
            for rid in ids]  # fmt: skip


async def recorded(hub, calls: int) -> None:
    """Wait until the ledger holds ``calls`` entries (a usage_report is settled asynchronously)."""
    async with asyncio.timeout(10):
        while hub.hub.costs.ledger.total.calls < calls:
            await asyncio.sleep(0.01)


async def put_budgets(hub, body: dict[str, Any]) -> dict[str, Any]:
    r = await hub.http.put("/api/costs/budgets", json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def test_fifty_concurrent_requests_get_exactly_what_the_budget_allows(make_hub, tmp_path) -> None:
    """50 concurrent requests of $0.125 against a $1.25 hourly budget: exactly 10 granted, spend never above the
    limit, and after a restart the ledger totals and the refusal are the same (read back from the journal)."""
    hub = await make_hub(data_dir=tmp_path / "hub")
    await put_budgets(hub, EXECUTING_HOURLY)
    sims = []
    for _ in range(5):
        agent = AgentSim(hub.ws_url, aid := f"a-{uuid.uuid4().hex[:6]}", await hub.mint_token(aid), behaviour="ignore")
        sims.append(await agent.connect())
    tids = [await hub.submit(assign_to=a.agent_id) for a in sims]
    for agent, tid in zip(sims, tids, strict=True):
        await agent.wait_for(lambda m, t=tid: m.get("type") == "task_assign" and m["task_id"] == t)
    answers = await asyncio.gather(*(ask(a, t, 10, model="claude-sonnet-4-5", est_usd=0.125)
                                     for a, t in zip(sims, tids, strict=True)))  # fmt: skip
    flat = [(a, t, g) for a, t, gs in zip(sims, tids, answers, strict=True) for g in gs]
    granted = [(a, t, g) for a, t, g in flat if g["granted"]]
    assert len(granted) == 10
    assert {g["reason"] for _, _, g in flat if not g["granted"]} == {"budget_exhausted"}
    report = (await hub.http.get("/api/costs/budgets")).json()
    assert report["budgets"][0]["reserved_usd"] == 1.25 and report["counters"]["granted"] == 10
    for agent, tid, grant in granted:
        usage = {"tokens_in": 1000, "tokens_out": 100, "model": "claude-sonnet-4-5", "cost_usd": 0.125}
        await agent.send({"type": "usage_report", "task_id": tid, "grant_id": grant["grant_id"], "usage": usage})
    await recorded(hub, 10)
    report = (await hub.http.get("/api/costs/budgets")).json()
    (row,) = report["budgets"]
    assert row["spent_usd"] == 1.25 <= row["limit_usd"] and row["reserved_usd"] == 0 and row["state"] == "exhausted"
    before = (await hub.http.get("/api/costs", params={"group_by": "agent"})).json()
    assert before["total"]["usd"] == 1.25 and before["total"]["calls"] == 10
    for agent in sims:
        await agent.close()
    await hub.server.stop()

    again = await make_hub(data_dir=tmp_path / "hub")
    after = (await again.http.get("/api/costs", params={"group_by": "agent"})).json()
    assert after == before
    agent, tid = await held_task(again, lambda **kw: _sim(again, **kw))
    (answer,) = await ask(agent, tid, 1, est_usd=0.01)
    assert answer == {**answer, "granted": False, "reason": "budget_exhausted"}
    await agent.close()


async def _sim(hub, **kwargs: Any) -> AgentSim:
    aid = f"a-{uuid.uuid4().hex[:6]}"
    return await AgentSim(hub.ws_url, aid, await hub.mint_token(aid), **kwargs).connect()


async def test_per_task_token_budget_refuses_once_spent(hub, make_agent) -> None:
    """A task's token limit: calls are granted while spend plus reservations fit, then refused; warn only flags."""
    await put_budgets(hub, {"task": {"tokens": 1000}})
    agent, tid = await held_task(hub, make_agent)
    first, second = await ask(agent, tid, 2, est_tokens_in=400, est_tokens_out=200)
    assert first["granted"] and first["limit"] == 600
    assert not second["granted"] and second["reason"] == "budget_exhausted"
    usage = {"tokens_in": 300, "tokens_out": 100, "model": "qwen:1.5b", "provider": "ollama"}
    await agent.send({"type": "usage_report", "task_id": tid, "grant_id": first["grant_id"], "usage": usage})
    await recorded(hub, 1)
    (third,) = await ask(agent, tid, 1, est_tokens_in=400, est_tokens_out=200)
    assert third["granted"]  # 400 spent + 600 asked fits 1000
    (fourth,) = await ask(agent, tid, 1, est_tokens_in=1)
    assert not fourth["granted"]
    await put_budgets(hub, {"task": {"tokens": 1000, "action": "warn"}})
    (fifth,) = await ask(agent, tid, 1, est_tokens_in=1)
    assert fifth["granted"] and hub.hub.costs.budgets.n_warned == 1


async def test_pause_action_refuses_with_its_own_reason_and_budget_left_says_so(hub, make_agent) -> None:
    """A pausing hub-state budget refuses with budget_paused, and costs.budget_left reports the state used up."""
    await put_budgets(hub, {"hub_states": {"executing": {"daily": {"tokens": 10, "action": "pause"}}}})
    agent, tid = await held_task(hub, make_agent)
    (grant,) = await ask(agent, tid, 1, est_tokens_in=10)
    assert grant["granted"] and hub.hub.costs.budget_left("executing")
    usage = {"tokens_in": 10, "tokens_out": 0, "model": "m"}
    await agent.send({"type": "usage_report", "task_id": tid, "grant_id": grant["grant_id"], "usage": usage})
    await recorded(hub, 1)
    (refused,) = await ask(agent, tid, 1, est_tokens_in=1)
    assert refused["reason"] == "budget_paused"
    assert not hub.hub.costs.budget_left("executing") and hub.hub.costs.budget_left("improving")


async def test_reservations_expire_when_never_settled(make_hub) -> None:
    """A grant whose call never reports is released after cost_reservation_ttl_s, freeing the budget."""
    hub = await make_hub(cost_reservation_ttl_s=0.2, cost_sweep_interval_s=0.05)
    await put_budgets(hub, {"task": {"tokens": 100}})
    agent = await _sim(hub, behaviour="ignore")
    tid = await hub.submit(assign_to=agent.agent_id)
    await agent.wait_for(lambda m: m.get("type") == "task_assign")
    first, second = await ask(agent, tid, 2, est_tokens_in=100)
    assert first["granted"] and not second["granted"]
    async with asyncio.timeout(10):
        while hub.hub.costs.budgets.reservations:
            await asyncio.sleep(0.05)
    (third,) = await ask(agent, tid, 1, est_tokens_in=100)
    assert third["granted"] and hub.hub.costs.budgets.n_expired >= 1
    await agent.close()


async def test_requests_for_a_task_not_held_are_refused(hub, make_agent) -> None:
    """budget_request for another agent's task is refused (not_assigned); its usage_report is an error."""
    _, tid = await held_task(hub, make_agent)
    other = await make_agent()
    (answer,) = await ask(other, tid, 1, est_tokens_in=1)
    assert answer["granted"] is False and answer["reason"] == "not_assigned"
    await other.send({"type": "usage_report", "task_id": tid, "usage": {"tokens_in": 5}})
    error = await other.wait_for(lambda m: m.get("type") == "error")
    assert error["error"] == "usage_report_failed: not_assigned" and hub.hub.costs.ledger.total.calls == 0


async def test_put_budgets_is_admin_only_and_validated(hub) -> None:
    """PUT /api/costs/budgets needs the admin role and refuses a limit without amounts, negative or NaN values."""
    viewer = await hub.mint_token("viewer-1", role="viewer")
    r = await hub.http.put("/api/costs/budgets", json={}, headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403
    for bad in ({"task": {}}, {"task": {"usd": -1}}, {"goal": {"tokens": 5, "action": "explode"}},
                {"hub_states": {"x": {"hourly": {"usd": "1"}}}}, {"tasks": {"t": {"usd": 1}}, "extra": 1}):  # fmt: skip
        r = await hub.http.put("/api/costs/budgets", json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = await hub.http.put("/api/costs/budgets", content=b'{"task": {"usd": NaN}}')
    assert r.status_code == 422
    assert (await hub.http.get("/api/costs/budgets")).json()["config"] == {"hub_states": {}, "tasks": {}, "goals": {}}


async def test_goal_budget_is_shared_by_the_goals_tasks(hub, make_agent) -> None:
    """A goal's USD limit counts every task of the goal; a task of another goal is not held by it."""
    await put_budgets(hub, {"goals": {"g": {"usd": 0.5}}})
    a1, t1 = await held_task(hub, make_agent, goal_id="g")
    a2, t2 = await held_task(hub, make_agent, goal_id="g")
    a3, t3 = await held_task(hub, make_agent, goal_id="h")
    (first,) = await ask(a1, t1, 1, est_usd=0.375)
    (second,) = await ask(a2, t2, 1, est_usd=0.25)
    (third,) = await ask(a3, t3, 1, est_usd=0.25)
    assert first["granted"] and not second["granted"] and third["granted"]
    row = (await hub.http.get("/api/costs/budgets")).json()["budgets"][0]
    assert row == {**row, "budget": "goal:g", "reserved_usd": 0.375, "limit_usd": 0.5}


async def test_hub_calls_use_the_same_gate(hub) -> None:
    """The hub's own model calls reserve and settle through hub.costs like a sidecar's, charged as source hub."""
    from hub.costs.budgets import Estimate, Grant, Refusal, Scope
    from hub.costs.ledger import CostEntry

    await put_budgets(hub, {"hub_states": {"improving": {"daily": {"tokens": 1000}}}})
    costs = hub.hub.costs
    scope = Scope(goal_id="g9", hub_state="improving", model="claude-haiku-4-5", provider="claude")
    grant = costs.reserve(scope, Estimate(tokens=800, usd=0.001))
    assert isinstance(grant, Grant)
    assert isinstance(refused := costs.reserve(scope, Estimate(tokens=300, usd=0.0)), Refusal)
    assert refused.reason == "budget_exhausted" and refused.budget.startswith("hub_state:improving:day:")
    entry = CostEntry(ts=hub.hub.clock.now_ms(), goal_id="g9", hub_state="improving", model="claude-haiku-4-5",
                      provider="claude", tokens_in=500, tokens_out=100, source="hub")  # fmt: skip
    recorded_entry = await costs.settle(grant, entry)
    assert recorded_entry.usd == (500 * 1.0 + 100 * 5.0) / 1e6 and not costs.budgets.reservations
    assert isinstance(costs.reserve(scope, Estimate(tokens=400, usd=0.0)), Grant)  # 600 spent + 400 fits 1000
    assert costs.budget_left("improving") is not False and costs.budget_left("executing")


async def test_a_report_cannot_release_another_tasks_grant(hub, make_agent) -> None:
    """A usage_report naming a grant of another task is recorded for its own task but leaves that grant reserved."""
    await put_budgets(hub, {"task": {"tokens": 100}})
    a1, t1 = await held_task(hub, make_agent)
    a2, t2 = await held_task(hub, make_agent)
    (grant,) = await ask(a1, t1, 1, est_tokens_in=100)
    await a2.send({"type": "usage_report", "task_id": t2, "grant_id": grant["grant_id"], "usage": {"tokens_in": 1}})
    await recorded(hub, 1)
    assert grant["grant_id"] in hub.hub.costs.budgets.reservations
    (again,) = await ask(a1, t1, 1, est_tokens_in=1)
    assert not again["granted"]
