"""ShellExecutor through the real sandbox: output streaming, exit codes, timeouts, cancellation, secrets."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from shared.protocol import TaskAssign
from sidecar.runtime.executor import ExecutorRegistry, executor_name, task_timeout_s
from sidecar.runtime.shell import ShellExecutor
from sidecar.sandbox.probe import probe_sandbox


class Events:
    """Collects execution events with their arrival time."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def emit(self, event_type: str, text: str, **fields: Any) -> None:
        self.items.append({"event_type": event_type, "text": text, "at": time.monotonic(), **fields})

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.items if e["event_type"] == event_type]

    def output(self, stream: str = "stdout") -> str:
        return "".join(e["text"] for e in self.of("output") if e["stream"] == stream)


def private_uid_base() -> int:
    """A uid range no other test process is likely to use (a run's cleanup kills every process of its uid)."""
    return 200_000 + 1000 * random.randrange(10_000)


@pytest.fixture(scope="module")
def sandbox():
    return asyncio.run(probe_sandbox(uid_base=private_uid_base()))


@pytest.fixture
def shell(sandbox) -> ShellExecutor:
    return ShellExecutor(sandbox, default_timeout_s=30, batch_interval_s=0.1)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def task(command: Any, **metadata: Any) -> TaskAssign:
    return TaskAssign(
        task_id=f"t-{uuid.uuid4().hex[:8]}",
        description="d",
        generation=1,
        assigned_at=1,
        metadata={"shell_command": command, **metadata},
    )


async def test_success_reports_output_and_exit_zero(shell: ShellExecutor, workspace: Path) -> None:
    """A command that exits 0 is a success with its stdout, and stderr is streamed separately."""
    events = Events()
    outcome = await shell.run(task("echo hello; echo oops >&2"), workspace, events)
    assert outcome.status == "success" and outcome.exit_code == 0
    assert outcome.output == "hello\n"
    assert outcome.details["stderr"] == "oops\n"
    assert events.output("stdout") == "hello\n" and events.output("stderr") == "oops\n"
    assert [e["event_type"] for e in (events.items[0], events.items[-1])] == ["command_started", "command_finished"]


@pytest.mark.parametrize(("command", "code"), [("exit 3", 3), ("false", 1), ("kill -9 $$", -9)])
async def test_failure_exit_code_is_reported_faithfully(
    shell: ShellExecutor, workspace: Path, command: str, code: int
) -> None:
    """Non-zero exits and signals are failed outcomes carrying the real exit code."""
    outcome = await shell.run(task(command), workspace, Events())
    assert outcome.status == "failed"
    assert outcome.reason == "exit_code" and outcome.exit_code == code


async def test_long_output_keeps_its_end(shell: ShellExecutor, workspace: Path) -> None:
    """Output far beyond the sandbox's cap still ends with the command's last line in the result, after a cut
    marker."""
    outcome = await shell.run(task("seq 1 200000; echo last line >&2"), workspace, Events())
    assert outcome.status == "success"
    assert outcome.output.startswith("1\n2\n3\n") and outcome.output.rstrip().endswith("\n200000")
    assert re.search(r"\n\[\.\.\. .* (cut|elided) \.\.\.\]\n", outcome.output) and outcome.details["truncated"]
    assert outcome.details["stderr"] == "last line\n"


async def test_timeout_from_metadata_kills_the_command(shell: ShellExecutor, workspace: Path) -> None:
    """metadata.timeout_ms bounds the run: a sleeping command is killed and reported as a timeout."""
    started = time.monotonic()
    outcome = await shell.run(task("sleep 30", timeout_ms=300), workspace, Events())
    assert outcome.status == "failed" and outcome.reason == "timeout"
    assert "0.3 s" in outcome.error
    assert time.monotonic() - started < 10


async def test_output_streams_while_the_command_runs(shell: ShellExecutor, workspace: Path) -> None:
    """Output events arrive as the command produces them, not only at the end."""
    events = Events()
    outcome = await shell.run(task("for i in 1 2 3; do echo line$i; sleep 0.4; done"), workspace, events)
    assert outcome.status == "success"
    outputs = events.of("output")
    assert len(outputs) >= 2
    assert events.of("command_finished")[0]["at"] - outputs[0]["at"] > 0.5, "first line was sent early"
    assert events.output() == "line1\nline2\nline3\n"


async def test_fast_output_is_batched(shell: ShellExecutor, workspace: Path) -> None:
    """Hundreds of quick lines go out in a few ~100 ms batches, not one event per chunk."""
    events = Events()
    await shell.run(task("for i in $(seq 1 500); do echo $i; done"), workspace, events)
    assert events.output().splitlines() == [str(i) for i in range(1, 501)]
    assert len(events.of("output")) <= 5


async def test_command_writes_into_its_workspace(shell: ShellExecutor, workspace: Path) -> None:
    """The workspace is the command's working directory and is writable."""
    outcome = await shell.run(task("echo 42 > answer.txt && pwd"), workspace, Events())
    assert outcome.status == "success"
    assert (workspace / "answer.txt").read_text() == "42\n"


async def test_token_does_not_reach_the_command(
    shell: ShellExecutor, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets in the sidecar's environment are not in the command's environment."""
    monkeypatch.setenv("AGENTCOM_SIDECAR_TOKEN", "tok-should-not-leak")
    outcome = await shell.run(task("env"), workspace, Events())
    assert outcome.status == "success"
    assert "tok-should-not-leak" not in outcome.output
    assert "AGENTCOM_TASK_ID=" in outcome.output


async def test_cancellation_kills_the_command(shell: ShellExecutor, workspace: Path) -> None:
    """Cancelling the run (task_cancelled) kills the running command and its children."""
    marker = f"{time.time_ns() % 10**6}.5"
    events = Events()
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(shell.run(task(f"sleep {marker} & sleep {marker}; wait"), workspace, events))
        async with asyncio.timeout(10):
            while not _sleepers(marker):
                await asyncio.sleep(0.05)
        run.cancel()
    assert run.cancelled()
    async with asyncio.timeout(10):
        while _sleepers(marker):
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("command", ["", "   ", None, 42])
async def test_missing_or_bad_command_is_a_clear_failure(shell: ShellExecutor, workspace: Path, command) -> None:
    """A task without a usable shell_command fails with reason invalid_task."""
    outcome = await shell.run(task(command), workspace, Events())
    assert outcome.status == "failed" and outcome.reason == "invalid_task"


def test_idempotent_only_when_the_task_says_so(shell: ShellExecutor) -> None:
    """Shell commands are not re-run after a restart unless metadata.idempotent is true."""
    assert shell.is_idempotent(task("true")) is False
    assert shell.is_idempotent(task("true", idempotent=True)) is True


def _assign(**fields: Any) -> TaskAssign:
    return TaskAssign(task_id="t", description="d", generation=1, assigned_at=1, **fields)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"executor": "shell"}, "shell"),
        ({"metadata": {"shell_command": "true"}}, "shell"),
        ({"routing_decision": {"target_type": "sidecar"}}, "shell"),
        ({"routing_decision": {"target_type": "ollama"}}, "ollama"),
        ({"executor": "claude", "metadata": {"shell_command": "true"}}, "claude"),
        ({}, None),
    ],
)
def test_executor_name_table(fields: dict, name: str | None) -> None:
    """task.executor wins, then metadata.shell_command, then routing_decision.target_type."""
    assert executor_name(_assign(**fields)) == name


async def test_unavailable_executor_is_a_clear_failed_outcome(shell: ShellExecutor, workspace: Path) -> None:
    """Asking for an executor this sidecar lacks yields a failed outcome that says which ones exist."""
    registry = ExecutorRegistry({"shell": shell})
    outcome = await registry.pick(_assign(executor="ollama")).run(_assign(), workspace, Events())
    assert outcome.status == "failed" and outcome.reason == "executor_unavailable"
    assert "'ollama'" in outcome.error and "shell" in outcome.error
    none = await registry.pick(_assign()).run(_assign(), workspace, Events())
    assert none.reason == "executor_unavailable" and "LLM routing" in none.error


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, 9.0),
        ({"timeout_ms": 1500}, 1.5),
        ({"timeout_ms": "x"}, 9.0),
        ({"timeout_ms": 0}, 9.0),
        ({"timeout_ms": True}, 9.0),
    ],
)
def test_task_timeout_table(metadata: dict, expected: float) -> None:
    """metadata.timeout_ms applies when it is a positive number; otherwise the settings' default."""
    assert task_timeout_s(_assign(metadata=metadata), 9.0) == expected


def _sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[:1] == ["sleep"] and marker in cmdline:
            found.append(proc)
    return found


def test_environment_is_clean() -> None:
    """Guard: this module does not leave the token variable behind for other tests."""
    assert "AGENTCOM_SIDECAR_TOKEN" not in os.environ
