"""Queued tasks no connected agent can run do not hold the hub in executing: it rests, says why, and executes again
once an agent that can run them connects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hub.autonomy.states import ALLOWED, Signals, State, decide
from hub.autonomy.stranded import ALERT_ID
from shared.agent_sim import AgentSim, Behaviour
from tests.conftest import HubHandle
from tests.hub.autonomy.conftest import WAIT_S, auto_of

Start = Callable[..., Awaitable[HubHandle]]
R, E, IM, C = State.RESTING, State.EXECUTING, State.IMPROVING, State.CONTEMPLATING
S = Signals
EXEC = ("no_agent_with_executor",)

ROWS: list[tuple[str, State, Signals, State | None, str | None]] = [
    ("stranded tasks alone: stay resting", R, S(queued_tasks=3, stranded_tasks=3, stranded_codes=EXEC), None, None),
    ("one runnable task among stranded: execute", R, S(queued_tasks=3, stranded_tasks=2), E, "work waiting"),
    ("pending goals still execute", R, S(pending_goals=1, queued_tasks=1, stranded_tasks=1), E, "work waiting"),
    (
        "executing with only stranded tasks rests, naming them",
        E,
        S(queued_tasks=3, stranded_tasks=3, stranded_codes=EXEC),
        R,
        "3 queued tasks no agent can run: no_agent_with_executor",
    ),
    (
        "a goal waiting only on stranded tasks does not hold executing",
        E,
        S(active_goals=1, stranded_goals=1, queued_tasks=2, stranded_tasks=2, stranded_codes=("a", "b")),
        R,
        "2 queued tasks no agent can run: a, b",
    ),
    (
        "another active goal holds executing",
        E,
        S(active_goals=2, stranded_goals=1, queued_tasks=1, stranded_tasks=1),
        None,
        None,
    ),  # fmt: skip
    ("running work holds executing", E, S(running_tasks=1, queued_tasks=1, stranded_tasks=1), None, None),
    ("nothing stranded: no work left", E, S(), R, "no work left"),
    (
        "stranded work does not keep improving off",
        R,
        S(scan_due=True, queued_tasks=2, stranded_tasks=2, active_goals=1, stranded_goals=1),
        IM,
        "a repository changed since its last scan",
    ),
    (
        "a runnable active goal still keeps improving off",
        R,
        S(scan_due=True, active_goals=2, stranded_goals=1),
        None,
        None,
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    ("state", "signals", "expected", "reason"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)  # fmt: skip
def test_stranded_rows(state: State, signals: Signals, expected: State | None, reason: str | None) -> None:
    """Each row: stranded tasks and goals are not work; executing rests naming them; improving is not blocked."""
    decision = decide(state, signals)
    assert (decision.to if decision else None) == expected
    assert (decision.reason if decision else None) == reason
    if decision is not None:
        assert decision.to in ALLOWED[state]


async def sim(handle: HubHandle, agent_id: str, executors: list[str], behaviour: Behaviour = "complete") -> AgentSim:
    """A real WebSocket agent saying which executors it runs."""
    token = await handle.mint_token(agent_id)
    agent = AgentSim(handle.ws_url, agent_id, token, behaviour=behaviour)
    await agent.connect(identify=False)
    await agent.send(
        {"type": "identify", "agent_id": agent_id, "token": token, "name": agent_id, "status": "idle",
         "client_type": "smoke_test", "executors": executors, "models": ["m"]}
    )  # fmt: skip
    await asyncio.wait_for(agent.identified.wait(), WAIT_S)
    return agent


async def until(handle: HubHandle, predicate: Callable[[], bool]) -> None:
    """Until ``predicate`` holds, checked again after every event on the hub's bus."""
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                await events.get()


def stranded_alert(handle: HubHandle) -> dict[str, Any] | None:
    return next((c for c in handle.hub.alerts.current()["conditions"] if c["id"] == ALERT_ID), None)


async def test_stranded_task_rests_then_runs_when_an_agent_can(start: Start) -> None:
    """A task needing an executor no agent has: the hub rests with the reason and one warning alert; an agent with
    that executor connects: executing, the task completes, resting, the alert resolved."""
    handle = await start()
    auto = auto_of(handle)
    agents = [await sim(handle, "ollama-only", ["ollama"])]
    try:
        tid = await handle.submit(description="needs a shell", executor="shell")
        await until(handle, lambda: auto.fsm.current is R and stranded_alert(handle) is not None)
        reason = "1 queued task no agent can run: no_agent_with_executor"
        assert handle.hub.queue.get(tid).waiting_reason["code"] == "no_agent_with_executor"  # type: ignore[index]
        assert stranded_alert(handle) == {
            "id": ALERT_ID, "severity": "warning", "message": reason, "acknowledged": False
        }  # fmt: skip
        rested = [h["reason"] for h in auto.fsm.history if h["from"] == "executing"]
        assert rested in ([], [reason])  # executing at most until the round said why the task waits
        state = (await handle.http.get("/api/hub/state")).json()
        assert state["fsm_state"] == "resting" and state["stranded_tasks"] == 1
        alerts = (await handle.http.get("/api/alerts")).json()
        assert alerts["status"] == "warning" and [c["id"] for c in alerts["conditions"]] == [ALERT_ID]
        with handle.hub.bus.subscribe() as events:  # later ticks stay resting and alert no more
            await auto.tick()
            await auto.tick()
            seen = [events.get_nowait() for _ in range(events.qsize())]
        assert auto.fsm.current is R and not [e for e in seen if e.get("kind") in ("alert", "hub_fsm")]

        agents.append(runner := await sim(handle, "shell-runner", ["shell"], behaviour="ignore"))
        await until(handle, lambda: auto.fsm.current is E and stranded_alert(handle) is None)  # none left stranded
        assert auto.fsm.history[-1]["reason"] == "work waiting"
        assign = await runner.wait_for(lambda m: m.get("type") == "task_assign" and m.get("task_id") == tid)
        await runner.send({"type": "task_accepted", "task_id": tid, "generation": assign["generation"]})
        await runner.finish(runner.received[0])
        await until(
            handle,
            lambda: (
                str(handle.hub.queue.get(tid).status) == "completed"
                and auto.fsm.current is R
                and stranded_alert(handle) is None
            ),
        )
        assert auto.fsm.history[-1]["reason"] == "no work left"
        assert (await handle.http.get("/api/hub/state")).json()["stranded_tasks"] == 0
        assert (await handle.http.get("/api/alerts")).json()["status"] == "ok"
    finally:
        for agent in agents:
            await agent.close()


async def test_a_task_depending_on_a_stranded_one_is_stranded(start: Start) -> None:
    """A task the connected agent could run but that depends on a stranded one is stranded too: the hub rests naming
    both codes; the alert is raised once and resolved when the tasks are cancelled."""
    handle = await start()
    auto = auto_of(handle)
    agent = await sim(handle, "ollama-only", ["ollama"])
    try:
        first = await handle.submit(description="first", executor="shell")
        second = await handle.submit(description="second", executor="ollama", depends_on=[first])
        reason = "2 queued tasks no agent can run: depends_on_stranded, no_agent_with_executor"
        await until(handle, lambda: auto.fsm.current is R and (stranded_alert(handle) or {}).get("message") == reason)
        assert handle.hub.queue.get(second).waiting_reason is None
        with handle.hub.bus.subscribe() as events:
            for tid in (second, first):
                assert (await handle.http.post(f"/api/tasks/{tid}/cancel")).status_code == 200
            await until(handle, lambda: stranded_alert(handle) is None)
            seen = [events.get_nowait() for _ in range(events.qsize())]
        assert [e.get("event") for e in seen if e.get("kind") == "alert"] == ["resolved"]
        assert auto.fsm.current is R
    finally:
        await agent.close()
