"""Model executors end to end: fake Ollama/Anthropic servers, the real clients, sandbox, tools and verification."""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.fakes.anthropic_server import FakeAnthropicServer
from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import TEST_HELLO_PY, Script, ScriptedCall, Turn, slow_script
from shared.payloads import VerificationReport
from shared.protocol import TaskAssign
from sidecar.agent.agentic import AgenticConfig, ClaudeExecutor, OllamaExecutor, final_outcome, task_prompt
from sidecar.agent.loop import TerminationReason
from sidecar.agent.trajectory import load_trajectory, script_from_trajectory, trajectory_path
from sidecar.sandbox.probe import probe_sandbox
from tests.sidecar.agent.test_loop import MODEL, TASK, RecordingSink, searchable


@pytest.fixture(scope="module")
def sandbox():
    # A uid range of our own: a run's cleanup kills every process of its uid, so never share one with a sidecar.
    return asyncio.run(probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000), kill_grace_s=1.0))


HELLO_CHECKS = [{"type": "test_passes", "target": "python3 test_hello.py"}]
TWO_CHECKS = [{"type": "file_exists", "target": "hello.py"}, *HELLO_CHECKS]


def make_task(**fields: Any) -> TaskAssign:
    fields = {"task_id": "task-1", "description": TASK, "generation": 1, "assigned_at": 0,
              "verification_steps": HELLO_CHECKS, **fields}  # fmt: skip
    return TaskAssign(**fields)


@pytest.fixture
def make_workspace(tmp_path: Path) -> Callable[[str], Path]:
    searchable(tmp_path)

    def make(name: str = "ws") -> Path:
        ws = tmp_path / name
        ws.mkdir()
        return ws

    return make


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Factory: start a fake server (``FakeOllamaServer`` or ``FakeAnthropicServer``) on port 0."""
    started: list[Any] = []

    async def start(cls: type, script: Script | str) -> Any:
        server = cls(script, model=MODEL) if cls is FakeOllamaServer else cls(script)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


def ollama_executor(server: FakeOllamaServer, sandbox: Any, **options: Any) -> OllamaExecutor:
    options.setdefault("retry_delay_s", 0.01)
    return OllamaExecutor(sandbox, host=server.url, default_model=MODEL, **options)


def calls_of(workspace: Path) -> list[tuple[str, dict[str, Any]]]:
    steps = load_trajectory(trajectory_path(workspace))["steps"]
    return [(s["tool"], s["arguments"]) for s in steps if s["kind"] == "observation"]


# --- the hello task ------------------------------------------------------------------------------------------------


async def test_ollama_executor_hello_world_is_verified(servers, sandbox, make_workspace) -> None:
    """The hello task runs through the loop, leaves both files, and test_passes makes it verified."""
    ws, events = make_workspace(), RecordingSink()
    outcome = await ollama_executor(await servers(FakeOllamaServer, "hello_world"), sandbox).run(
        make_task(), ws, events
    )
    assert outcome.status == "success" and outcome.output.startswith("Created hello.py")
    assert (ws / "hello.py").read_text() == 'print("hello")\n' and (ws / "test_hello.py").read_text() == TEST_HELLO_PY
    d = outcome.details
    assert d["outcome"] == "verified" and d["verification_report"].status == "pass"
    assert d["verification_report"].outcome == "verified"
    assert d["verification_report"].checks[0].target == "python3 test_hello.py"
    assert d["termination_reason"] == "completed" and d["iterations_used"] == 4
    usage = d["usage"]
    assert (usage.model, usage.provider, usage.tokens_in, usage.tokens_out, usage.cost_usd) == (
        MODEL,
        "ollama",
        168,
        28,
        0.0,
    )
    assert usage.equivalent_cost_usd == pytest.approx(168 * 3e-6 + 28 * 15e-6)
    assert d["parse_stats"][MODEL]["native"] == 3 and len(d["verification_history"]) == 1
    assert (ws / d["trajectory_path"]).is_file()
    assert [e["tool_name"] for e in events.of("tool_call")] == ["write_file", "write_file", "run_command"]
    assert [e["event_type"] for e in events.events][-2:] == ["verification", "agent_finished"]


async def test_claude_executor_hello_world_is_verified_and_priced(servers, sandbox, make_workspace) -> None:
    """The same task against the fake Anthropic API is verified and costs 168 in + 28 out at Sonnet prices."""
    server = await servers(FakeAnthropicServer, "hello_world")
    executor = ClaudeExecutor(sandbox, api_key="test-key", base_url=server.url, max_retries=0)
    ws, events = make_workspace(), RecordingSink()
    outcome = await executor.run(make_task(routing_decision={"target_type": "claude", "selected_model": "claude"}),
                                 ws, events)  # fmt: skip
    d = outcome.details
    usage = d["usage"]
    assert outcome.status == "success" and d["outcome"] == "verified"
    assert (usage.model, usage.provider, usage.tokens_in, usage.tokens_out) == ("claude-sonnet-4-6", "claude", 168, 28)
    assert usage.cost_usd == pytest.approx(168 * 3 / 1e6 + 28 * 15 / 1e6)
    assert len(events.of("tool_call")) == 3 and (ws / "hello.py").exists()
    second = server.bodies("/v1/messages")[1]["messages"]
    assert second[-1]["content"][0]["type"] == "tool_result"


async def test_claude_executor_uses_a_routed_claude_model_and_its_price(servers, sandbox, make_workspace) -> None:
    """A routed claude-opus-4-6 is used and priced at 5/25 USD per million tokens."""
    server = await servers(FakeAnthropicServer, "hello_world")
    executor = ClaudeExecutor(sandbox, api_key="test-key", base_url=server.url, max_retries=0)
    outcome = await executor.run(make_task(routing_decision={"selected_model": "claude-opus-4-6"}), make_workspace(),
                                 RecordingSink())  # fmt: skip
    assert outcome.details["usage"].model == "claude-opus-4-6"
    assert outcome.details["usage"].cost_usd == pytest.approx(168 * 5 / 1e6 + 28 * 25 / 1e6)
    assert server.bodies("/v1/messages")[0]["model"] == "claude-opus-4-6"


# --- build -> verify -> fix ----------------------------------------------------------------------------------------

BROKEN_THEN_FIXED = Script(name="fix", turns=[
    Turn(tool_calls=[ScriptedCall(name="write_file", arguments={"path": "hello.py", "content": 'print("helo")\n'})]),
    Turn(tool_calls=[ScriptedCall(name="write_file", arguments={"path": "test_hello.py", "content": TEST_HELLO_PY})]),
    Turn(content="Done: hello.py and its test are written."),
    Turn(tool_calls=[ScriptedCall(name="edit_file", arguments={"path": "hello.py", "old": "helo", "new": "hello"})]),
    Turn(content="Fixed the typo; the test passes now."),
])  # fmt: skip


async def test_failed_check_gets_a_corrective_turn_that_fixes_it(servers, sandbox, make_workspace) -> None:
    """The model's "done" is not believed: the failing test goes back to it, and its fix is then verified."""
    server = await servers(FakeOllamaServer, BROKEN_THEN_FIXED)
    ws = make_workspace()
    outcome = await ollama_executor(server, sandbox).run(make_task(max_verification_retries=1), ws, RecordingSink())
    d = outcome.details
    assert d["outcome"] == "verified" and d["verification_attempts"] == 2
    assert [r.outcome for r in d["verification_history"]] == ["failed", "verified"]
    assert [r.run_number for r in d["verification_history"]] == [1, 2]
    retry = server.bodies("/api/chat")[3]["messages"][-1]
    assert retry["role"] == "user" and retry["content"].startswith("VERIFICATION RETRY 1/1")
    assert "FAIL: expected 'hello'" in retry["content"]
    assert (ws / "hello.py").read_text() == 'print("hello")\n' and d["iterations_used"] == 5


async def test_checks_still_failing_after_the_retries_give_partial_pass(servers, sandbox, make_workspace) -> None:
    """With retries spent and one of two checks passing, the verdict is partial_pass (work kept, not verified)."""
    script = Script(name="stubborn", turns=BROKEN_THEN_FIXED.turns[:3])
    outcome = await ollama_executor(await servers(FakeOllamaServer, script), sandbox).run(
        make_task(verification_steps=TWO_CHECKS, max_verification_retries=2), make_workspace(), RecordingSink()
    )
    d = outcome.details
    assert outcome.status == "success" and d["outcome"] == "partial_pass"
    assert d["verification_attempts"] == 3 and d["verification_report"].summary.passed == 1


async def test_wall_clock_exit_keeps_partial_work_and_gives_partial_pass(servers, sandbox, make_workspace) -> None:
    """Out of time after the first file: verification still runs on the workspace and one check passes."""
    server = await servers(FakeOllamaServer, slow_script(delay_s=1.0))
    config = AgenticConfig(verification_reserve=0.2)  # 1875 ms task -> the model may work for 1.5 s
    ws = make_workspace()
    outcome = await ollama_executor(server, sandbox, config=config).run(
        make_task(verification_steps=TWO_CHECKS, metadata={"timeout_ms": 1875}, max_verification_retries=3), ws,
        RecordingSink(),
    )  # fmt: skip
    d = outcome.details
    assert d["termination_reason"] == "wall_clock" and d["outcome"] == "partial_pass"
    assert d["verification_attempts"] == 1  # no retry once the time is up
    assert (ws / "hello.py").exists() and outcome.status == "success"


async def test_token_budget_exit_keeps_partial_work_and_gives_partial_pass(servers, sandbox, make_workspace) -> None:
    """metadata.token_budget stops the loop after one turn; hello.py is kept and judged."""
    ws = make_workspace()
    outcome = await ollama_executor(await servers(FakeOllamaServer, "hello_world"), sandbox).run(
        make_task(verification_steps=TWO_CHECKS, metadata={"token_budget": 40}), ws, RecordingSink()
    )
    d = outcome.details
    assert (d["termination_reason"], d["outcome"], d["iterations_used"]) == (
        "token_budget",
        "partial_pass",
        1,
    )
    assert (ws / "hello.py").exists()


async def test_model_error_with_nothing_done_is_failed(servers, sandbox, make_workspace) -> None:
    """An HTTP 500 with no retries ends as model_error; the checks still run, none pass, the outcome is failed."""
    server = await servers(FakeOllamaServer, "http_500")
    outcome = await ollama_executor(server, sandbox, max_retries=0).run(make_task(), make_workspace(), RecordingSink())
    assert outcome.status == "failed" and outcome.reason == "model_error"
    assert outcome.details["outcome"] == "failed" and "error parsing tool call" in outcome.error
    assert outcome.details["verification_report"].status == "fail"


async def test_no_checks_and_no_work_is_failed_not_verified(servers, sandbox, make_workspace) -> None:
    """No checks is unverified only for a completed loop or changed work: three empty replies and no change fail."""
    script = Script(name="mute", turns=[Turn(failure="empty")] * 3)
    outcome = await ollama_executor(await servers(FakeOllamaServer, script), sandbox).run(
        make_task(verification_steps=[]), make_workspace(), RecordingSink()
    )
    report = outcome.details["verification_report"]
    assert (report.outcome, report.checks, report.status) == ("unverified", [], None)
    assert (outcome.status, outcome.reason, outcome.details["outcome"]) == (
        "failed",
        "format_errors",
        "failed",
    )


@pytest.mark.parametrize(
    ("report", "ending", "changed", "expected"),
    [
        ({"status": "pass", "checks": [{"status": "pass"}]}, TerminationReason.COMPLETED, True, "verified"),
        ({"status": "pass", "checks": [{"status": "pass"}]}, TerminationReason.TOKEN_BUDGET, True, "verified"),
        ({"outcome": "verified"}, TerminationReason.COMPLETED, True, "unverified"),
        ({"outcome": "unverified"}, TerminationReason.COMPLETED, False, "unverified"),
        ({"outcome": "unverified", "skipped": True}, TerminationReason.WALL_CLOCK, True, "unverified"),
        ({"outcome": "unverified"}, TerminationReason.MODEL_ERROR, False, "failed"),
        ({"status": "auto_pass"}, TerminationReason.COMPLETED, False, "unverified"),
        (
            {"outcome": "failed", "checks": [{"name": "verification", "status": "timeout"}]},
            TerminationReason.COMPLETED,
            True,
            "failed",
        ),
        (
            {"status": "fail", "checks": [{"status": "pass"}, {"status": "fail"}]},
            TerminationReason.COMPLETED,
            True,
            "partial_pass",
        ),
        (
            {"status": "error", "checks": [{"status": "pass"}, {"status": "error"}]},
            TerminationReason.COMPLETED,
            True,
            "partial_pass",
        ),
        (
            {"status": "fail", "checks": [{"status": "fail"}, {"status": "timeout"}]},
            TerminationReason.COMPLETED,
            True,
            "failed",
        ),
    ],
)
def test_final_outcome_table(report: dict, ending: TerminationReason, changed: bool, expected: str) -> None:
    """verified needs every check passing, some passing is partial_pass; with no check the run is unverified when
    the loop completed or changed the workspace, and failed when it stopped having done nothing."""
    assert final_outcome(VerificationReport.model_validate(report), ending, changed) == expected


async def test_trajectory_does_not_dirty_a_git_workspace(servers, sandbox, make_workspace) -> None:
    """.agentcom/ ignores itself, so git_clean still passes with the trajectory written into the workspace."""
    ws = make_workspace()
    (ws / "README.md").write_text("hi\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", *args], cwd=ws, check=True)
    script = Script(name="nothing", turns=[Turn(content="Nothing needs changing.")])
    outcome = await ollama_executor(await servers(FakeOllamaServer, script), sandbox).run(
        make_task(verification_steps=[{"type": "git_clean", "target": ""}]), ws, RecordingSink()
    )
    assert outcome.details["outcome"] == "verified", outcome.details["verification_report"]
    assert trajectory_path(ws).is_file()


# --- replay ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recorded", ["hello_world", "hermes", "malformed_args"])
async def test_replaying_a_trajectory_reproduces_the_same_tool_calls(
    servers, sandbox, make_workspace, recorded: str
) -> None:
    """A recorded run turned into a fake-server script drives the loop through exactly the same calls again."""
    first_ws, second_ws = make_workspace("first"), make_workspace("second")
    first = await ollama_executor(await servers(FakeOllamaServer, recorded), sandbox).run(
        make_task(), first_ws, RecordingSink()
    )
    script = script_from_trajectory(trajectory_path(first_ws))
    replay = await ollama_executor(await servers(FakeOllamaServer, script), sandbox).run(
        make_task(), second_ws, RecordingSink()
    )
    assert calls_of(second_ws) == calls_of(first_ws) and len(calls_of(first_ws)) == 3
    assert replay.details["parse_stats"] == first.details["parse_stats"]
    assert replay.details["outcome"] == first.details["outcome"] == "verified"


# --- wiring details --------------------------------------------------------------------------------------------------


async def test_tier_sets_the_iteration_limit(servers, sandbox, make_workspace) -> None:
    """A trivial task gets 5 iterations, a complex one 20."""
    server = await servers(FakeOllamaServer, "hello_world")
    for tier, limit in (("trivial", 5), ("complex", 20)):
        events = RecordingSink()
        await ollama_executor(server, sandbox).run(make_task(complexity={"effective_tier": tier}),
                                                   make_workspace(tier), events)  # fmt: skip
        assert events.of("agent_started")[0]["max_iterations"] == limit


async def test_no_model_anywhere_is_a_clear_failure(sandbox, make_workspace) -> None:
    """Without a routed model or a default, the task fails as invalid_task before any request."""
    outcome = await OllamaExecutor(sandbox).run(make_task(), make_workspace(), RecordingSink())
    assert (outcome.status, outcome.reason) == ("failed", "invalid_task")


def test_task_prompt_lists_criteria_hints_and_checks() -> None:
    """The first user message carries the description, success criteria, file hints and the checks that will run."""
    text = task_prompt(make_task(success_criteria=["prints hello"], file_hints=[{"path": "hello.py", "reason": "new"}],
                                 repo="acme/app", branch="main"))  # fmt: skip
    assert TASK in text and "- prints hello" in text and "- hello.py: new" in text
    assert "- test_passes: `python3 test_hello.py`" in text and "Repository: acme/app (branch main)" in text


def test_agentic_executors_are_idempotent(sandbox) -> None:
    """A re-run after a restart is safe: the agent only touches its own workspace."""
    assert OllamaExecutor(sandbox).is_idempotent(make_task())
    assert ClaudeExecutor(sandbox, api_key="k").is_idempotent(make_task())
