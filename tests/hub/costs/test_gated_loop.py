"""Budgets reach the agent loop: a real in-process sidecar (runner, connection, Ollama executor, sandbox) against a
real hub and the fake Ollama server; every model call is reserved, reported, and refused once the task's budget is
spent, which ends the loop with the task's reason ``budget``."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import Script, ScriptedCall, Turn
from shared.protocol import BudgetGrant, BudgetRequest, ErrorReply, HubMessage, Identify, UsageReport
from sidecar.agent.agentic import OllamaExecutor
from sidecar.agent.budget_gate import BudgetGate
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
LIMITS = LimitSettings(heartbeat_interval_s=1, pong_timeout_s=2, connect_timeout_s=5, backoff_initial_s=0.05,
                       backoff_max_s=0.2, state_report_timeout_s=5, task_timeout_s=30, budget_timeout_s=5)  # fmt: skip


@pytest.fixture(scope="module")
def sandbox():
    return asyncio.run(probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000), kill_grace_s=1.0))


class SentLink(HubLink):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[object] = []

    async def send(self, message) -> bool:  # type: ignore[no-untyped-def]
        self.sent.append(message)
        return await super().send(message)


@asynccontextmanager
async def sidecar(hub, tmp_path: Path, sandbox, ollama_url: str) -> AsyncIterator[SentLink]:
    """The sidecar's parts wired as in ``sidecar.main.run_sidecar``: the gate on the model executor, and the hub's
    budget_grant (and errors about budget frames) dispatched to it."""
    for directory in [tmp_path, *tmp_path.parents]:  # the sandbox uid walks the real path to the workspace
        if directory == Path(tempfile.gettempdir()) or directory.stat().st_uid != os.geteuid():
            break
        directory.chmod(directory.stat().st_mode | 0o111)
    agent_id = f"sc-{uuid.uuid4().hex[:6]}"
    home = tmp_path / agent_id
    token = await hub.mint_token(agent_id)
    link = SentLink()
    gate = BudgetGate(link, LIMITS.budget_timeout_s, output_tokens=100, pause_retry_s=0.05)
    ollama = OllamaExecutor(sandbox, host=ollama_url, default_model=MODEL, num_ctx=1_000_000)
    ollama.gate = gate
    runner = Runner(
        state=LocalState.load(home / "state"),
        registry=ExecutorRegistry({"shell": ShellExecutor(sandbox, default_timeout_s=30), "ollama": ollama}),
        workspaces=Workspaces(home / "ws", WorkspaceSettings(cleanup="never")), sandbox=sandbox, link=link,
        limits=LIMITS,
    )  # fmt: skip

    async def on_message(message: HubMessage) -> None:
        if isinstance(message, BudgetGrant):
            gate.on_grant(message)
        elif not (isinstance(message, ErrorReply) and gate.on_error(message)):
            await runner.handle(message)

    hello = Identify(type="identify", agent_id=agent_id, token=token, client_type="sidecar",
                     executors=["ollama", "shell"], models=[MODEL])  # fmt: skip
    async with asyncio.TaskGroup() as tg:
        connection = serve_hub(hub.ws_url, hello, LIMITS, link, on_message, runner.on_connected)
        tasks = [tg.create_task(runner.run()), tg.create_task(connection)]
        try:
            yield link
        finally:
            for task in tasks:
                task.cancel()


def look(prompt_tokens: int) -> Turn:
    return Turn(tool_calls=[ScriptedCall(name="list_directory", arguments={"path": "."})], prompt_tokens=prompt_tokens,
                eval_tokens=10)  # fmt: skip


async def test_task_token_budget_stops_the_loop_with_reason_budget(hub, sandbox, tmp_path) -> None:
    """The first call is granted and reported (100 010 tokens, past the task's 50 000); the second is refused, so the
    loop ends as token_budget and the task is dead-lettered with reason budget (not retried: more of the same
    would be refused); the ledger holds the one call that ran."""
    r = await hub.http.put("/api/costs/budgets", json={"task": {"tokens": 50_000}})
    assert r.status_code == 200
    script = Script(name="budget", turns=[look(100_000), look(100), Turn(content="done")])
    async with FakeOllamaServer(script, model=MODEL) as server, sidecar(hub, tmp_path, sandbox, server.url) as link:
        tid = await hub.submit(description="look around", executor="ollama", max_retries=1)
        await wait_tasks(hub, [tid], {"dead_letter"})
    task = await hub.task(tid)
    assert task["dead_letter_reason"] == "budget", task
    requests = [m for m in link.sent if isinstance(m, BudgetRequest)]
    reports = [m for m in link.sent if isinstance(m, UsageReport)]
    assert len(requests) == 2 and len(reports) == 1 and len(server.bodies("/api/chat")) == 1
    assert requests[0].est_tokens_out == 100 and requests[0].est_tokens_in > 0 and requests[0].model == MODEL
    assert reports[0].usage.tokens_in == 100_000 and reports[0].grant_id is not None
    by_task = {g["key"]: g for g in (await hub.http.get("/api/costs", params={"group_by": "task"})).json()["groups"]}
    assert by_task[tid]["calls"] == 1 and by_task[tid]["tokens"] == 100_010 and by_task[tid]["usd"] == 0
    counters = (await hub.http.get("/api/costs/budgets")).json()["counters"]
    assert counters == {**counters, "granted": 1, "refused": 1, "overruns": 1, "outstanding": 0}


async def test_calls_within_budget_are_each_reported_and_not_charged_again(hub, sandbox, tmp_path) -> None:
    """Without a limit every call is granted and reported; the task's final usage is not charged a second time."""
    script = Script(name="ok", turns=[look(100), Turn(content="nothing to do", prompt_tokens=200, eval_tokens=20)])
    async with FakeOllamaServer(script, model=MODEL) as server, sidecar(hub, tmp_path, sandbox, server.url):
        tid = await hub.submit(description="look around", executor="ollama")
        await wait_tasks(hub, [tid], {"completed"})
    body = (await hub.http.get("/api/costs", params={"group_by": "task"})).json()
    assert body["total"]["calls"] == 2 and body["total"]["tokens"] == 330 == (await hub.task(tid))["tokens_used"]


async def test_a_paused_budget_holds_the_call_until_the_limit_is_raised(hub, sandbox, tmp_path) -> None:
    """A call refused by a pausing budget (budget_paused) is asked again; once an admin raises the limit it runs and
    the task completes (stop would have ended it)."""
    r = await hub.http.put("/api/costs/budgets", json={"task": {"tokens": 10, "action": "pause"}})
    assert r.status_code == 200
    check = ScriptedCall(name="run_command", arguments={"command": "true"})
    done = ScriptedCall(name="finish", arguments={"summary": "checked"})
    script = Script(name="pause", turns=[Turn(tool_calls=[check, done], prompt_tokens=20, eval_tokens=2)])
    async with FakeOllamaServer(script, model=MODEL) as server, sidecar(hub, tmp_path, sandbox, server.url) as link:
        tid = await hub.submit(description="look around", executor="ollama")
        budgets = hub.hub.costs.budgets
        async with asyncio.timeout(10):
            while budgets.n_refused < 2:  # refused, and asked again
                await asyncio.sleep(0.02)
        assert not server.bodies("/api/chat") and str(hub.hub.queue.tasks[tid].status) in ("assigned", "working")
        assert (await hub.http.put("/api/costs/budgets", json={"task": {"tokens": 100_000}})).status_code == 200
        await wait_tasks(hub, [tid], {"completed"})
    requests = [m for m in link.sent if isinstance(m, BudgetRequest)]
    assert len(requests) == budgets.n_refused + 1 and len(server.bodies("/api/chat")) == 1


async def test_gate_fails_closed_without_an_answer_and_runs_ungated_on_an_older_hub() -> None:
    """No budget_grant in time refuses the call (budget_timeout); a hub that answers unknown_message_type for
    budget_request lets the waiting call and every later one run ungated, reporting nothing."""
    gate = BudgetGate(HubLink(), timeout_s=0.05)  # never connected: the request cannot even be sent
    refused = await gate.request("t", "m", "ollama", 10, 10)
    assert (refused.granted, refused.reason, gate.n_timeouts) == (False, "budget_timeout", 1)
    gate.timeout_s = 10
    waiting = asyncio.create_task(gate.request("t", "m", "ollama", 10, 10))
    while not gate._pending:
        await asyncio.sleep(0)
    assert gate.on_error(ErrorReply(error="unknown_message_type", message_type="budget_request"))
    assert (await waiting).granted and not gate.supported
    assert (await gate.request("t", "m", "ollama", 10, 10)).reason == "ungated"
    assert not gate.on_error(ErrorReply(error="task_complete_failed: not_found", message_type=None))
