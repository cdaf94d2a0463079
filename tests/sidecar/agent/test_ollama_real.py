"""Against a real Ollama: skipped unless ``OLLAMA_HOST`` answers ``/api/tags`` within 1 s.

The model is ``OLLAMA_TEST_MODEL`` if set, else the first installed model whose name mentions a coder or qwen, else
the first one. Small models do not always finish the task, so the end-to-end test asserts that the loop and
verification ran on real output, not that the model succeeded.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.protocol import TaskAssign
from sidecar.agent.agentic import OllamaExecutor
from sidecar.agent.ollama import OllamaChatModel
from sidecar.agent.tools import TOOL_ARGS, tool_schema
from sidecar.agent.trajectory import load_trajectory, trajectory_path
from sidecar.sandbox.probe import probe_sandbox
from tests.sidecar.agent.test_loop import TASK, RecordingSink, searchable


@pytest.fixture(scope="module")
def sandbox():
    # A uid range of our own: a run's cleanup kills every process of its uid, so never share one with a sidecar.
    return asyncio.run(probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000), kill_grace_s=1.0))


def _find_ollama() -> tuple[str, str] | None:
    host = os.environ.get("OLLAMA_HOST", "")
    if not host:
        return None
    url = host if "://" in host else f"http://{host}"
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/tags", timeout=1.0)
        response.raise_for_status()
        names = [m["model"] for m in response.json()["models"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    preferred = [n for n in names if "coder" in n or "qwen" in n]
    model = os.environ.get("OLLAMA_TEST_MODEL") or next(iter(preferred or names), None)
    return (url, model) if model else None


FOUND = _find_ollama()
pytestmark = [
    pytest.mark.ollama,
    pytest.mark.skipif(FOUND is None, reason="no Ollama with a model answers at OLLAMA_HOST within 1 s"),
]


async def test_real_ollama_answers_a_chat_with_tools() -> None:
    """One real /api/chat with our tools comes back as a ModelTurn with token counts."""
    assert FOUND is not None
    model = OllamaChatModel(FOUND[0], FOUND[1], num_ctx=8192, temperature=0.0)
    try:
        turn = await model.chat(
            [{"role": "user", "content": "List the files in the current directory using a tool."}],
            [tool_schema(name) for name in TOOL_ARGS],
        )
    finally:
        await model.aclose()
    assert turn.tokens_in > 0 and turn.tokens_out > 0
    assert turn.tool_calls or turn.content.strip()


@pytest.mark.timeout(900)
async def test_real_ollama_runs_the_hello_task_through_the_executor(sandbox: Any, tmp_path: Path) -> None:
    """The hello task runs end to end on a real model: turns, tool calls, trajectory and a verification verdict."""
    assert FOUND is not None
    searchable(tmp_path)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    task = TaskAssign(
        task_id="real-1", description=TASK, generation=1, assigned_at=0, max_verification_retries=1,
        verification_steps=[{"type": "test_passes", "target": "python3 test_hello.py"}],
        complexity={"effective_tier": "standard"},
    )  # fmt: skip
    events = RecordingSink()
    executor = OllamaExecutor(sandbox, host=FOUND[0], default_model=FOUND[1], num_ctx=16384, temperature=0.0)
    outcome = await executor.run(task, workspace, events)
    details = outcome.details
    print({k: v for k, v in details.items() if k not in ("verification_report", "verification_history")})
    assert details["termination_reason"] != "model_error", outcome.error
    assert details["iterations_used"] >= 1 and details["tokens_in"] > 0
    assert details["verification_status"] in ("verified", "partial_pass", "failed")
    assert load_trajectory(trajectory_path(workspace))["summary"]["termination_reason"] == details["termination_reason"]
    assert events.of("model_turn")
