"""Routing with endpoints: warm, well-probed endpoints preferred, shared endpoints share load, repo affinity,
fallback when a tier's target is missing; every decision stored on the task with its explanation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shared.fakes.ollama_server import FakeOllamaServer
from tests.conftest import HubHandle, wait_tasks
from tests.hub.endpoints.helpers import CHATTY, NATIVE, connect_agent, wait_registry

MakeHub = Callable[..., Awaitable[HubHandle]]
SETTINGS = {"endpoint_health_interval_s": 30.0}


async def _ready(hub: HubHandle, url: str, models: list[str]) -> str:
    """Register ``url`` and wait until it is checked and each of ``models`` probed; its endpoint id."""
    ep_id = (await hub.http.post("/api/endpoints", json={"url": url})).json()["id"]
    registry = hub.hub.endpoints
    await wait_registry(hub, lambda: all((ep_id, m) in registry.probes for m in models))
    await wait_registry(hub, lambda: registry.endpoints[ep_id].healthy is True)
    return ep_id


def _decision(task: dict[str, Any]) -> dict[str, Any]:
    decision: dict[str, Any] = task["routing_decision"]
    return decision


async def test_mixed_batch_prefers_the_warm_well_probed_endpoint_and_explains(make_hub: MakeHub) -> None:
    """A mixed batch: the local-model task goes to the agent whose endpoint has the model warm and probed well
    (not the longest idle one), the complex task to Claude, the shell task to a shell agent; each decision names
    its endpoint, score and terms."""
    hub = await make_hub(**SETTINGS)
    async with (
        FakeOllamaServer(models={"coder": NATIVE}, warm=["coder"]) as good,
        FakeOllamaServer(models={"coder": CHATTY}, warm=[]) as cold,
    ):
        good_id = await _ready(hub, good.url, ["coder"])
        cold_id = await _ready(hub, cold.url, ["coder"])
        # connected first, so longest idle: the scheduler without scores would pick these
        await connect_agent(hub, "on-cold", ollama_url=cold.url, models=["coder"], executors=["ollama"])
        await connect_agent(hub, "shell-only", executors=["shell"])
        await connect_agent(hub, "on-good", ollama_url=good.url, models=["coder"], executors=["ollama"])
        await connect_agent(hub, "claude", executors=["claude"])
        r = await hub.http.post("/api/tasks/batch", json={"tasks": [
            {"description": "write a helper", "complexity_tier": "standard"},
            {"description": "redesign the storage", "complexity_tier": "complex"},
            {"description": "list files", "metadata": {"shell_command": "ls"}},
        ]})  # fmt: skip
        assert r.status_code == 201, r.text
        ids = [t["task_id"] for t in r.json()["tasks"]]
        await wait_tasks(hub, ids, {"completed"})
        local, complex_, shell = [await hub.task(t) for t in ids]
    d = _decision(local)
    assert local["assigned_to"] == "on-good", d
    assert d["target_type"] == "ollama" and d["selected_model"] == "coder"
    assert d["endpoint_id"] == good_id and d["selected_endpoint"] == good.url
    assert d["score_parts"] == {"probe": 1.0, "warm": 0.5, "load": 0.0, "health": 0.0, "repo": 0.0}
    assert d["score"] == 1.5
    assert "via endpoint " + good_id in d["explanation"] and "runner-up 0.00" in d["explanation"]
    assert cold_id != good_id
    assert complex_["assigned_to"] == "claude" and _decision(complex_)["target_type"] == "claude"
    assert _decision(complex_)["fallback_used"] is False
    assert shell["assigned_to"] == "shell-only" and _decision(shell)["target_type"] == "shell"


async def test_two_agents_on_one_endpoint_count_as_one_load(make_hub: MakeHub) -> None:
    """With a task running through one Ollama, the next task goes to an agent on another endpoint, even though an
    idle agent sharing the busy Ollama has waited longer."""
    hub = await make_hub(**SETTINGS)
    async with (
        FakeOllamaServer(models={"coder": NATIVE}) as shared,
        FakeOllamaServer(models={"coder": NATIVE}) as other,
    ):
        await _ready(hub, shared.url, ["coder"])
        other_id = await _ready(hub, other.url, ["coder"])
        await connect_agent(hub, "a1", ollama_url=shared.url, models=["coder"], executors=["ollama"],
                                   behaviour="ignore")  # fmt: skip
        await connect_agent(hub, "a2", ollama_url=shared.url + "/", models=["coder"], executors=["ollama"])
        await connect_agent(hub, "b1", ollama_url=other.url, models=["coder"], executors=["ollama"])
        first = await hub.submit(description="one")
        await wait_tasks(hub, [first], {"assigned", "working"})
        assert (await hub.task(first))["assigned_to"] == "a1"
        second = await hub.submit(description="two")
        await wait_tasks(hub, [second], {"completed"})
        task = await hub.task(second)
    d = _decision(task)
    assert task["assigned_to"] == "b1" and d["endpoint_id"] == other_id, d
    assert d["score_parts"]["load"] == 0.0
    assert "runner-up 1.10" in d["explanation"]  # a2: probe 1.0 + warm 0.5 - load 0.4 on the shared endpoint


async def test_repo_affinity_prefers_the_agent_that_worked_on_the_repo(make_hub: MakeHub) -> None:
    """The next task on a repository goes to the agent that last ran one there, not to the longest idle agent."""
    hub = await make_hub(**SETTINGS)
    await connect_agent(hub, "x", executors=["shell"])
    await connect_agent(hub, "y", executors=["shell"])
    body = {"metadata": {"shell_command": "true"}, "repo": "https://forge.example/team/app.git"}
    first = await hub.submit(description="first", **body)
    await wait_tasks(hub, [first], {"completed"})
    assert (await hub.task(first))["assigned_to"] == "x"  # longest idle
    second = await hub.submit(description="second", **body)
    other = await hub.submit(description="elsewhere", metadata={"shell_command": "true"})
    await wait_tasks(hub, [second, other], {"completed"})
    task = await hub.task(second)
    assert task["assigned_to"] == "x", _decision(task)
    assert _decision(task)["score_parts"] == {"repo": 0.3}
    assert (await hub.task(other))["assigned_to"] == "y"


async def test_a_tier_whose_target_no_agent_has_falls_back(make_hub: MakeHub) -> None:
    """A complex task (Claude first) with only local-model agents runs on a local model, the decision saying it
    fell back from claude."""
    hub = await make_hub(**SETTINGS)
    async with FakeOllamaServer(models={"coder": NATIVE}) as server:
        await _ready(hub, server.url, ["coder"])
        await connect_agent(hub, "local", ollama_url=server.url, models=["coder"], executors=["ollama"])
        task_id = await hub.submit(description="redesign everything", complexity_tier="complex")
        await wait_tasks(hub, [task_id], {"completed"})
        d = _decision(await hub.task(task_id))
    assert d["target_type"] == "ollama" and d["fallback_used"] is True and d["preferred_target"] == "claude"
    assert "fell back from claude" in d["explanation"] and "the only candidate" in d["explanation"]


def test_a_decision_never_outgrows_the_submission_bound() -> None:
    """The widest placement a ranker can make (longest URL, model and agent names) fits the size a submission is
    checked against (hub/task_submit.py uses WORST_PLACEMENT)."""
    import json

    from hub.endpoints.registry import Endpoint
    from hub.endpoints.scoring import Scored, explain
    from hub.routing import WORST_PLACEMENT, Placement, Route, placement_fields

    model, agent = "\U0001f600" * 256, "a" * 128
    ep = Endpoint(id="ep-" + "0" * 12, url="http://" + "h" * 505, kind="ollama", created_at=0, name="n" * 64)
    parts = tuple((n, -123456.789) for n in ("probe", "warm", "load", "health", "repo"))
    scored = Scored(agent, model, parts, ep)
    route = Route("ollama", model, "standard", "tier standard", "claude")
    text = explain(route, agent, model, scored, ep, [-1e9, 0.0])
    widest = Placement(ep.id, ep.url, scored.score, parts, text)
    assert len(json.dumps(placement_fields(widest))) <= len(json.dumps(placement_fields(WORST_PLACEMENT)))
