"""The agent FSM and registry (hub/agents.py), as a (state, trigger) table, and agents' states as the hub sees them."""

from __future__ import annotations

import asyncio

import pytest

from hub.agents import TRANSITIONS, Agent, AgentMachine, AgentRegistry, AgentState, InvalidAgentTransition
from hub.clock import ManualClock
from tests.conftest import wait_tasks

A = AgentState
TRIGGERS = ("assign", "accept", "resume", "release", "block", "unblock", "go_offline")
PATH_TO: dict[AgentState, list[str]] = {
    A.IDLE: [],
    A.ASSIGNED: ["assign"],
    A.WORKING: ["assign", "accept"],
    A.BLOCKED: ["assign", "accept", "block"],
    A.OFFLINE: ["go_offline"],
}

# (state, trigger) -> the state it leads to, or None when the trigger is refused. Every pair is listed.
FSM: dict[tuple[AgentState, str], AgentState | None] = {
    (A.IDLE, "assign"): A.ASSIGNED,
    (A.IDLE, "accept"): None,
    (A.IDLE, "resume"): A.WORKING,
    (A.IDLE, "release"): None,
    (A.IDLE, "block"): None,
    (A.IDLE, "unblock"): None,
    (A.IDLE, "go_offline"): A.OFFLINE,
    (A.ASSIGNED, "assign"): None,
    (A.ASSIGNED, "accept"): A.WORKING,
    (A.ASSIGNED, "resume"): A.WORKING,
    (A.ASSIGNED, "release"): A.IDLE,
    (A.ASSIGNED, "block"): None,
    (A.ASSIGNED, "unblock"): None,
    (A.ASSIGNED, "go_offline"): A.OFFLINE,
    (A.WORKING, "assign"): None,
    (A.WORKING, "accept"): None,
    (A.WORKING, "resume"): None,
    (A.WORKING, "release"): A.IDLE,
    (A.WORKING, "block"): A.BLOCKED,
    (A.WORKING, "unblock"): None,
    (A.WORKING, "go_offline"): A.OFFLINE,
    (A.BLOCKED, "assign"): None,
    (A.BLOCKED, "accept"): None,
    (A.BLOCKED, "resume"): None,
    (A.BLOCKED, "release"): A.IDLE,
    (A.BLOCKED, "block"): None,
    (A.BLOCKED, "unblock"): A.WORKING,
    (A.BLOCKED, "go_offline"): A.OFFLINE,
    (A.OFFLINE, "assign"): None,
    (A.OFFLINE, "accept"): None,
    (A.OFFLINE, "resume"): None,
    (A.OFFLINE, "release"): None,
    (A.OFFLINE, "block"): None,
    (A.OFFLINE, "unblock"): None,
    (A.OFFLINE, "go_offline"): None,
}


async def agent_in(state: AgentState, clock: ManualClock, agent_id: str = "a1") -> tuple[AgentRegistry, Agent]:
    registry = AgentRegistry(clock)
    agent = Agent(agent_id=agent_id, connected_at=clock.now_ms())
    registry.add(agent)
    for trigger in PATH_TO[state]:
        await agent.fire(trigger, clock.now_ms(), task_id="task-1")
    assert agent.state == state
    return registry, agent


def test_table_covers_every_state_and_trigger() -> None:
    """The FSM table lists every (state, trigger) pair exactly once."""
    assert set(FSM) == {(s, t) for s in AgentState for t in TRIGGERS}


@pytest.mark.parametrize(("state", "trigger"), list(FSM), ids=[f"{s}-{t}" for s, t in FSM])
async def test_fsm_table(state: AgentState, trigger: str) -> None:
    """Each trigger moves the agent to the listed state, or raises InvalidAgentTransition and changes nothing."""
    clock = ManualClock()
    _, agent = await agent_in(state, clock)
    clock.advance(1)
    expected = FSM[(state, trigger)]
    before = (agent.state, agent.current_task_id, agent.last_state_change, agent.idle_since)
    if expected is None:
        with pytest.raises(InvalidAgentTransition):
            await agent.fire(trigger, clock.now_ms(), task_id="task-2")
        assert (agent.state, agent.current_task_id, agent.last_state_change, agent.idle_since) == before
    else:
        await agent.fire(trigger, clock.now_ms(), task_id="task-2")
        assert agent.state == expected
        assert agent.last_state_change == clock.now_ms()


async def test_release_clears_the_task_and_restarts_idle_time() -> None:
    """Going back to idle forgets the current task and marks when idleness began."""
    clock = ManualClock()
    _, agent = await agent_in(A.WORKING, clock)
    assert agent.current_task_id == "task-1"
    clock.advance(5)
    await agent.fire("release", clock.now_ms())
    assert (agent.current_task_id, agent.idle_since) == (None, clock.now_ms())


async def test_assign_records_the_task() -> None:
    """Assigning an idle agent records the task it now holds."""
    clock = ManualClock()
    _, agent = await agent_in(A.IDLE, clock)
    await agent.fire("assign", clock.now_ms(), task_id="task-9")
    assert (agent.state, agent.current_task_id) == (A.ASSIGNED, "task-9")


@pytest.mark.parametrize("attach", ["before", "after", "conditions", "on_enter", "on_exit", "after_state_change"])
async def test_machine_with_callbacks_takes_the_full_path(attach: str) -> None:
    """The agent machine's short cut applies only with nothing attached: a callback or condition added to it (as
    a later feature might) still runs, and a failing condition still stops the transition."""
    calls: list[str] = []
    machine = AgentMachine(
        model=None,
        states=list(A),
        transitions=TRANSITIONS,
        initial=A.IDLE,
        auto_transitions=False,
        queued=False,
        model_attribute="state",
    )
    agent = Agent(agent_id="x", connected_at=0)
    machine.add_model(agent)
    if attach in ("before", "after"):
        machine.get_transitions("assign")[0].add_callback(attach, lambda: calls.append(attach))
    elif attach == "conditions":
        transition = machine.get_transitions("assign")[0]
        transition.conditions.append(transition.condition_cls(lambda: calls.append(attach) or False))
    elif attach == "on_enter":
        machine.get_state(A.ASSIGNED).add_callback("enter", lambda: calls.append(attach))
    elif attach == "on_exit":
        machine.get_state(A.IDLE).add_callback("exit", lambda: calls.append(attach))
    else:
        machine.after_state_change = [lambda: calls.append(attach)]
    await agent.fire("assign", 1, "task-1")
    assert calls == [attach]
    assert agent.state == (A.IDLE if attach == "conditions" else A.ASSIGNED)


async def test_registry_idle_is_longest_idle_first() -> None:
    """Idle agents are listed longest idle first, and busy agents are left out."""
    clock = ManualClock()
    registry = AgentRegistry(clock)
    agents = {}
    for name in ("c", "a", "b", "busy"):
        agents[name] = Agent(agent_id=name, connected_at=clock.now_ms())
        registry.add(agents[name])
        clock.advance(1)
    await agents["busy"].fire("assign", clock.now_ms(), "task-1")
    await agents["c"].fire("assign", clock.now_ms(), "task-2")
    clock.advance(1)
    await agents["c"].fire("release", clock.now_ms())
    assert [a.agent_id for a in registry.idle()] == ["a", "b", "c"]


async def test_registry_reconnect_replaces_and_old_removal_is_ignored() -> None:
    """A second connection for one id replaces the first, whose later removal leaves the new one alone."""
    clock = ManualClock()
    registry = AgentRegistry(clock)
    old = Agent(agent_id="a1", connected_at=clock.now_ms())
    registry.add(old)
    await old.fire("assign", clock.now_ms(), "task-1")
    new = Agent(agent_id="a1", connected_at=clock.now_ms())
    assert registry.add(new) is old
    assert new.state == A.IDLE
    assert await registry.remove(old) is False
    assert registry.get("a1") is new and "a1" not in registry.departed


async def test_registry_remove_takes_the_agent_offline() -> None:
    """Removing an agent fires go_offline and keeps its last view, with the disconnect time, among the departed."""
    clock = ManualClock()
    registry, agent = await agent_in(A.WORKING, clock)
    clock.advance(2)
    assert await registry.remove(agent) is True
    assert agent.state == A.OFFLINE and registry.get("a1") is None
    view = registry.departed["a1"]
    assert (view["status"], view["fsm_state"], view["disconnected_at"]) == ("offline", "offline", clock.now_ms())
    assert [v["agent_id"] for v in registry.views()] == ["a1"]
    registry.add(Agent(agent_id="a1", connected_at=clock.now_ms()))
    assert registry.departed == {}


# --- agents as the running hub drives them -----------------------------------------------------------------------


async def test_agent_walks_idle_assigned_working_idle(hub, make_agent):
    """Through a real socket an agent goes idle → assigned → working → idle as it takes and finishes a task."""
    sim = await make_agent(behaviour="ignore", capabilities=["code", "review"])
    agent = hub.hub.agents.get(sim.agent_id)
    assert agent.state == A.IDLE and agent.capabilities == frozenset({"code", "review"})
    tid = await hub.submit(description="walk the fsm")
    rec = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    assert (agent.state, agent.current_task_id) == (A.ASSIGNED, tid)
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": rec["generation"]})
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m["status"] == "accepted")
    assert agent.state == A.WORKING
    await sim.send({"type": "task_complete", "task_id": tid, "generation": rec["generation"], "result": {}})
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m["status"] == "complete")
    assert (agent.state, agent.current_task_id, agent.n_completed) == (A.IDLE, None, 1)
    r = await hub.http.get(f"/api/agents/{sim.agent_id}")
    assert r.json()["fsm_state"] == "idle" and r.json()["completed"] == 1


async def test_cancel_frees_the_agent(hub, make_agent):
    """Cancelling a running task sends task_cancelled to its agent and returns the agent to idle."""
    sim = await make_agent(behaviour="delay", delay_s=30)
    tid = await hub.submit(description="to be cancelled")
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m["status"] == "accepted")
    r = await hub.http.post(f"/api/tasks/{tid}/cancel")
    assert r.json() == {"status": "cancelled", "task_id": tid, "previous_status": "working"}
    await sim.wait_for(lambda m: m.get("type") == "task_cancelled" and m["task_id"] == tid)
    assert hub.hub.agents.get(sim.agent_id).state == A.IDLE


async def test_departed_agent_is_listed_offline(hub, make_agent):
    """An agent that disconnects is shown offline with its disconnect time; unknown agents are 404."""
    sim = await make_agent()
    with hub.hub.bus.subscribe() as events:
        await sim.close()
        while sim.agent_id in hub.hub.agents.connected:
            await asyncio.wait_for(events.get(), 10)
    r = await hub.http.get(f"/api/agents/{sim.agent_id}")
    assert r.status_code == 200 and r.json()["status"] == "offline" and "disconnected_at" in r.json()
    r = await hub.http.get("/api/agents/nobody")
    assert r.status_code == 404 and r.json()["error"] == "agent_not_found"


async def test_two_agents_both_get_work(hub, make_agent):
    """With two idle agents and two tasks, each agent gets one (never two tasks to one agent)."""
    a = await make_agent(behaviour="ignore")
    b = await make_agent(behaviour="ignore")
    ids = [await hub.submit(description=f"t{n}") for n in range(2)]
    await wait_tasks(hub, ids, {"assigned"})
    await a.wait_for(lambda m: m.get("type") == "task_assign")
    await b.wait_for(lambda m: m.get("type") == "task_assign")
    assert len(a.received) == len(b.received) == 1
    assert {a.received[0].task_id, b.received[0].task_id} == set(ids)
