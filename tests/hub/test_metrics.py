"""``/metrics`` (Prometheus), ``/ready`` and the alert conditions with acknowledgement, on a real hub with real
agents over WebSockets."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HubHandle, wait_tasks


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (the real Prometheus text parser reads it)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(hub: HubHandle) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The hub's metrics once every event so far is counted."""
    await asyncio.wait_for(hub.hub.metrics.caught_up(hub.hub.queue.feed.last_seq), 30)
    r = await hub.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_metrics_need_a_token_unless_public(make_hub: Any) -> None:
    """Without a token /metrics is 401; with AGENTCOM_METRICS_PUBLIC it is served to anyone."""
    closed = await make_hub()
    async with httpx.AsyncClient(base_url=closed.url) as anon:
        assert (await anon.get("/metrics")).status_code == 401
    open_ = await make_hub(metrics_public=True)
    async with httpx.AsyncClient(base_url=open_.url) as anon:
        assert (await anon.get("/metrics")).status_code == 200


async def test_queue_depth_tasks_and_agents_are_read_at_scrape_time(hub: HubHandle) -> None:
    """Queued tasks show per lane and per status; no agents, utilisation 0, and the no_agents alert is active."""
    for priority in ("urgent", "low", "low"):
        await hub.submit(priority=priority)
    s = await scrape(hub)
    assert s[("agentcom_queue_depth", (("lane", "urgent"),))] == 1
    assert s[("agentcom_queue_depth", (("lane", "low"),))] == 2
    assert s[("agentcom_tasks", (("status", "queued"),))] == 3
    assert s[("agentcom_agent_utilisation", ())] == 0
    assert s[("agentcom_alerts", (("acknowledged", "false"), ("id", "no_agents"), ("severity", "warning")))] == 1


async def test_outcomes_latency_tokens_and_terminations_are_counted(hub: HubHandle, make_agent: Any) -> None:
    """Completed and failed attempts land in the outcome counter, the latency histograms, the token and cost
    counters per model, the parser paths and the loop terminations by reason."""
    usage = {"tokens_in": 100, "tokens_out": 20, "model": "qwen2.5-coder:1.5b", "provider": "ollama", "cost_usd": 0.5}
    result = {
        "status": "success", "outcome": "unverified", "termination_reason": "completed",
        "parse_stats": {"qwen2.5-coder:1.5b": {"native": 3, "fenced_json": 1}},
    }  # fmt: skip
    await make_agent(usage=usage, result=result)
    ids = [await hub.submit(description=f"t{i}") for i in range(3)]
    await wait_tasks(hub, ids, {"completed"})
    s = await scrape(hub)
    assert s[("agentcom_task_outcomes_total", (("outcome", "unverified"), ("then", "completed")))] == 3
    assert s[("agentcom_task_seconds_count", ())] == 3
    assert s[("agentcom_dispatch_seconds_count", ())] == 3
    assert s[("agentcom_model_tokens_total", (("direction", "in"), ("model", "qwen2.5-coder:1.5b")))] == 300
    assert s[("agentcom_model_cost_usd_total", (("model", "qwen2.5-coder:1.5b"),))] == 1.5
    assert s[("agentcom_parser_paths_total", (("model", "qwen2.5-coder:1.5b"), ("path", "native")))] == 9
    assert s[("agentcom_loop_terminations_total", (("reason", "completed"),))] == 3


async def test_ready_and_health_show_the_alert_state_and_acknowledgement(hub: HubHandle) -> None:
    """/ready is 200 on a working hub; /health carries the alerts; an acknowledged alert stops counting."""
    assert (await hub.http.get("/ready")).json() == {"ready": True, "reason": None}
    health = (await hub.http.get("/health")).json()
    assert health["alerts"]["status"] == "warning"
    assert [c["id"] for c in health["alerts"]["conditions"]] == ["no_agents"]
    r = await hub.http.post("/api/alerts/no_agents/ack")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["conditions"][0]["acknowledged"] is True
    assert (await hub.http.post("/api/alerts/not_a_condition/ack")).status_code == 404
    viewer = await hub.mint_token("watcher", role="viewer")
    r = await hub.http.post("/api/alerts/no_agents/ack", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403


async def test_hostile_usage_cannot_bloat_the_series(hub: HubHandle, make_agent: Any) -> None:
    """Model names from reports are cut to 64 characters; absurd numbers are not counted."""
    usage = {"tokens_in": 10, "tokens_out": 1, "model": "m" * 200, "cost_usd": 1e11}
    await make_agent(usage=usage)
    await wait_tasks(hub, [await hub.submit()], {"completed"})
    await asyncio.wait_for(hub.hub.metrics.caught_up(hub.hub.queue.feed.last_seq), 30)
    text = (await hub.http.get("/metrics")).text
    assert "m" * 65 not in text and "m" * 64 in text
    assert "agentcom_model_cost_usd_total{" not in text
