"""A model task whose agent loop stops on a guardrail dead-letters under that guardrail's code: the runner reports
``task_failed`` with the reason, and the hub records it (not ``agent_error``). Real hub (in-process), real runner and
connection, the Ollama executor against the shipped fake Ollama server, the real sandbox."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import Script, ScriptedCall, Turn, repeated_call_script
from shared.protocol import Identify, TaskFailed
from sidecar.agent.agentic import AgenticConfig, OllamaExecutor
from sidecar.agent.loop import TerminationReason
from sidecar.runtime.connection import serve_hub
from sidecar.runtime.executor import STOP_CODES, ExecutorRegistry
from sidecar.runtime.runner import Runner
from sidecar.runtime.state import LocalState
from sidecar.runtime.workspace import Workspaces
from sidecar.settings import WorkspaceSettings
from tests.conftest import HubHandle, wait_tasks
from tests.sidecar.conftest import searchable
from tests.sidecar.runtime.test_runner import LIMITS, RecordingLink

MODEL = "fake-coder:latest"
NEVER_THERE = [{"type": "file_exists", "target": "never-written.txt"}]
"""A check no scripted run passes, so the run's outcome is failed and its reason is the loop's ending."""


def many_writes(n: int) -> Script:
    """``n`` different successful writes in a row: progress every step, so only max_iterations stops it."""
    return Script(
        name="many_writes",
        turns=[
            Turn(tool_calls=[ScriptedCall(name="write_file", arguments={"path": f"f{i}.txt", "content": "x"})])
            for i in range(n)
        ],
    )


async def run_to_dead_letter(
    hub: HubHandle, tmp_path: Path, sandbox: object, script: Script, **task: object
) -> tuple[dict, list[object]]:
    """Run one model task through a real runner until the hub dead-letters it; the task and the frames sent."""
    searchable(tmp_path)
    agent_id = f"sc-{uuid.uuid4().hex[:6]}"
    token = await hub.mint_token(agent_id)
    link = RecordingLink()
    async with FakeOllamaServer(script, model=MODEL) as ollama:
        executor = OllamaExecutor(
            sandbox,
            host=ollama.url,
            default_model=MODEL,
            retry_delay_s=0.01,
            config=AgenticConfig(default_timeout_s=60),
        )
        runner = Runner(
            state=LocalState.load(tmp_path / "state"),
            registry=ExecutorRegistry({"ollama": executor}),
            workspaces=Workspaces(tmp_path / "ws", WorkspaceSettings(cleanup="never")),
            sandbox=sandbox,
            link=link,
            limits=LIMITS,
        )
        hello = Identify(
            type="identify", agent_id=agent_id, token=token, client_type="sidecar", executors=["ollama"], models=[MODEL]
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(runner.run()),
                tg.create_task(serve_hub(hub.ws_url, hello, LIMITS, link, runner.handle, runner.on_connected)),
            ]
            try:
                tid = await hub.submit(executor="ollama", max_retries=1, verification_steps=NEVER_THERE, **task)
                await wait_tasks(hub, [tid], {"dead_letter", "completed"}, timeout_s=60)
            finally:
                for t in tasks:
                    t.cancel()
    return await hub.task(tid), link.sent


@pytest.mark.parametrize(
    ("script", "task", "code"),
    [
        (repeated_call_script(4), {"description": "list the files"}, "repetition"),
        (many_writes(8), {"description": "write files", "complexity_tier": "trivial"}, "max_iterations"),
    ],
    ids=["repetition", "max_iterations"],
)
async def test_a_guardrail_stop_is_the_dead_letter_reason(
    hub: HubHandle, tmp_path: Path, sandbox: object, script: Script, task: dict, code: str
) -> None:
    """The loop stopped by repetition (the same call three times) or max_iterations (5 model calls on a trivial
    task) reaches the hub as task_failed with that code, and the API shows it as the dead-letter reason."""
    found, sent = await run_to_dead_letter(hub, tmp_path, sandbox, script, **task)
    (failed,) = [m for m in sent if isinstance(m, TaskFailed)]
    assert failed.reason == code
    assert failed.result is not None and failed.result.termination_reason == code
    assert failed.verification_report is not None and failed.verification_report.verdict() == "failed"
    assert (found["status"], found["dead_letter_reason"]) == ("dead_letter", code)
    assert found["last_error"].startswith(f"{code}: verification fail")
    events = (await hub.http.get(f"/api/tasks/{found['id']}/events")).json()["events"]
    (ended,) = [e for e in events if e["kind"] == "task_ended"]
    assert (ended["then"], ended["reason"], ended["attempt"]) == ("dead_letter", code, 1)
    assert ended["usage"]["model"] == MODEL and ended["usage"]["tokens_in"] > 0


def test_every_stop_but_completion_has_a_code() -> None:
    """Every ending of the loop except completing and cancellation is reported with a guardrail code."""
    assert {r.value for r in TerminationReason} - set(STOP_CODES) == {"completed", "cancelled"}
    assert STOP_CODES[TerminationReason.TOKEN_BUDGET] == "budget"
