"""Regression tests for the original AgentCom's bugs (reference §9.4), each against a real hub and real sockets:
every ended attempt counts, a reported failure is never a success."""

from __future__ import annotations

from typing import Any

import pytest

from hub.agents import AgentState
from tests.conftest import wait_tasks
from tests.hub.regressions_helpers import FAST, events_of, is_type, sim_for, wait_until

# --- every ended attempt counts toward max_retries (bug 4) --------------------------------------------------------


async def test_failing_agent_dead_letters_a_poison_task(hub, make_agent):
    """An agent that fails a task every time sends it to dead_letter after max_retries, not round and round."""
    sim = await make_agent(behaviour="fail")
    tid = await hub.submit(description="poison", max_retries=3)
    await wait_tasks(hub, [tid], {"dead_letter"})
    await sim.settled()
    task = await hub.task(tid)
    assert (task["retry_count"], task["dead_letter_reason"]) == (3, "agent_error")
    assert task["last_error"] == "agent_error: smoke-test-failure"
    assert [a["status"] for a in sim.acks if a["status"] != "accepted"] == ["retried", "retried", "dead_letter"]
    assert events_of(hub, tid).count("retried") == 2 and "completed" not in events_of(hub, tid)
    listed = (await hub.http.get("/api/tasks/dead-letter")).json()
    assert [t["id"] for t in listed["tasks"]] == [tid]
    agent = hub.hub.agents.get(sim.agent_id)
    assert (agent.state, agent.n_failed) == (AgentState.IDLE, 3)


async def test_ignoring_agent_dead_letters_after_acceptance_timeouts(make_hub):
    """An agent that never accepts loses the task at each acceptance timeout, and each timeout counts."""
    hub = await make_hub(**FAST)
    sim = await sim_for(hub, "deaf", behaviour="ignore")
    tid = await hub.submit(description="never accepted", max_retries=3)
    await wait_tasks(hub, [tid], {"dead_letter"})
    task = await hub.task(tid)
    assert (task["retry_count"], task["dead_letter_reason"]) == (3, "timeout")
    assert len(sim.received) == 3
    await sim.wait_for(lambda m: sum(x.get("type") == "task_cancelled" for x in sim.inbox) == 3)
    assert "unresponsive" in hub.hub.agents.get("deaf").flags
    await sim.close()


async def test_disconnecting_agent_dead_letters_the_task(make_hub):
    """An agent that drops its connection mid-task, every time, sends the task to dead_letter (agent_lost)."""
    hub = await make_hub(reconnect_grace_s=0, sweep_interval_s=0.05)
    token = await hub.mint_token("flaky")
    tid = await hub.submit(description="crashes its agent", max_retries=3)
    for attempt in range(1, 4):
        sim = await sim_for(hub, "flaky", token, behaviour="delay", delay_s=60)
        await sim.wait_for(is_type("task_ack", status="accepted"))
        await sim.kill_connection()
        await wait_until(hub, lambda n=attempt: hub.hub.queue.tasks[tid].retry_count == n)
    task = await hub.task(tid)
    assert (task["status"], task["dead_letter_reason"]) == ("dead_letter", "agent_lost")
    assert events_of(hub, tid).count("assigned") == 3


async def test_rejecting_agent_dead_letters_and_rejection_is_not_a_violation(hub, make_agent):
    """task_rejected is a known message: acked "rejected", counted as an attempt, never a protocol violation."""
    sim = await make_agent(behaviour="reject")
    tid = await hub.submit(description="nobody wants it", max_retries=2)
    await wait_tasks(hub, [tid], {"dead_letter"})
    await sim.wait_for(lambda m: sum(a["status"] == "rejected" for a in sim.acks) == 2)
    task = await hub.task(tid)
    assert (task["retry_count"], task["dead_letter_reason"]) == (2, "rejected")
    assert sim.errors == [] and hub.hub.violations.n_violations == 0


async def test_agent_restarting_is_accepted(hub, make_agent):
    """agent_restarting is a known message: no error, no violation, and the agent is flagged as restarting."""
    sim = await make_agent()
    await sim.send({"type": "agent_restarting", "reason": "self-update"})
    await sim.send({"type": "ping"})
    await sim.wait_for(is_type("pong"))
    assert sim.errors == [] and hub.hub.violations.n_violations == 0
    assert "restarting" in hub.hub.agents.get(sim.agent_id).flags


# --- a reported failure is never a success (bug 2) ----------------------------------------------------------------

REPORTS: list[tuple[str, dict[str, Any], dict[str, Any] | None, str, str]] = [
    ("result status failed", {"status": "failed", "error": "it broke"}, None, "dead_letter", "agent_error"),
    ("result status error", {"status": "error", "output": "traceback"}, None, "dead_letter", "agent_error"),
    (
        "verification_status failed",
        {"status": "success", "verification_status": "failed"},
        None,
        "dead_letter",
        "verification_failed",
    ),
    (
        "verification report failed",
        {"status": "success"},
        {"status": "failed", "checks": []},
        "dead_letter",
        "verification_failed",
    ),
    (
        "verification execution_failed",
        {"status": "success", "verification_status": "execution_failed"},
        None,
        "dead_letter",
        "verification_failed",
    ),
    (
        "partial pass",
        {"status": "success", "verification_status": "partial_pass"},
        {"status": "fail", "checks": [{"type": "a", "status": "pass"}, {"type": "b", "status": "fail"}]},
        "completed",
        "partial_pass",
    ),
    (
        "partial pass in the report",
        {"status": "success"},
        {"outcome": "partial_pass", "checks": [{"name": "a", "status": "pass"}, {"name": "b", "status": "error"}]},
        "completed",
        "partial_pass",
    ),
    (
        "partial pass without checks",
        {"status": "success", "verification_status": "partial_pass"},
        None,
        "completed",
        "unverified",
    ),
    (
        "verified",
        {"status": "success", "verification_status": "verified"},
        {"status": "pass", "checks": [{"type": "file_exists", "target": "x", "status": "pass"}]},
        "completed",
        "verified",
    ),
    (
        "verified without checks",
        {"status": "success", "verification_status": "verified"},
        None,
        "completed",
        "unverified",
    ),
    (
        "verified over failing checks",
        {"status": "success", "outcome": "verified"},
        {"outcome": "verified", "checks": [{"name": "a", "status": "fail"}]},
        "dead_letter",
        "verification_failed",
    ),
    ("no verification", {"status": "success"}, None, "completed", "unverified"),
]


@pytest.mark.parametrize(("case", "result", "report", "status", "why"), REPORTS, ids=[r[0] for r in REPORTS])
async def test_reported_outcome_is_recorded_as_reported(
    hub, make_agent, case: str, result: dict[str, Any], report: dict[str, Any] | None, status: str, why: str
):
    """A task_complete reporting failure ends the attempt as a failure; partial_pass completes as partial_pass when
    its checks show it, and a success claimed with no check behind it is recorded as unverified."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description=case, max_retries=1)
    rec = await sim.wait_for(is_type("task_assign"))
    message: dict[str, Any] = {
        "type": "task_complete",
        "task_id": tid,
        "generation": rec["generation"],
        "result": result,
        "tokens_used": 7,
    }
    if report is not None:
        message["verification_report"] = report
    await sim.send(message)
    ack = await sim.wait_for(is_type("task_ack", task_id=tid))
    task = await hub.task(tid)
    assert ack["status"] == ("complete" if status == "completed" else "dead_letter")
    assert task["status"] == status
    if status == "completed":
        assert task["outcome"] == why and task["result"] == result
        assert (await hub.http.get("/api/tasks/stats")).json()["by_outcome"] == {why: 1}
    else:
        assert task["dead_letter_reason"] == why and task["outcome"] is None
        assert task["result"] == result and "completed" not in events_of(hub, tid)
        assert task["completed_at"] is None


async def test_reported_failure_is_retried_while_retries_remain(hub, make_agent):
    """A failed task_complete with retries left is acked "retried" and handed out again under a new generation."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="flaky", max_retries=2)
    first = await sim.wait_for(is_type("task_assign"))
    await sim.send(
        {
            "type": "task_complete",
            "task_id": tid,
            "generation": first["generation"],
            "result": {"status": "failed", "error": "flaky test"},
        }
    )
    assert (await sim.wait_for(is_type("task_ack", task_id=tid)))["status"] == "retried"
    second = await sim.wait_for(lambda m: m.get("type") == "task_assign" and m is not first)
    assert second["generation"] > first["generation"]
    task = await hub.task(tid)
    assert (task["status"], task["retry_count"], task["last_error"]) == ("assigned", 1, "agent_error: flaky test")
