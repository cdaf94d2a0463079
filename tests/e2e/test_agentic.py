"""A model task end to end: hub process -> sidecar process -> ReAct loop on the fake Ollama -> sandboxed tools ->
verification -> completed ``verified``, with every tool call seen live on ``/ws/dashboard`` and in the trajectory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

from shared.fakes.anthropic_server import FakeAnthropicServer
from shared.fakes.ollama_server import FakeOllamaServer
from tests.e2e.conftest import Fleet

pytestmark = pytest.mark.slow

HELLO = "create hello.py printing hello and a test for it"
CHECKS = [{"type": "file_exists", "target": "hello.py"}, {"type": "test_passes", "target": "python3 test_hello.py"}]


async def watch_dashboard(url: str, token: str, seen: list[dict], ready: asyncio.Event) -> None:
    """Collect every execution event (tool calls, tokens) the dashboard socket pushes."""
    ws_url = url.replace("http://", "ws://") + "/ws/dashboard"
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        async for frame in ws:
            msg = json.loads(frame)
            if msg.get("type") == "snapshot":
                ready.set()
            elif msg.get("type") == "execution_event":
                seen.append(msg["data"])


async def test_hello_task_is_built_verified_and_streamed(fleet: Fleet, tmp_path: Path) -> None:
    """The hello task runs through hub, sidecar and ReAct loop to a verified completion with live tool calls."""
    async with FakeOllamaServer(script="hello_world") as ollama:
        hub = await fleet.start_hub()
        assert fleet.http is not None
        viewer = (await fleet.http.post("/admin/tokens", json={"agent_id": "watcher", "role": "viewer"})).json()
        seen: list[dict] = []
        ready = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(watch_dashboard(hub.url, viewer["token"], seen, ready))
            await asyncio.wait_for(ready.wait(), 10)
            agent = "gcu-zero-gravitas"
            await fleet.add_sidecar(
                agent, ollama_url=ollama.url, models=["fake-coder:latest"], capabilities=["shell", "code"]
            )
            r = await fleet.http.post(
                "/api/tasks",
                json={
                    "description": HELLO,
                    "executor": "ollama",
                    "complexity_tier": "standard",
                    "verification_steps": CHECKS,
                    "max_verification_retries": 1,
                },
            )
            assert r.status_code == 201, r.text
            task_id = r.json()["task_id"]
            (task,) = await fleet.wait_status([task_id], {"completed", "dead_letter"}, timeout_s=90)
            watcher.cancel()

    assert task["status"] == "completed", task
    assert task["outcome"] == "verified"
    assert task["result"]["termination_reason"] == "completed"
    usage = task["usage"]
    assert (usage["model"], usage["provider"]) == ("fake-coder:latest", "ollama")
    assert usage["tokens_in"] > 0 and usage["tokens_out"] > 0
    assert task["tokens_used"] == usage["tokens_in"] + usage["tokens_out"]
    assert task["result"]["outcome"] == task["verification_report"]["outcome"] == "verified"
    checks = {c["type"]: c["status"] for c in task["verification_report"]["checks"]}
    assert checks == {"file_exists": "pass", "test_passes": "pass"}

    workspaces = list((fleet.home / agent / "workspaces").glob(f"{task_id}*"))
    assert len(workspaces) == 1
    assert (workspaces[0] / "hello.py").read_text().strip() == 'print("hello")'
    assert (workspaces[0] / "test_hello.py").exists()

    trajectory = (await fleet.http.get(f"/api/tasks/{task_id}/trajectory")).json()["events"]
    stored_calls = [e["event"]["tool_name"] for e in trajectory if e["kind"] == "tool_call"]
    assert stored_calls == ["write_file", "write_file", "run_command"]
    live_calls = [
        e.get("tool_name") for e in seen if e.get("event_type") == "tool_call" and e.get("task_id") == task_id
    ]
    assert live_calls == stored_calls
    assert all(e.get("iteration") for e in seen if e.get("event_type") == "tool_call")
    parsed = (await fleet.http.get("/api/tasks/parse-stats")).json()["models"]["fake-coder:latest"]
    assert parsed["native"] == 3 and parsed["final_answer"] == 1 and parsed["format_error"] == 0


async def test_claude_executor_runs_the_same_task(fleet: Fleet) -> None:
    """The same task pinned to Claude runs against the fake Anthropic API and records its cost."""
    async with FakeAnthropicServer(script="hello_world") as anthropic:
        await fleet.start_hub()
        assert fleet.http is not None
        await fleet.add_sidecar(
            "gcu-fate-amenable-to-change",
            anthropic_api_key="test-key",
            anthropic_base_url=anthropic.url,
            capabilities=["shell", "code"],
        )
        r = await fleet.http.post(
            "/api/tasks",
            json={
                "description": HELLO,
                "executor": "claude",
                "verification_steps": CHECKS,
            },
        )
        task_id = r.json()["task_id"]
        (task,) = await fleet.wait_status([task_id], {"completed", "dead_letter"}, timeout_s=90)
    assert task["status"] == "completed", task
    assert task["outcome"] == "verified"
    assert task["usage"]["cost_usd"] > 0 and task["usage"]["provider"] == "claude"
    assert "test-key" not in fleet.logs()
