"""The sidecar's task lifecycle against the real hub (in-process) with the real sandbox.

Covers record → accept → execute → verify → outbox → ack, results lost in flight, recovery after a restart
(continue / abort, idempotent or not), cancellation, and busy rejection.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import Script, ScriptedCall, Turn
from shared.protocol import Identify, Message, StateReport, TaskAssign, TaskComplete, TaskProgress, TaskRejected
from sidecar.agent.agentic import OllamaExecutor
from sidecar.runtime.connection import HubLink, serve_hub
from sidecar.runtime.executor import ExecutorRegistry
from sidecar.runtime.runner import Runner
from sidecar.runtime.shell import ShellExecutor
from sidecar.runtime.state import LocalState
from sidecar.runtime.workspace import Workspaces
from sidecar.sandbox.probe import probe_sandbox
from sidecar.settings import LimitSettings, WorkspaceSettings
from tests.conftest import wait_tasks

MODEL = "fake-coder:latest"
LIMITS = LimitSettings(
    heartbeat_interval_s=1,
    pong_timeout_s=2,
    connect_timeout_s=5,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    state_report_timeout_s=5,
    task_timeout_s=30,
)


@pytest.fixture(scope="module")
def sandbox():
    return asyncio.run(probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000)))


def sandboxed_processes(uid_base: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["uids", "cmdline", "status"]):
        uids = proc.info["uids"]
        if uids is not None and uid_base <= uids.real < uid_base + 1000:
            found.append(proc)
    return found


@pytest.fixture(autouse=True)
async def no_leftover_processes(sandbox):
    """After each test every command started in the sandbox is gone (killed commands leave nothing behind)."""
    yield
    for _ in range(200):
        if not sandboxed_processes(sandbox.uid_base):
            break
        await asyncio.sleep(0.05)
    left = [(p.pid, p.info) for p in sandboxed_processes(sandbox.uid_base)]
    assert not left, f"sandboxed processes left behind: {left}"
    await asyncio.sleep(0.1)  # let the loop see the pipes' EOF before it closes


class RecordingLink(HubLink):
    """A HubLink that records what was sent and can lose the next result in flight (a connection dying)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Message] = []
        self.lose_next_result = False

    async def send(self, message: Message) -> bool:
        if isinstance(message, TaskComplete) and self.lose_next_result:
            self.lose_next_result = False
            return False
        self.sent.append(message)
        return await super().send(message)


class Sidecar:
    """The sidecar's parts, wired as in ``sidecar.main`` but in-process, so tests can stop and restart them."""

    def __init__(self, hub, agent_id: str, token: str, home: Path, sandbox, executors: dict | None = None) -> None:
        self.hub, self.agent_id, self.token, self.home, self.sandbox = hub, agent_id, token, home, sandbox
        self.executors = executors or {}
        self.link = RecordingLink()
        self.runner = self._runner()

    def _runner(self) -> Runner:
        shell = ShellExecutor(self.sandbox, default_timeout_s=30, batch_interval_s=0.05)
        return Runner(
            state=LocalState.load(self.home / "state"),
            registry=ExecutorRegistry({"shell": shell, **self.executors}),
            workspaces=Workspaces(self.home / "ws", WorkspaceSettings(cleanup="never")),
            sandbox=self.sandbox,
            link=self.link,
            limits=LIMITS,
        )

    @asynccontextmanager
    async def running(self, wrap: Any = None) -> AsyncIterator[Sidecar]:
        """Run runner + connection; leaving the block stops them like a crash (state stays as it is).

        ``wrap`` may wrap each new hub connection before the runner sees it (to lose frames in flight).
        """
        self.link = RecordingLink()
        self.runner = self._runner()
        hello = Identify(
            type="identify",
            agent_id=self.agent_id,
            token=self.token,
            client_type="sidecar",
            executors=sorted({"shell", *self.executors}),  # as sidecar.main: what its registry holds
            models=[MODEL] if "ollama" in self.executors else [],
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.runner.run()),
                tg.create_task(
                    serve_hub(
                        self.hub.ws_url,
                        hello,
                        LIMITS,
                        self.link,
                        self.runner.handle,
                        (lambda conn: self.runner.on_connected(wrap(conn))) if wrap else self.runner.on_connected,
                    )
                ),
            ]
            try:
                yield self
            finally:
                for task in tasks:
                    task.cancel()

    def sent_types(self) -> list[str]:
        return [m.type for m in self.link.sent]


@pytest.fixture
async def make_sidecar(hub, tmp_path: Path, sandbox):
    async def make(agent_id: str | None = None, executors: dict | None = None) -> Sidecar:
        agent_id = agent_id or f"sc-{uuid.uuid4().hex[:6]}"
        return Sidecar(hub, agent_id, await hub.mint_token(agent_id), tmp_path / agent_id, sandbox, executors)

    return make


async def submit_shell(hub, command: str, **body: Any) -> str:
    metadata = {"shell_command": command, **body.pop("metadata", {})}
    return await hub.submit(description=f"run {command}", executor="shell", metadata=metadata, **body)


async def wait_until(predicate, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


def completed_events(task: dict) -> int:
    return sum(1 for h in task["history"] if h["event"] == "completed")


async def test_task_runs_verifies_and_is_acknowledged(hub, make_sidecar) -> None:
    """A shell task is recorded, accepted, run, verified, reported once and removed from the outbox on ack."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(
            hub, "echo 42 > answer.txt", verification_steps=[{"type": "file_exists", "target": "answer.txt"}]
        )
        await wait_tasks(hub, [tid], {"completed"})
        await wait_until(lambda: not sc.runner.state.outbox)
    task = await hub.task(tid)
    assert task["result"]["status"] == "success" and task["result"]["exit_code"] == 0
    assert (task["outcome"], task["result"]["outcome"], task["result"]["verification_status"]) == ("verified",) * 3
    assert task["verification_report"]["status"] == "pass" and task["verification_report"]["outcome"] == "verified"
    assert task["verification_report"]["checks"][0]["name"] == "file_exists answer.txt"
    assert completed_events(task) == 1
    assert sc.sent_types()[:2] == ["task_accepted", "task_progress"]
    assert sc.runner.state.active is None


async def test_tokens_used_is_the_sum_of_the_model_calls(hub, make_sidecar, sandbox) -> None:
    """A model task's task_complete carries tokens_used (prompt plus completion tokens of every model call) and the
    hub stores it; a shell task, with no model call, reports none."""
    look = Turn(tool_calls=[ScriptedCall(name="list_directory", arguments={"path": "."})], prompt_tokens=100,
                eval_tokens=10)  # fmt: skip
    script = Script(name="tokens", turns=[look, Turn(content="nothing to do", prompt_tokens=200, eval_tokens=20)])
    async with FakeOllamaServer(script, model=MODEL) as server:
        sc = await make_sidecar(executors={"ollama": OllamaExecutor(sandbox, host=server.url, default_model=MODEL)})
        async with sc.running():
            model_task = await hub.submit(description="look around", executor="ollama")
            await wait_tasks(hub, [model_task], {"completed"})
            shell_task = await submit_shell(hub, "true")
            await wait_tasks(hub, [shell_task], {"completed"})
    sent = {m.task_id: m for m in sc.link.sent if isinstance(m, TaskComplete)}
    assert sent[model_task].tokens_used == 330 and (await hub.task(model_task))["tokens_used"] == 330
    assert sent[shell_task].tokens_used is None


async def test_model_retries_reach_the_hub_like_tool_calls(hub, make_sidecar, sandbox) -> None:
    """A retried model call is streamed to the hub as a model_retry event and lands in the task's trajectory."""
    async with FakeOllamaServer("http_500", model=MODEL) as server:
        ollama = OllamaExecutor(sandbox, host=server.url, default_model=MODEL, max_retries=1, retry_delay_s=0.01)
        sc = await make_sidecar(executors={"ollama": ollama})
        async with sc.running():
            tid = await hub.submit(description="write hello.py", executor="ollama")
            await wait_tasks(hub, [tid], {"completed"})
    sent = [m.execution_event["event_type"] for m in sc.link.sent if isinstance(m, TaskProgress)]
    assert sent.count("model_retry") == 1 and "tool_call" in sent

    async def stored() -> list[str]:
        return [e["kind"] for e in (await hub.http.get(f"/api/tasks/{tid}/trajectory")).json()["events"]]

    async with asyncio.timeout(10):
        while "model_retry" not in (kinds := await stored()):
            await asyncio.sleep(0.05)
    assert kinds.count("model_retry") == 1


async def test_failed_command_is_reported_as_failed(hub, make_sidecar) -> None:
    """A non-zero exit reaches the hub as result.status failed with the exit code; it is never a success."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(hub, "echo broken >&2; exit 7", max_retries=1)
        await wait_tasks(hub, [tid], {"dead_letter"})
    task = await hub.task(tid)
    results = [m.result for m in sc.link.sent if isinstance(m, TaskComplete)]
    assert results and results[0].status == "failed" and results[0].exit_code == 7
    assert (results[0].outcome, results[0].verification_status) == ("failed", "failed")
    assert completed_events(task) == 0


@pytest.mark.parametrize("fields", [{}, {"skip_verification": True, "verification_steps": [
    {"type": "command_succeeds", "target": "false"}]}], ids=["no steps", "skipped"])  # fmt: skip
async def test_a_task_without_checks_is_unverified_end_to_end(hub, make_sidecar, fields: dict[str, Any]) -> None:
    """No verification steps (or skip_verification): the sidecar says unverified and the hub records unverified."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(hub, "echo hi", **fields)
        await wait_tasks(hub, [tid], {"completed"})
    task = await hub.task(tid)
    report = task["verification_report"]
    assert (task["outcome"], task["result"]["outcome"], report["outcome"]) == ("unverified",) * 3
    assert (report["checks"], report.get("skipped", False)) == ([], bool(fields))


async def test_verification_out_of_time_fails_the_attempt(hub, make_sidecar) -> None:
    """A check still running at the verification time limit is a timeout: the outcome is failed, the attempt ends
    as verification_failed (never a success)."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(
            hub,
            "echo hi",
            max_retries=1,
            verification_timeout_ms=1000,
            verification_steps=[{"type": "command_succeeds", "target": "sleep 30"}],
        )
        await wait_tasks(hub, [tid], {"dead_letter"})
    task = await hub.task(tid)
    assert (task["dead_letter_reason"], task["outcome"]) == ("verification_failed", None)
    assert task["verification_report"]["outcome"] == "failed"
    assert [c["status"] for c in task["verification_report"]["checks"]] == ["timeout"]
    assert completed_events(task) == 0


async def test_result_lost_in_flight_is_resent_after_reconnect(hub, make_sidecar) -> None:
    """A result whose send was lost stays in the outbox and is delivered, exactly once, after a restart."""
    sc = await make_sidecar()
    async with sc.running():
        sc.link.lose_next_result = True
        tid = await submit_shell(hub, "echo hi")
        await wait_until(lambda: len(sc.runner.state.outbox) == 1)
        assert (await hub.task(tid))["status"] == "working"
    async with sc.running():
        await wait_tasks(hub, [tid], {"completed"})
        await wait_until(lambda: not sc.runner.state.outbox)
    task = await hub.task(tid)
    assert completed_events(task) == 1 and task["retry_count"] == 0


async def wait_started(sc: Sidecar, task_id: str, generation: int = 1) -> Path:
    """Wait until the command has really started (it writes ``started``) and return its workspace."""
    workspace = sc.home / "ws" / f"{task_id}-g{generation}"
    await wait_until(lambda: (workspace / "started").exists())
    return workspace


async def test_interrupted_task_is_failed_as_sidecar_restarted_and_retried(hub, make_sidecar) -> None:
    """A non-idempotent task interrupted by a restart is reported failed (sidecar_restarted) and retried."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(hub, "echo x >> started; sleep 2; echo done > out.txt")
        first = await wait_started(sc, tid)
    assert LocalState.load(sc.home / "state").active is not None, "the crash left the task recorded"
    async with sc.running():
        await wait_tasks(hub, [tid], {"completed"}, timeout_s=30)
    task = await hub.task(tid)
    assert task["retry_count"] == 1
    assert "sidecar_restarted" in str(task["history"]) or "restarted" in str(task["history"])
    assert completed_events(task) == 1
    assert (first / "started").read_text() == "x\n", "the interrupted attempt was not run again"
    assert task["generation"] > 1


async def test_idempotent_task_is_rerun_after_restart(hub, make_sidecar) -> None:
    """With metadata.idempotent the interrupted task is run again in place and completes in the same attempt."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(
            hub, "echo x >> started; sleep 2; echo again > runs.txt", metadata={"idempotent": True}
        )
        workspace = await wait_started(sc, tid)
    async with sc.running():
        await wait_tasks(hub, [tid], {"completed"}, timeout_s=30)
    task = await hub.task(tid)
    assert task["retry_count"] == 0 and completed_events(task) == 1
    assert (workspace / "started").read_text() == "x\nx\n", "re-ran once more in the same workspace"
    assert (workspace / "runs.txt").read_text() == "again\n"


class LosingConnection:
    """A hub connection that loses the first ``n`` state_reports in flight (sent, never delivered)."""

    def __init__(self, conn: Any, n: int) -> None:
        self._conn, self._n = conn, n
        self.lost: list[Message] = []
        self.delivered: list[Message] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def send(self, message: Message) -> None:
        if isinstance(message, StateReport):
            if self._n > 0:
                self._n -= 1
                self.lost.append(message)
                return
            self.delivered.append(message)
        await self._conn.send(message)


async def test_unanswered_state_report_is_asked_again_on_the_same_connection(hub, make_sidecar, sandbox) -> None:
    """A state_report lost in flight is sent again after the report timeout, and the hub's answer is obeyed."""
    sc = await make_sidecar()
    stale = TaskAssign(
        task_id="not-a-real-task", description="d", generation=3, assigned_at=1, metadata={"shell_command": "true"}
    )
    LocalState.load(sc.home / "state").record_active(stale, status="running")
    wrapped: list[LosingConnection] = []

    def lose_first(conn: Any) -> LosingConnection:
        wrapped.append(LosingConnection(conn, n=1))
        return wrapped[-1]

    async with sc.running(wrap=lose_first):
        await wait_until(lambda: sc.runner.state.active is None, timeout_s=LIMITS.state_report_timeout_s * 3)
    assert len(wrapped) == 1, "answered on the same connection, no reconnect needed"
    assert [m.type for m in wrapped[0].lost] == ["state_report"]
    assert [m.type for m in wrapped[0].delivered] == ["state_report"]
    assert sc.runner.aborted == 1


async def test_task_the_hub_gave_away_is_aborted(hub, make_sidecar, sandbox) -> None:
    """An active task the hub no longer assigns to us is dropped after state_report → abort, with no result."""
    sc = await make_sidecar()
    stale = TaskAssign(
        task_id="not-a-real-task", description="d", generation=3, assigned_at=1, metadata={"shell_command": "true"}
    )
    LocalState.load(sc.home / "state").record_active(stale, status="running")
    async with sc.running():
        await wait_until(lambda: sc.runner.state.active is None)
        assert sc.runner.aborted == 1
    assert not [m for m in sc.link.sent if isinstance(m, TaskComplete)]
    assert LocalState.load(sc.home / "state").active is None


async def test_cancel_kills_the_command_and_reports_nothing(hub, make_sidecar) -> None:
    """task_cancelled stops the running command at once; no result is sent for it."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(hub, "echo x > started; sleep 30")
        await wait_started(sc, tid)
        r = await hub.http.post(f"/api/tasks/{tid}/cancel")
        assert r.status_code == 200, r.text
        await wait_until(lambda: sc.runner.state.active is None, timeout_s=10)
        assert sc.runner.aborted == 1
    assert (await hub.task(tid))["status"] == "cancelled"
    assert not [m for m in sc.link.sent if isinstance(m, TaskComplete)]


async def test_second_assignment_while_busy_is_rejected(hub, make_sidecar) -> None:
    """A task_assign that arrives while a task is active is answered with task_rejected busy."""
    sc = await make_sidecar()
    async with sc.running():
        tid = await submit_shell(hub, "sleep 1")
        await wait_until(lambda: sc.runner.state.active is not None)
        other = TaskAssign(task_id="other", description="d", generation=1, assigned_at=1)
        await sc.runner.handle(other)
        await wait_tasks(hub, [tid], {"completed"})
    rejected = [m for m in sc.link.sent if isinstance(m, TaskRejected)]
    assert [(m.task_id, m.reason) for m in rejected] == [("other", "busy")]
