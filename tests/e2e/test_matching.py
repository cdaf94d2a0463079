"""A complex task on a fleet without Claude, end to end: hub process -> sidecar process that says it runs shell and
Ollama -> the ReAct loop on the fake Ollama -> completed. It used to be routed to Claude there and dead-lettered."""

from __future__ import annotations

import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from tests.e2e.conftest import Fleet

pytestmark = pytest.mark.slow

HELLO = "create hello.py printing hello and a test for it"
CHECKS = [{"type": "file_exists", "target": "hello.py"}, {"type": "test_passes", "target": "python3 test_hello.py"}]


async def test_complex_task_runs_on_the_local_model_of_a_sidecar_without_claude(fleet: Fleet) -> None:
    """The sidecar says it runs shell and ollama; a task tiered complex runs there on its model and completes."""
    async with FakeOllamaServer(script="hello_world") as ollama:
        await fleet.start_hub()
        assert fleet.http is not None
        agent = "gcu-no-more-mister-nice-guy"
        await fleet.add_sidecar(agent, ollama_url=ollama.url, models=["fake-coder:latest"], capabilities=["shell"])
        view = (await fleet.http.get(f"/api/agents/{agent}")).json()
        assert view["executors"] == ["ollama", "shell"]
        r = await fleet.http.post(
            "/api/tasks",
            json={
                "description": HELLO,
                "complexity_tier": "complex",
                "verification_steps": CHECKS,
            },
        )
        assert r.status_code == 201, r.text
        task_id = r.json()["task_id"]
        (task,) = await fleet.wait_status([task_id], {"completed", "dead_letter"}, timeout_s=90)
    assert task["status"] == "completed", task
    assert task["routing_decision"]["target_type"] == "ollama" and task["routing_decision"]["fallback_used"]
    assert task["usage"]["model"] == "fake-coder:latest"
    assert task["outcome"] == "verified"
