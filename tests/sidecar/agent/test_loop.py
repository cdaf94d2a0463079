"""The ReAct loop against the real fake Ollama server, the real ollama client, real tools and the real sandbox.

One test per termination reason, the parser's failure modes end to end, and the conversation's exact shape.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import TEST_HELLO_PY, Script, ScriptedCall, Turn, hello_world_script, slow_script
from sidecar.agent.loop import (
    ITERATIONS_BY_TIER,
    REPEAT_TEXT,
    Guardrails,
    LoopResult,
    ReactLoop,
    TerminationReason,
)
from sidecar.agent.ollama import OllamaChatModel
from sidecar.agent.parser import ParseStats
from sidecar.agent.tools import ToolRegistry
from sidecar.agent.trajectory import Trajectory, load_trajectory, trajectory_path
from sidecar.sandbox.probe import probe_sandbox

TASK = "create hello.py printing hello and a test for it"
MODEL = "fake-coder:latest"


class RecordingSink:
    """An EventSink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def emit(self, event_type: str, text: str, **fields: Any) -> None:
        self.events.append({"event_type": event_type, "text": text, **fields})

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event_type"] == event_type]


def searchable(tmp_path: Path) -> None:
    # pytest makes its temp root 0700; without bwrap's mounts the sandbox uid walks the real path to the workspace.
    for directory in [tmp_path, *tmp_path.parents]:
        if directory == Path(tempfile.gettempdir()) or directory.stat().st_uid != os.geteuid():
            break
        directory.chmod(directory.stat().st_mode | 0o111)


@pytest.fixture(scope="module")
def sandbox():
    # A uid range of our own: a run's cleanup kills every process of its uid, so never share one with a sidecar.
    return asyncio.run(probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000), kill_grace_s=1.0))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    searchable(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
async def fake_ollama() -> AsyncIterator[Callable[[Script | str], Awaitable[FakeOllamaServer]]]:
    """Factory: start a fake Ollama serving ``script`` on port 0; all are stopped after the test."""
    servers: list[FakeOllamaServer] = []

    async def start(script: Script | str) -> FakeOllamaServer:
        server = FakeOllamaServer(script, model=MODEL)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


class LoopRun:
    """A loop wired to a fake server and a workspace, plus what it produced."""

    def __init__(self, server: FakeOllamaServer, workspace: Path, sandbox: Any, **model_options: Any) -> None:
        self.server, self.workspace = server, workspace
        self.model = OllamaChatModel(server.url, MODEL, retry_delay_s=0.01, **model_options)
        self.events = RecordingSink()
        self.stats = ParseStats()
        tools = ToolRegistry(workspace, sandbox)
        self.trajectory = Trajectory(workspace, task_id="t-1", provider="ollama", model=MODEL, tools=[])
        self.trajectory.messages.append({"role": "system", "content": "You are a coding agent."})
        self.loop = ReactLoop(self.model, tools, self.events, self.trajectory, self.stats)

    async def run(self, guardrails: Guardrails | None = None, prompt: str = TASK) -> LoopResult:
        try:
            return await self.loop.run(prompt, guardrails or Guardrails())
        finally:
            await self.model.aclose()

    def chat_bodies(self) -> list[dict[str, Any]]:
        return self.server.bodies("/api/chat")

    def observations(self) -> list[dict[str, Any]]:
        return [step for step in self.trajectory.steps if step["kind"] == "observation"]


@pytest.fixture
def make_run(workspace: Path, sandbox: Any) -> Callable[..., LoopRun]:
    return lambda server, **options: LoopRun(server, workspace, sandbox, **options)


def write(path: str, content: str = "x\n") -> Turn:
    return Turn(tool_calls=[ScriptedCall(name="write_file", arguments={"path": path, "content": content})])


# --- the conversation ----------------------------------------------------------------------------------------------


async def test_hello_world_completes_and_writes_the_files(fake_ollama, make_run, workspace: Path) -> None:
    """The good trajectory ends completed, with both files written and the test run inside the sandbox."""
    run = make_run(await fake_ollama("hello_world"))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED
    assert result.final_answer.startswith("Created hello.py")
    assert (workspace / "hello.py").read_text() == 'print("hello")\n'
    assert (workspace / "test_hello.py").read_text() == TEST_HELLO_PY
    assert [o["success"] for o in run.observations()] == [True, True, True]
    assert "PASS" in run.observations()[2]["output"]
    assert run.loop.iterations == 4 and (run.loop.tokens_in, run.loop.tokens_out) == (4 * 42, 4 * 7)


async def test_assistant_message_goes_back_exactly_as_received_with_one_tool_message_per_call(
    fake_ollama, make_run
) -> None:
    """Each request carries the previous reply unchanged (thinking and tool_calls) and one tool message per call."""
    two_calls = Turn(tool_calls=[ScriptedCall(name="write_file", arguments={"path": "a.txt", "content": "a"}),
                                 ScriptedCall(name="write_file", arguments={"path": "b.txt", "content": "b"})],
                     thinking="two files at once")  # fmt: skip
    run = make_run(await fake_ollama(Script(name="two", turns=[two_calls, Turn(content="ok")])))
    assert (await run.run()).termination_reason is TerminationReason.COMPLETED
    second = run.chat_bodies()[1]["messages"]
    assistant, *tools = second[-3:]
    received = run.trajectory.messages[2]["provider_message"]
    assert assistant == received
    assert assistant["thinking"] == "two files at once"
    assert [c["function"]["arguments"]["path"] for c in assistant["tool_calls"]] == ["a.txt", "b.txt"]
    assert [(t["role"], t["tool_name"]) for t in tools] == [("tool", "write_file"), ("tool", "write_file")]
    assert all(t["content"].startswith("created") for t in tools)
    assert run.chat_bodies()[0]["options"]["num_ctx"] == 32768 and run.chat_bodies()[0]["stream"] is True


async def test_tool_call_events_are_emitted_with_their_fields(fake_ollama, make_run) -> None:
    """Every call produces one tool_call event with name, summaries, success, duration and iteration."""
    run = make_run(await fake_ollama("hello_world"))
    await run.run()
    events = run.events.of("tool_call")
    assert [e["tool_name"] for e in events] == ["write_file", "write_file", "run_command"]
    assert [e["iteration"] for e in events] == [1, 2, 3]
    assert events[0]["args_summary"] == "write_file path=hello.py content=<15 chars>"
    assert events[2]["result_summary"] == "OK run_command: exit code: 0"
    assert all(e["success"] is True and isinstance(e["duration_ms"], int) for e in events)
    turns = run.events.of("model_turn")
    assert [t["tool_calls"] for t in turns] == [["write_file"], ["write_file"], ["run_command"], []]


async def test_token_progress_is_batched_and_ends_at_the_true_total(fake_ollama, make_run) -> None:
    """token events carry a rising tokens_so_far, at most a couple per turn, the last equal to the usage total."""
    run = make_run(await fake_ollama("hello_world"))
    await run.run()
    counts = [e["tokens_so_far"] for e in run.events.of("token")]
    assert counts == sorted(counts) and counts[-1] == run.loop.tokens_out == 28
    assert len(counts) <= 2 * run.loop.iterations


async def test_sandbox_denied_call_is_an_observation_and_the_loop_continues(
    fake_ollama, make_run, workspace: Path
) -> None:
    """A write outside the workspace is refused as an observation; the model goes on and completes."""
    script = Script(name="escape", turns=[write("../escape.py"), *hello_world_script().turns])
    run = make_run(await fake_ollama(script))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED
    first = run.events.of("tool_call")[0]
    assert first["success"] is False and "sandbox_denied" in first["result_summary"]
    assert not (workspace.parent / "escape.py").exists()
    assert (workspace / "hello.py").exists()


async def test_trajectory_is_saved_with_every_turn_and_observation(fake_ollama, make_run, workspace: Path) -> None:
    """The JSON record holds the whole conversation, each turn's request length and each observation."""
    run = make_run(await fake_ollama("hello_world"))
    await run.run()
    data = load_trajectory(trajectory_path(workspace))
    kinds = [step["kind"] for step in data["steps"]]
    assert kinds.count("model_turn") == 4 and kinds.count("observation") == 3 and kinds[-1] == "stop"
    assert data["summary"]["termination_reason"] == "completed"
    turn = [step for step in data["steps"] if step["kind"] == "model_turn"][1]
    assert data["messages"][turn["message_index"]]["tool_calls"][0]["arguments"]["path"] == "test_hello.py"
    assert turn["request_messages"] == len(run.chat_bodies()[1]["messages"])
    assert (workspace / ".agentcom" / ".gitignore").read_text() == "*\n"


# --- one test per termination reason -------------------------------------------------------------------------------


async def test_max_iterations_by_tier(fake_ollama, make_run, workspace: Path) -> None:
    """A trivial task gets 5 model calls; the sixth is never made and the files written so far stay."""
    script = Script(name="many", turns=[write(f"f{i}.txt") for i in range(1, 8)])
    run = make_run(await fake_ollama(script))
    result = await run.run(Guardrails(max_iterations=ITERATIONS_BY_TIER["trivial"]))
    assert result.termination_reason is TerminationReason.MAX_ITERATIONS
    assert len(run.chat_bodies()) == 5 and result.iterations == 5
    assert sorted(p.name for p in workspace.glob("f*.txt")) == [f"f{i}.txt" for i in range(1, 6)]
    assert ITERATIONS_BY_TIER == {"trivial": 5, "standard": 10, "complex": 20}


async def test_repeated_call_is_blocked_once_then_stops_the_loop(fake_ollama, make_run) -> None:
    """The second identical call gets a corrective observation instead of running; the third ends the attempt."""
    run = make_run(await fake_ollama("repeated_call"))
    result = await run.run()
    assert result.termination_reason is TerminationReason.REPETITION
    assert [e["success"] for e in run.events.of("tool_call")] == [True, False, False]
    assert [o["error"]["code"] if o["error"] else None for o in run.observations()] == [
        None, "repeated_call", "repeated_call"]  # fmt: skip
    third_request = run.chat_bodies()[2]["messages"]
    assert third_request[-1]["content"].startswith("ERROR [repeated_call]: " + REPEAT_TEXT.split("(")[0])
    assert len(run.chat_bodies()) == 3


async def test_no_progress_stops_a_loop_that_learns_nothing(fake_ollama, make_run) -> None:
    """Alternating a listing and a failing read (never blocked as identical) stops after 4 idle steps."""
    ls = Turn(tool_calls=[ScriptedCall(name="list_directory", arguments={"path": "."})])
    cat = Turn(tool_calls=[ScriptedCall(name="read_file", arguments={"path": "missing.py"})])
    run = make_run(await fake_ollama(Script(name="idle", turns=[ls, cat] * 5)))
    result = await run.run()
    assert result.termination_reason is TerminationReason.NO_PROGRESS
    assert run.loop.iterations == 5  # 1 useful listing, then 4 steps that learn nothing
    assert all(e["tool_name"] in ("list_directory", "read_file") for e in run.events.of("tool_call"))


async def test_token_budget_stops_before_the_next_call(fake_ollama, make_run, workspace: Path) -> None:
    """With 49 tokens per turn and a budget of 100, the fourth call is not made; the written files stay."""
    run = make_run(await fake_ollama("hello_world"))
    result = await run.run(Guardrails(token_budget=100))
    assert result.termination_reason is TerminationReason.TOKEN_BUDGET
    assert len(run.chat_bodies()) == 3 and "147 of 100" in result.detail
    assert (workspace / "test_hello.py").exists()


async def test_wall_clock_cancels_a_slow_model_call(fake_ollama, make_run, workspace: Path) -> None:
    """A reply still streaming at the deadline is abandoned; the first turn's file is kept."""
    run = make_run(await fake_ollama(slow_script(delay_s=1.0)))
    started = time.monotonic()
    result = await run.run(Guardrails(deadline=started + 1.5))
    assert result.termination_reason is TerminationReason.WALL_CLOCK
    assert 1.45 < time.monotonic() - started < 2.4
    assert (workspace / "hello.py").exists() and not (workspace / "test_hello.py").exists()


async def test_three_format_errors_in_a_row_stop_the_loop(fake_ollama, make_run) -> None:
    """Three empty replies each get a corrective user message, and the third ends the attempt."""
    run = make_run(await fake_ollama(Script(name="mute", turns=[Turn(failure="empty")] * 5)))
    result = await run.run()
    assert result.termination_reason is TerminationReason.FORMAT_ERRORS
    assert len(run.chat_bodies()) == 3
    corrections = [m for m in run.trajectory.messages if m["role"] == "user"][1:]
    assert len(corrections) == 3 and corrections[0]["content"].startswith("Your reply was empty.")
    assert run.stats.as_dict()[MODEL]["format_error.empty"] == 3


async def test_context_overflow_when_the_prompt_fills_num_ctx(fake_ollama, make_run, workspace: Path) -> None:
    """A reply whose prompt used 95 % of num_ctx means Ollama truncated the history: the loop stops."""
    script = Script(name="full", turns=[write("hello.py"), Turn(content="done", prompt_tokens=4000)])
    run = make_run(await fake_ollama(script), num_ctx=4096)
    result = await run.run()
    assert result.termination_reason is TerminationReason.CONTEXT_OVERFLOW
    assert "4000 of num_ctx=4096" in result.detail and (workspace / "hello.py").exists()


async def test_context_overflow_before_sending_an_oversized_request(fake_ollama, make_run) -> None:
    """A request estimated larger than num_ctx is not sent at all."""
    run = make_run(await fake_ollama("hello_world"), num_ctx=64)
    result = await run.run(prompt=TASK * 40)
    assert result.termination_reason is TerminationReason.CONTEXT_OVERFLOW
    assert run.chat_bodies() == []


async def test_http_500_is_a_model_error_without_retries(fake_ollama, make_run) -> None:
    """Ollama's 500 "error parsing tool call" ends the attempt as model_error when no retry is allowed."""
    run = make_run(await fake_ollama("http_500"), max_retries=0)
    result = await run.run()
    assert result.termination_reason is TerminationReason.MODEL_ERROR
    assert "error parsing tool call" in result.detail
    assert [s["kind"] for s in run.trajectory.steps] == ["model_error", "stop"]


@pytest.mark.parametrize("script", ["http_500", "malformed_response"])
async def test_one_retry_recovers_from_a_transient_failure(fake_ollama, make_run, script: str) -> None:
    """With one retry, a 500 or a truncated body costs one extra request and the run completes."""
    run = make_run(await fake_ollama(script), max_retries=1)
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED
    assert len(run.chat_bodies()) == 5


async def test_a_retried_model_call_is_a_live_event(fake_ollama, make_run) -> None:
    """A model call that fails and is sent again is streamed as model_retry (and kept in the trajectory)."""
    run = make_run(await fake_ollama("http_500"), max_retries=1)
    assert (await run.run()).termination_reason is TerminationReason.COMPLETED
    retries = run.events.of("model_retry")
    assert [(e["error"], e["retry"], e["iteration"]) for e in retries] == [("ModelError", 1, 1)]
    assert "error parsing tool call" in retries[0]["text"] and retries[0]["delay_s"] > 0
    assert run.events.of("model_error") == []
    assert [s["kind"] for s in run.trajectory.steps].count("model_retry") == 1


async def test_a_failed_model_call_is_a_live_event(fake_ollama, make_run) -> None:
    """A model call that fails for good is streamed as model_error before the attempt ends."""
    run = make_run(await fake_ollama("http_500"), max_retries=0)
    assert (await run.run()).termination_reason is TerminationReason.MODEL_ERROR
    errors = run.events.of("model_error")
    assert [(e["error"], e["retryable"], e["iteration"]) for e in errors] == [("ModelError", True, 1)]
    assert "error parsing tool call" in errors[0]["text"] and run.events.of("model_retry") == []


async def test_unreachable_server_is_a_model_error(make_run) -> None:
    """A refused connection ends the attempt as model_error (ModelUnavailable)."""
    server = FakeOllamaServer("hello_world", model=MODEL)
    await server.start()
    await server.stop()  # the port is now closed
    run = make_run(server, max_retries=0)
    result = await run.run()
    assert result.termination_reason is TerminationReason.MODEL_ERROR
    assert result.detail.startswith("ModelUnavailable")


async def test_cancellation_is_recorded_and_propagates(fake_ollama, make_run, workspace: Path) -> None:
    """Cancelling the run mid-call re-raises CancelledError and leaves a trajectory ending in cancelled."""
    server = await fake_ollama(slow_script(delay_s=1.0))
    run = make_run(server)
    task = asyncio.create_task(run.run())
    async with asyncio.timeout(5):
        while not server.bodies("/api/chat"):
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    data = load_trajectory(trajectory_path(workspace))
    assert data["summary"]["termination_reason"] == "cancelled"


# --- the parser's failure modes, end to end ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "path", "format_errors"),
    [
        ("hermes", "hermes", 0),
        ("qwen_xml", "qwen_xml", 0),
        ("bare_json", "bare_json", 0),
        ("think_call", "hermes", 0),
        ("empty_reply", "native", 1),
        ("malformed_args", "native", 1),
    ],
)
async def test_parser_failure_modes_still_complete_the_task(
    fake_ollama, make_run, workspace: Path, script: str, path: str, format_errors: int
) -> None:
    """Calls written in content, XML calls, calls after <think>, empty and broken replies all end in the files."""
    run = make_run(await fake_ollama(script))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED
    assert (workspace / "hello.py").read_text() == 'print("hello")\n'
    assert (workspace / "test_hello.py").exists()
    stats = run.stats.as_dict()[MODEL]
    assert stats[path] >= 1 and stats["format_error"] == format_errors
    commands = [o["arguments"].get("command") for o in run.observations() if o["tool"] == "run_command"]
    assert commands == ["python3 test_hello.py"]  # the rm -rf ~ inside <think> never ran


async def test_malformed_call_gets_a_corrective_message_naming_the_problem(fake_ollama, make_run) -> None:
    """Broken JSON in a <tool_call> is answered with a user message explaining how to fix it."""
    run = make_run(await fake_ollama("malformed_args"))
    await run.run()
    second = run.chat_bodies()[1]["messages"]
    assert second[-1]["role"] == "user" and "is not valid JSON" in second[-1]["content"]
    assert run.events.of("format_error")[0]["reason"] == "malformed_json"


async def test_native_arguments_sent_as_a_json_string_are_used(fake_ollama, make_run, workspace: Path) -> None:
    """A native call whose arguments arrive as a JSON string (OpenAI style) runs, and goes back as an object; a
    broken one is answered with an error observation and the loop goes on to complete."""
    good = ScriptedCall(name="write_file", raw_arguments='{"path": "a.txt", "content": "from a string"}')
    broken = ScriptedCall(name="write_file", raw_arguments='{"path": "b.txt", "content": ')
    script = Script(name="string_args", turns=[Turn(tool_calls=[good]), Turn(tool_calls=[broken]),
                                               Turn(content="wrote a.txt")])  # fmt: skip
    run = make_run(await fake_ollama(script))
    result = await run.run()
    assert result.termination_reason is TerminationReason.COMPLETED and result.final_answer == "wrote a.txt"
    assert (workspace / "a.txt").read_text() == "from a string" and not (workspace / "b.txt").exists()
    second, third = run.chat_bodies()[1]["messages"], run.chat_bodies()[2]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["arguments"] == {"path": "a.txt", "content": "from a string"}
    assert third[-2]["tool_calls"][0]["function"]["arguments"] == {}
    assert third[-1]["role"] == "tool" and "is not valid JSON" in third[-1]["content"]
    assert [e["reason"] for e in run.events.of("format_error")] == ["malformed_json"]
    assert [o["success"] for o in run.observations()] == [True]
