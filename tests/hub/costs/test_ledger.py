"""The cost ledger: usage_report frames become entries, /api/costs sums them by every dimension, prices apply, and
an attempt's final usage is charged only when it sent no usage_report."""

from __future__ import annotations

from typing import Any

import pytest

from hub.costs.prices import PriceTable
from tests.hub.costs.test_budgets import held_task, recorded


async def report(agent, tid: str, **usage: Any) -> None:
    await agent.send({"type": "usage_report", "task_id": tid, "usage": usage, "wall_ms": 100, "eval_seconds": 0.5})


async def costs(hub, **params: Any) -> dict[str, Any]:
    r = await hub.http.get("/api/costs", params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("dimension", ["task", "goal", "agent", "model", "endpoint", "hub_state", "hour", "day"])
async def test_group_by_each_dimension_sums_correctly(hub, make_agent, dimension: str) -> None:
    """Entries of two agents, two goals and two models: every group_by partitions the same total exactly."""
    a1, t1 = await held_task(hub, make_agent, goal_id="g1")
    a2, t2 = await held_task(hub, make_agent, goal_id="g2")
    await report(a1, t1, tokens_in=100, tokens_out=10, model="claude-haiku-4-5", provider="claude")
    await report(a1, t1, tokens_in=200, tokens_out=20, model="qwen:1.5b", provider="ollama")
    await report(a2, t2, tokens_in=300, tokens_out=30, model="claude-haiku-4-5", provider="claude")
    await recorded(hub, 3)
    body = await costs(hub, group_by=dimension)
    groups = {g["key"]: g for g in body["groups"]}
    haiku = (100 + 300) * 1.0 / 1e6 + (10 + 30) * 5.0 / 1e6
    assert body["total"]["calls"] == 3 and body["total"]["tokens"] == 660
    assert body["total"]["usd"] == pytest.approx(haiku) and body["total"]["eval_seconds"] == 1.5
    assert sum(g["tokens_in"] for g in groups.values()) == 600
    expected = {
        "task": {t1: 330, t2: 330}, "goal": {"g1": 330, "g2": 330}, "agent": {a1.agent_id: 330, a2.agent_id: 330},
        "model": {"claude-haiku-4-5": 440, "qwen:1.5b": 220}, "endpoint": {"-": 660}, "hub_state": {"executing": 660},
    }  # fmt: skip
    if dimension in expected:
        assert {k: g["tokens"] for k, g in groups.items()} == expected[dimension]
    else:
        assert len(groups) == 1 and next(iter(groups.values()))["wall_ms"] == 300
    if dimension == "model":
        assert groups["qwen:1.5b"]["usd"] == 0 and groups["claude-haiku-4-5"]["usd"] == pytest.approx(haiku)


async def test_since_and_until_bound_the_entries(hub, make_agent) -> None:
    """since/until select entries by time; a bad group_by or a negative since is a 422."""
    agent, tid = await held_task(hub, make_agent)
    await report(agent, tid, tokens_in=1, model="m")
    await recorded(hub, 1)
    ts = hub.hub.costs.ledger.entries[-1].ts
    assert (await costs(hub, group_by="task", since=ts))["total"]["calls"] == 1
    assert (await costs(hub, group_by="task", since=ts + 1))["total"]["calls"] == 0
    assert (await costs(hub, group_by="task", until=ts))["total"]["calls"] == 0
    for params in ({"group_by": "colour"}, {"since": -1}, {"until": "soon"}):
        assert (await hub.http.get("/api/costs", params=params)).status_code == 422


def test_prices_come_from_the_table_and_overrides() -> None:
    """Claude models are priced per million tokens (dated names too), unknown Claude as Sonnet, local models free,
    and an override wins."""
    table = PriceTable({"qwen-paid": (1.0, 2.0)})
    assert table.usd("claude-sonnet-4-5-20250929", "claude", 1_000_000, 1_000_000) == 18.0
    assert table.usd("claude-opus-4.1", None, 1_000_000, 0) == 15.0
    assert table.usd("claude-mystery", "claude", 1_000_000, 0) == 3.0
    assert table.usd("qwen2.5-coder:1.5b", "ollama", 10**9, 10**9) == 0.0
    assert table.usd("qwen-paid:7b", "openai", 1_000_000, 1_000_000) == 3.0


async def test_ledger_prices_unpriced_reports_with_the_settings_override(make_hub) -> None:
    """A usage_report without cost_usd is priced by the hub, with cost_prices overriding the table."""
    hub = await make_hub(cost_prices={"claude-haiku-4-5": (10.0, 100.0)})
    from tests.hub.costs.test_budgets import _sim

    agent = await _sim(hub, behaviour="ignore")
    tid = await hub.submit(assign_to=agent.agent_id)
    await agent.wait_for(lambda m: m.get("type") == "task_assign")
    await report(agent, tid, tokens_in=1_000_000, tokens_out=10_000, model="claude-haiku-4-5")
    await recorded(hub, 1)
    assert (await costs(hub, group_by="model"))["total"]["usd"] == pytest.approx(11.0)
    await agent.close()


async def test_final_usage_is_charged_only_without_usage_reports(hub, make_agent) -> None:
    """An older sidecar (no usage_report) is charged from its task_complete usage; one that reported per call is not
    charged again at the end, and a resent result is not charged twice."""
    usage = {"tokens_in": 1000, "tokens_out": 100, "model": "claude-haiku-4-5", "provider": "claude"}
    old = await make_agent(usage=usage)
    t_old = await hub.submit(assign_to=old.agent_id)
    await old.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "complete")
    await old.finish(old.received[0])  # the same result again
    await old.wait_for(lambda m: len([a for a in old.acks if a["status"] == "complete"]) == 2)
    new, t_new = await held_task(hub, make_agent)
    await report(new, t_new, tokens_in=10, tokens_out=1, model="claude-haiku-4-5")
    await new.send({"type": "task_accepted", "task_id": t_new, "generation": 1})
    done = {"type": "task_complete", "task_id": t_new, "generation": 1, "usage": usage,
            "result": {"status": "success", "outcome": "unverified"}}  # fmt: skip
    await new.send(done)
    await new.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "complete")
    await new.send(done)  # resent after a lost ack
    await new.wait_for(lambda m: len([a for a in new.acks if a["status"] == "complete"]) == 2)
    by_task = {g["key"]: g for g in (await costs(hub, group_by="task"))["groups"]}
    assert by_task[t_old]["tokens"] == 1100 and by_task[t_old]["calls"] == 1
    assert by_task[t_new]["tokens"] == 11 and by_task[t_new]["calls"] == 1


async def test_entries_past_retention_are_pruned_and_not_read_back(make_hub, tmp_path) -> None:
    """prune drops entries older than cost_retention_days from memory and the journal; a restart reads none back."""
    from hub.costs.ledger import CostEntry

    hub = await make_hub(data_dir=tmp_path / "hub", cost_retention_days=1)
    ledger = hub.hub.costs.ledger
    now = hub.hub.clock.now_ms()
    await ledger.record(CostEntry(ts=now - 2 * 86_400_000, task_id="old", tokens_in=5, model="m"))
    await ledger.record(CostEntry(ts=now, task_id="new", tokens_in=7, model="m"))
    assert ledger.total.calls == 2
    assert await ledger.prune() == 1
    assert ledger.total.calls == 1 and set(ledger.rollups["task"]) == {"new"}
    assert [r.ts for r in await hub.hub.store.read_journal("cost")] == [now]
    await hub.server.stop()
    again = await make_hub(data_dir=tmp_path / "hub", cost_retention_days=1)
    assert (await costs(again, group_by="task"))["groups"][0]["key"] == "new"
