"""Capability probing: the classification of replies, and probes of real fake models through a running hub."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from hub.endpoints.probe import classify
from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import ScriptedCall, bare_json_text, hermes_text, qwen_xml_text
from tests.conftest import HubHandle
from tests.hub.endpoints.helpers import CHATTY, JSON_IN_CONTENT, NATIVE, wait_registry

MakeHub = Callable[..., Awaitable[HubHandle]]
CALL = ScriptedCall(name="write_file", arguments={"path": "a.txt", "content": "hi"})
NATIVE_CALL = [{"function": {"index": 0, "name": "write_file", "arguments": {"path": "a.txt", "content": "hi"}}}]
OPENAI_CALL = [{"id": "c", "type": "function",
                "function": {"name": "write_file", "arguments": '{"path": "a.txt", "content": "hi"}'}}]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "tool_calls", "expected"),
    [
        ("", NATIVE_CALL, ("native", "write_file", True)),
        ("", OPENAI_CALL, ("native", "write_file", True)),
        ("", [{"function": {"name": "write_file", "arguments": {"file": "a.txt"}}}], ("native", "write_file", False)),
        ("", [{"function": {"name": "run_tests", "arguments": {}}}], ("native", "run_tests", False)),
        (hermes_text(CALL), None, ("xml", "write_file", True)),
        (qwen_xml_text(CALL), None, ("xml", "write_file", True)),
        (f"```json\n{bare_json_text(CALL)}\n```", None, ("fenced", "write_file", True)),
        (bare_json_text(CALL), [], ("content_json", "write_file", True)),
        (f"I will call it: {bare_json_text(CALL)} now.", None, ("content_json", "write_file", True)),
        ('{"name": "write_file", "parameters": {"path": "a.txt"}}', None, ("content_json", "write_file", False)),
        ("Here you go:\n```python\nprint('hi')\n```", None, ("none", None, False)),
        ("<think>maybe " + hermes_text(CALL) + "</think>I am done.", None, ("none", None, False)),
        ("", None, ("none", None, False)),
    ],
)
def test_classify(content: str, tool_calls: object, expected: tuple[str, str | None, bool]) -> None:
    """Each way a model writes (or does not write) a call is told apart, with whether its arguments are valid."""
    assert tuple(classify(content, tool_calls)) == expected


async def test_probing_classifies_native_json_in_content_and_never(make_hub: MakeHub) -> None:
    """Models discovered on an endpoint are probed: a native caller scores 1, one writing JSON in content scores
    0.6 on the content_json path, one that never calls scores 0; tokens/s and context come from the server."""
    hub = await make_hub(endpoint_health_interval_s=0.2, endpoint_probe_concurrency=2)
    models = {"native:1b": NATIVE, "jsonish:1b": JSON_IN_CONTENT, "chatty:1b": CHATTY}
    async with FakeOllamaServer(models=models) as server:
        ep_id = (await hub.http.post("/api/endpoints", json={"url": server.url})).json()["id"]
        registry = hub.hub.endpoints
        await wait_registry(hub, lambda: all((ep_id, m) in registry.probes for m in models))
        shown = (await hub.http.get(f"/api/endpoints/{ep_id}")).json()
        chats = server.bodies("/api/chat")
    results = shown["probe_results"]
    assert {m: (results[m]["path"], results[m]["score"], results[m]["valid_args"]) for m in models} == {
        "native:1b": ("native", 1.0, "3/3"),
        "jsonish:1b": ("content_json", 0.6, "3/3"),
        "chatty:1b": ("none", 0.0, "0/3"),
    }
    native = results["native:1b"]
    assert native["native_tool_calls"] and native["context_length"] == 32768 and native["error"] is None
    assert native["tokens_per_s"] == pytest.approx(100.0)  # 20 tokens in 0.2 s by the fake's counters
    assert "tools" in native["capabilities"] and len(native["cases"]) == 3
    assert shown["probes"]["chatty:1b"]["score"] == 0.0  # the list's summary
    sent = [c for c in chats if c["model"] == "native:1b"]
    assert len(sent) == 3 and all(c["tools"][0]["function"]["name"] == "write_file" for c in sent)
    assert all(c["stream"] is False for c in sent)


async def test_admin_reprobe_and_unreachable_endpoint(make_hub: MakeHub) -> None:
    """POST /api/endpoints/{id}/probe probes every model again (202); a probe of a server that is gone records
    the error and scores 0 instead of failing the loop."""
    hub = await make_hub(endpoint_health_interval_s=60)
    registry = hub.hub.endpoints
    async with FakeOllamaServer(models={"native:1b": NATIVE}) as server:
        ep_id = (await hub.http.post("/api/endpoints", json={"url": server.url})).json()["id"]
        await wait_registry(hub, lambda: (ep_id, "native:1b") in registry.probes)
        first = registry.probes[(ep_id, "native:1b")]["probed_at"]
        r = await hub.http.post(f"/api/endpoints/{ep_id}/probe")
        assert r.status_code == 202 and set(r.json()["probing"]) == {"native:1b", "fake-coder:latest"}
        await wait_registry(hub, lambda: registry.probes[(ep_id, "native:1b")]["probed_at"] > first, 20)
    await hub.http.post(f"/api/endpoints/{ep_id}/probe")
    await wait_registry(hub, lambda: registry.probes[(ep_id, "native:1b")]["error"] is not None)
    gone = registry.probes[(ep_id, "native:1b")]
    assert gone["score"] == 0.0 and gone["path"] == "error" and json.dumps(gone)
    assert (await hub.http.post("/api/endpoints/ep-none/probe")).status_code == 404


async def test_probes_repeat_on_schedule_and_never_exceed_the_concurrency(make_hub: MakeHub) -> None:
    """Results older than endpoint_probe_interval_s are probed again unasked; no more than
    endpoint_probe_concurrency probes ever run at once."""
    from shared.fakes.script import Script

    slow = Script(name="slow_native", turns=[t.model_copy(update={"delay_s": 0.05}) for t in NATIVE.turns])
    hub = await make_hub(endpoint_health_interval_s=60, endpoint_probe_interval_s=0.5, endpoint_probe_concurrency=2)
    registry = hub.hub.endpoints
    async with FakeOllamaServer(models={f"m{i}": slow for i in range(4)}) as server:
        ep_id = (await hub.http.post("/api/endpoints", json={"url": server.url})).json()["id"]
        models = [f"m{i}" for i in range(4)]
        await wait_registry(hub, lambda: all((ep_id, m) in registry.probes for m in models))
        first = {m: registry.probes[(ep_id, m)]["probed_at"] for m in models}
        await wait_registry(hub, lambda: all(registry.probes[(ep_id, m)]["probed_at"] > first[m] for m in models))
    assert registry.n_probes_running_max == 2
    stats = (await hub.http.get("/api/endpoints")).json()["stats"]
    assert stats["probes_running_max"] == 2 and stats["probes"] == 5


async def test_openai_compatible_endpoints_are_checked_and_probed(make_hub: MakeHub) -> None:
    """An OpenAI-compatible endpoint (here Ollama's /v1) lists its models from /v1/models and is probed through
    /v1/chat/completions: arguments sent as a JSON string count as native calls; tokens/s from usage and wall time."""
    hub = await make_hub(endpoint_health_interval_s=60)
    models = {"native:1b": NATIVE, "jsonish:1b": JSON_IN_CONTENT, "chatty:1b": CHATTY}
    async with FakeOllamaServer(models=models) as server:
        r = await hub.http.post("/api/endpoints", json={"url": server.url + "/v1/", "kind": "openai"})
        assert r.json()["url"] == server.url
        ep_id = r.json()["id"]
        registry = hub.hub.endpoints
        await wait_registry(hub, lambda: all((ep_id, m) in registry.probes for m in models))
        shown = (await hub.http.get(f"/api/endpoints/{ep_id}")).json()
        paths = {r.path for r in server.requests}
    assert shown["health"] == "healthy" and {m["name"] for m in shown["models"]} >= set(models)
    results = shown["probe_results"]
    assert {m: (results[m]["path"], results[m]["score"]) for m in models} == {
        "native:1b": ("native", 1.0),
        "jsonish:1b": ("content_json", 0.6),
        "chatty:1b": ("none", 0.0),
    }
    assert results["native:1b"]["tokens_per_s"] > 0
    assert "/api/chat" not in paths and "/api/tags" not in paths and "/v1/chat/completions" in paths


async def test_a_model_slower_than_the_probe_timeout_scores_zero(make_hub: MakeHub) -> None:
    """A model that does not answer within endpoint_probe_timeout_s is recorded as an error (score 0), bounded."""
    from shared.fakes.script import Script

    stalled = Script(name="stalled", turns=[t.model_copy(update={"delay_s": 1.0}) for t in NATIVE.turns])
    hub = await make_hub(endpoint_health_interval_s=60, endpoint_probe_timeout_s=0.2)
    registry = hub.hub.endpoints
    async with FakeOllamaServer(models={"stalled:1b": stalled}) as server:
        ep_id = (await hub.http.post("/api/endpoints", json={"url": server.url})).json()["id"]
        await wait_registry(hub, lambda: (ep_id, "stalled:1b") in registry.probes, timeout_s=10)
    result = registry.probes[(ep_id, "stalled:1b")]
    assert result["score"] == 0.0 and result["path"] == "error" and result["error"] == "no answer within 0.2s"
