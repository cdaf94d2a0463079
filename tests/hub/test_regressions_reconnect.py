"""Regression tests for the original AgentCom's bugs (reference §9.4), each against a real hub and real sockets:
an agent reconnecting mid-task."""

from __future__ import annotations

import pytest

from hub.agents import AgentState
from tests.hub.regressions_helpers import FAST, events_of, is_type, sim_for, wait_until

# --- reconnect mid-task (bug 3) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("accepted", [True, False], ids=["working", "assigned"])
async def test_reconnect_with_state_report_keeps_the_task(make_hub, accepted: bool):
    """A reconnecting agent that reports its task gets continue, is not reclaimed past the timeout, and completes it."""
    hub = await make_hub(reconnect_grace_s=30, **FAST)
    token = await hub.mint_token("worker")
    old = await sim_for(hub, "worker", token, behaviour="ignore")
    tid = await hub.submit(description="long job", assign_to="worker")
    rec = await old.wait_for(is_type("task_assign"))
    gen = rec["generation"]
    if accepted:
        await old.send({"type": "task_accepted", "task_id": tid, "generation": gen})
        await old.wait_for(is_type("task_ack", status="accepted"))

    new = await sim_for(hub, "worker", token, behaviour="ignore")
    with pytest.raises(ConnectionError):
        await old.wait_for(lambda m: False)
    assert old.ws is not None and old.ws.close_code == 4000
    await new.send({"type": "state_report", "task_id": tid, "generation": gen, "status": "working"})
    ack = await new.wait_for(is_type("state_report_ack", task_id=tid))
    assert (ack["action"], ack["generation"]) == ("continue", gen)
    agent = hub.hub.agents.get("worker")
    assert agent.state == AgentState.WORKING and agent.current_task_id == tid
    assert "awaiting_state_report" not in agent.flags

    # A canary assigned after the reconnect never accepts; once its acceptance timeout has been swept, so would
    # ours have been.
    canary = await sim_for(hub, "canary", behaviour="ignore")
    probe = await hub.submit(description="canary", assign_to="canary")
    await wait_until(hub, lambda: hub.hub.queue.tasks[probe].retry_count >= 1)
    task = hub.hub.queue.tasks[tid]
    assert (task.status, task.assigned_to, task.generation, task.retry_count) == ("working", "worker", gen, 0)
    assert "retried" not in events_of(hub, tid)

    await new.send({"type": "task_complete", "task_id": tid, "generation": gen, "result": {"status": "success"}})
    assert (await new.wait_for(is_type("task_ack", task_id=tid)))["status"] == "complete"
    assert events_of(hub, tid).count("completed") == 1
    for sim in (old, new, canary):
        await sim.close()


async def test_reconnect_then_task_accepted_keeps_the_task(make_hub):
    """A reconnecting agent that re-accepts its task (instead of a state_report) is not reclaimed as silent."""
    hub = await make_hub(reconnect_grace_s=30, **FAST)
    token = await hub.mint_token("worker")
    old = await sim_for(hub, "worker", token, behaviour="ignore")
    tid = await hub.submit(description="re-accepted", assign_to="worker")
    gen = (await old.wait_for(is_type("task_assign")))["generation"]
    new = await sim_for(hub, "worker", token, behaviour="ignore")
    await new.send({"type": "task_accepted", "task_id": tid, "generation": gen})
    await new.wait_for(is_type("task_ack", task_id=tid, status="accepted"))
    assert "awaiting_state_report" not in hub.hub.agents.get("worker").flags
    canary = await sim_for(hub, "canary", behaviour="ignore")
    probe = await hub.submit(description="canary", assign_to="canary")
    await wait_until(hub, lambda: hub.hub.queue.tasks[probe].retry_count >= 1)
    task = hub.hub.queue.tasks[tid]
    assert (task.status, task.assigned_to, task.retry_count) == ("working", "worker", 0)
    for sim in (old, new, canary):
        await sim.close()


async def test_reconnect_without_state_report_is_reclaimed(make_hub):
    """A reconnecting agent that never says what it is doing loses its task after the state-report timeout."""
    hub = await make_hub(reconnect_grace_s=30, state_report_timeout_s=0.3, **FAST)
    token = await hub.mint_token("amnesiac")
    old = await sim_for(hub, "amnesiac", token, behaviour="ignore")
    tid = await hub.submit(description="forgotten", max_retries=5)
    rec = await old.wait_for(is_type("task_assign"))
    await old.send({"type": "task_accepted", "task_id": tid, "generation": rec["generation"]})
    await old.wait_for(is_type("task_ack", status="accepted"))
    new = await sim_for(hub, "amnesiac", token, behaviour="ignore")
    agent = hub.hub.agents.get("amnesiac")
    assert agent.state == AgentState.ASSIGNED and "awaiting_state_report" in agent.flags
    await new.wait_for(is_type("task_cancelled", task_id=tid))
    task = hub.hub.queue.tasks[tid]
    assert task.retry_count == 1
    retried = [h for h in task.history if h["event"] == "retried"][0]
    assert retried["details"]["reason"] == "agent_lost"
    assert retried["details"]["error"] == "no state_report after reconnect"
    again = await new.wait_for(is_type("task_assign", task_id=tid))
    assert again["generation"] > rec["generation"]
    await old.close()
    await new.close()


async def test_recovery_messages_only_continue_the_agents_own_task(hub, make_agent):
    """task_recovering and state_report continue a task only for its assignee; anyone else is told reassign/abort."""
    holder = await make_agent(behaviour="ignore")
    other = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="held", assign_to=holder.agent_id)
    rec = await holder.wait_for(is_type("task_assign"))
    await other.send({"type": "task_recovering", "task_id": tid})
    assert await other.wait_for(is_type("task_reassign", task_id=tid))
    await other.send({"type": "state_report", "task_id": tid})
    assert (await other.wait_for(is_type("state_report_ack", task_id=tid)))["action"] == "abort"
    await holder.send({"type": "state_report", "task_id": tid, "generation": rec["generation"] - 1})
    assert (await holder.wait_for(is_type("state_report_ack", task_id=tid)))["action"] == "abort"
    await holder.send({"type": "task_recovering", "task_id": tid})
    cont = await holder.wait_for(is_type("task_continue", task_id=tid))
    assert cont["generation"] == rec["generation"]
    assert hub.hub.queue.tasks[tid].status == "working"
    assert hub.hub.queue.tasks[tid].assigned_to == holder.agent_id
