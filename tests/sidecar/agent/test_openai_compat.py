"""``OpenAIChatModel`` against the fake OpenAI-compatible server: wire shapes, parser chain, errors, the API key, and
the ``openai`` executor end to end through the real sidecar runner and a real hub."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.fakes.openai_server import FakeOpenAIServer
from shared.fakes.script import HELLO_CALLS, Script, ScriptedCall, Turn, hermes_script
from shared.protocol import TaskAssign, TaskComplete
from sidecar.agent.agentic import OpenAIExecutor
from sidecar.agent.loop import Guardrails, ReactLoop, TerminationReason
from sidecar.agent.models import ModelUnavailable
from sidecar.agent.openai_compat import OpenAIChatModel, v1_url
from sidecar.agent.parser import ParseStats
from sidecar.agent.tools import ToolRegistry
from sidecar.agent.trajectory import Trajectory
from tests.conftest import wait_tasks
from tests.sidecar.agent.test_loop import TASK, RecordingSink, workspace  # noqa: F401
from tests.sidecar.runtime.test_runner import make_sidecar, no_leftover_processes, sandbox  # noqa: F401

MODEL = "fake-coder"
KEY = "sk-test-secret-4711"


async def run_loop(server: FakeOpenAIServer, workspace, sandbox, **options: Any) -> tuple[ReactLoop, Any]:  # noqa: F811
    model = OpenAIChatModel(server.url, MODEL, retry_delay_s=0.01, **options)
    trajectory = Trajectory(workspace, task_id="t", provider="openai", model=MODEL, tools=[])
    trajectory.messages.append({"role": "system", "content": "You are a coding agent."})
    loop = ReactLoop(model, ToolRegistry(workspace, sandbox), RecordingSink(), trajectory, ParseStats())
    try:
        return loop, await loop.run(TASK, Guardrails())
    finally:
        await model.aclose()


def test_base_url_is_normalised_to_the_v1_root() -> None:
    """A host, a root URL and a /v1 URL all give the same API root."""
    assert v1_url("127.0.0.1:8080") == v1_url("http://127.0.0.1:8080/") == v1_url("http://127.0.0.1:8080/v1/")
    assert v1_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/v1"


async def test_native_calls_with_string_arguments_write_the_files(sandbox, workspace) -> None:  # noqa: F811
    """tool_calls with JSON-string arguments are run; the assistant message goes back unchanged with one tool message
    per call id; usage becomes the token counts."""
    async with FakeOpenAIServer("hello_world", model=MODEL) as server:
        loop, result = await run_loop(server, workspace, sandbox)
    assert result.termination_reason is TerminationReason.COMPLETED
    assert (workspace / "hello.py").read_text() == 'print("hello")\n'
    second = server.bodies("/v1/chat/completions")[1]
    assistant, tool = second["messages"][-2:]
    assert isinstance(assistant["tool_calls"][0]["function"]["arguments"], str)
    assert tool == {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": tool["content"]}
    assert second["tools"][0]["type"] == "function" and second["stream"] is False
    assert (loop.tokens_in, loop.tokens_out) == (4 * 42, 4 * 7)
    assert loop.parse_stats.as_dict()[MODEL]["native"] == 3


async def test_calls_written_in_content_go_through_the_parser_chain(sandbox, workspace) -> None:  # noqa: F811
    """<tool_call> blocks in the content are found by the hermes path; their results go back as user messages."""
    async with FakeOpenAIServer(hermes_script(), model=MODEL) as server:
        loop, result = await run_loop(server, workspace, sandbox)
    assert result.termination_reason is TerminationReason.COMPLETED and (workspace / "test_hello.py").is_file()
    assert loop.parse_stats.as_dict()[MODEL]["hermes"] == 3
    second = server.bodies("/v1/chat/completions")[1]["messages"]
    assert second[-1]["role"] == "user" and second[-1]["content"].startswith("Result of write_file:")


async def test_broken_argument_json_gets_a_corrective_message(sandbox, workspace) -> None:  # noqa: F811
    """Arguments that are not valid JSON become a malformed_json format error on that call's tool message."""
    broken = Turn(tool_calls=[ScriptedCall(name="write_file", raw_arguments='{"path": "a.py", "content": "x}')])
    script = Script(name="broken", turns=[broken, *[Turn(tool_calls=[c]) for c in HELLO_CALLS]])
    async with FakeOpenAIServer(script, model=MODEL) as server:
        await run_loop(server, workspace, sandbox)
    answer = server.bodies("/v1/chat/completions")[1]["messages"][-1]
    assert answer["role"] == "tool" and "is not valid JSON" in answer["content"]


@pytest.mark.parametrize("script", ["http_500", "malformed_response"])
async def test_one_retry_recovers_from_a_transient_failure(sandbox, workspace, script: str) -> None:  # noqa: F811
    """A 500 or a truncated body is retried once and the run completes."""
    async with FakeOpenAIServer(script, model=MODEL) as server:
        _, result = await run_loop(server, workspace, sandbox, max_retries=1)
    assert result.termination_reason is TerminationReason.COMPLETED


async def test_api_key_is_sent_as_bearer_and_never_shown(sandbox, workspace) -> None:  # noqa: F811
    """The key goes in Authorization; a wrong key is ModelUnavailable, and neither repr nor the error holds it."""
    async with FakeOpenAIServer("hello_world", model=MODEL, api_key=KEY) as server:
        model = OpenAIChatModel(server.url, MODEL, api_key=KEY)
        turn = await model.chat([{"role": "user", "content": "hi"}], [])
        await model.aclose()
        wrong = OpenAIChatModel(server.url, MODEL, api_key="sk-wrong-key", max_retries=0)
        with pytest.raises(ModelUnavailable) as raised:
            await wrong.chat([{"role": "user", "content": "hi"}], [])
        await wrong.aclose()
    assert turn.tool_calls and server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert "401" in str(raised.value) and "sk-wrong-key" not in str(raised.value) + repr(wrong)
    assert KEY not in repr(model)


async def test_unknown_model_is_unavailable(sandbox, workspace) -> None:  # noqa: F811
    """A model the server does not serve is ModelUnavailable (404), not retried."""
    async with FakeOpenAIServer("hello_world", model=MODEL) as server:
        model = OpenAIChatModel(server.url, "no-such-model")
        with pytest.raises(ModelUnavailable, match="404"):
            await model.chat([{"role": "user", "content": "hi"}], [])
        await model.aclose()
    assert len(server.bodies("/v1/chat/completions")) == 1


async def test_openai_executor_end_to_end_through_the_runner(hub, make_sidecar, sandbox) -> None:  # noqa: F811
    """A task for the openai executor reaches a sidecar that offers it, runs against the server and is verified;
    the hub stores the tokens used."""
    finish = Turn(tool_calls=[ScriptedCall(name="finish", arguments={"summary": "hello.py written and tested"})])
    script = Script(name="e2e", turns=[*[Turn(tool_calls=[c]) for c in HELLO_CALLS], finish])
    async with FakeOpenAIServer(script, model=MODEL) as server:
        executor = OpenAIExecutor(sandbox, base_url=server.url, default_model=MODEL, retry_delay_s=0.01)
        sc = await make_sidecar(executors={"openai": executor})
        async with sc.running():
            check = {"type": "test_passes", "target": "python3 test_hello.py"}
            tid = await hub.submit(
                description="write hello.py and a test", executor="openai", verification_steps=[check]
            )
            await wait_tasks(hub, [tid], {"completed"})
    sent = next(m for m in sc.link.sent if isinstance(m, TaskComplete) and m.task_id == tid)
    assert sent.tokens_used == 4 * (42 + 7)
    stored = await hub.task(tid)
    assert stored["tokens_used"] == 4 * (42 + 7)
    assert "prompt_tokens_reevaluated" in json.dumps(stored)


def test_openai_url_enables_the_openai_executor_and_identify_lists_it(sandbox) -> None:  # noqa: F811
    """With openai_url set the registry holds an openai executor (and no ollama one), so identify's executors say so;
    the API key is not in its repr."""
    from sidecar.main import build_identify, build_registry
    from sidecar.settings import SidecarSettings

    settings = SidecarSettings(agent_id="a1", token="t", hub_url="http://127.0.0.1:1", openai_url="http://127.0.0.1:2",
                               openai_api_key=KEY, openai_model="qwen")  # fmt: skip
    registry = build_registry(settings, sandbox)
    names = registry.names
    assert names == ["openai", "shell"]
    assert build_identify(settings, "bwrap", names).executors == ["openai", "shell"]
    executor = registry.pick(TaskAssign(task_id="t", description="d", generation=1, assigned_at=0, executor="openai"))
    assert isinstance(executor, OpenAIExecutor) and executor.default_model == "qwen" and KEY not in repr(executor)
