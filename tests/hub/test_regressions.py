"""Regression tests for the original AgentCom's bugs (reference §9.4), each against a real hub and real sockets."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest

from hub.agents import AgentState
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle, wait_tasks

FAST = {"acceptance_timeout_s": 0.3, "sweep_interval_s": 0.05}


async def wait_until(handle: HubHandle, predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    """Wait until ``predicate`` holds, re-checking on every event the hub publishes (no polling)."""
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(timeout_s * SCALE):
            while not predicate():
                await events.get()


def events_of(handle: HubHandle, tid: str) -> list[str]:
    return [h["event"] for h in handle.hub.queue.tasks[tid].history]


def is_type(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


async def sim_for(handle: HubHandle, agent_id: str, token: str | None = None, **kwargs: Any) -> AgentSim:
    sim = AgentSim(handle.ws_url, agent_id, token or await handle.mint_token(agent_id), **kwargs)
    await sim.connect()
    return sim


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


# --- dependencies (bug 11 and the dependency that can never complete) ----------------------------------------------


async def test_unknown_dependency_is_a_422_naming_the_ids(hub):
    """depends_on naming unknown tasks is refused with 422 listing exactly the unknown ids, not a 500."""
    known = await hub.submit(description="exists")
    r = await hub.http.post(
        "/api/tasks", json={"description": "x", "depends_on": [known, "task-missing-1", "task-missing-2"]}
    )
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert (error["field"], error["error"], error["value"]) == (
        "depends_on",
        "unknown_task",
        ["task-missing-1", "task-missing-2"],
    )
    assert known not in error["detail"] and "task-missing-1" in error["detail"]
    assert len(hub.hub.queue.tasks) == 1


async def test_unknown_dependency_in_a_batch_is_a_422_and_queues_nothing(hub):
    """A batch naming unknown dependencies is refused whole with 422 listing them, and queues none of its tasks."""
    known = await hub.submit(description="exists", assign_to="nobody")
    r = await hub.http.post(
        "/api/tasks/batch",
        json={
            "tasks": [
                {"description": "a", "depends_on": [known]},
                {"description": "b", "depends_on": ["task-missing-2", "task-missing-1"]},
            ]
        },
    )
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert (error["error"], error["value"]) == ("unknown_task", ["task-missing-1", "task-missing-2"])
    assert list(hub.hub.queue.tasks) == [known], "all or nothing"
    r = await hub.http.post("/api/tasks/batch", json={"tasks": [{"description": "first", "assign_to": "nobody"}]})
    first = r.json()["tasks"][0]["task_id"]
    assert r.status_code == 201 and hub.hub.queue.tasks[first].status == "queued"


async def test_retrying_a_dead_lettered_dependency_revives_its_dependents(hub, make_agent):
    """Retrying the task that took its dependents down requeues them too, and the whole chain then completes."""
    a = await hub.submit(description="fails once", max_retries=1)
    b = await hub.submit(description="needs a", depends_on=[a])
    c = await hub.submit(description="needs b", depends_on=[b])
    failing = await make_agent(behaviour="fail")
    await wait_tasks(hub, [a, b, c], {"dead_letter"})
    await failing.close()
    await make_agent()
    r = await hub.http.post(f"/api/tasks/{a}/retry")
    assert r.status_code == 200, r.text
    await wait_tasks(hub, [a, b, c], {"completed"})
    for tid in (b, c):
        assert "requeued" in events_of(hub, tid)


async def test_dead_lettered_dependency_fails_its_dependents(hub, make_agent):
    """When a dependency dead-letters, its dependents (transitively) dead-letter with dependency_failed at once."""
    a = await hub.submit(description="doomed", max_retries=1)
    b = await hub.submit(description="needs a", depends_on=[a])
    c = await hub.submit(description="needs b", depends_on=[b])
    free = await hub.submit(description="independent", assign_to="nobody")
    await make_agent(behaviour="fail")
    await wait_tasks(hub, [a, b, c], {"dead_letter"})
    for tid in (b, c):
        task = await hub.task(tid)
        assert task["dead_letter_reason"] == "dependency_failed"
        assert task["last_error"] == f"dependency_failed: {a}"
        assert task["history"][-1]["event"] == "dead_letter"
        assert task["assigned_at"] is None, "never handed out"
    r = await hub.http.post("/api/tasks", json={"description": "late dependent", "depends_on": [a]})
    assert r.status_code == 201 and r.json()["status"] == "dead_letter"
    assert r.json()["warnings"] == [f"dependency_failed: {a}"]
    assert hub.hub.queue.tasks[free].status == "queued", "an unrelated task is untouched"


async def test_cancelled_dependency_fails_its_dependents(hub):
    """Cancelling a task dead-letters the tasks waiting on it, instead of leaving them queued forever."""
    a = await hub.submit(description="will be cancelled", assign_to="nobody")
    b = await hub.submit(description="needs a", depends_on=[a])
    r = await hub.http.post(f"/api/tasks/{a}/cancel")
    assert r.status_code == 200
    task = await hub.task(b)
    assert (task["status"], task["dead_letter_reason"]) == ("dead_letter", "dependency_failed")


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


# --- generation fencing and duplicate reports -----------------------------------------------------------------------


async def test_stale_reports_are_rejected_and_change_nothing(hub, make_agent):
    """Reports for an older generation, or from an agent not holding the task, are refused and change nothing."""
    sim = await make_agent(behaviour="ignore")
    intruder = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="fenced", assign_to=sim.agent_id)
    gen = (await sim.wait_for(is_type("task_assign")))["generation"]
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
    await sim.wait_for(is_type("task_ack", status="accepted"))
    before = copy.deepcopy(hub.hub.queue.tasks[tid].as_dict())

    refused = [
        (
            sim,
            {"type": "task_complete", "task_id": tid, "generation": gen - 1, "result": {"status": "success"}},
            "task_complete_failed: stale_generation",
        ),
        (
            sim,
            {"type": "task_complete", "task_id": tid, "generation": gen - 1, "result": {"status": "failed"}},
            "task_complete_failed: stale_generation",
        ),
        (
            sim,
            {"type": "task_failed", "task_id": tid, "generation": gen + 1, "error": "x"},
            "task_fail_failed: stale_generation",
        ),
        (sim, {"type": "task_accepted", "task_id": tid, "generation": gen - 1}, "task_accept_failed: stale_generation"),
        (
            intruder,
            {"type": "task_complete", "task_id": tid, "generation": gen, "result": {}},
            "task_complete_failed: not_assigned_to_you",
        ),
        (
            intruder,
            {"type": "task_failed", "task_id": tid, "generation": gen, "error": "x"},
            "task_fail_failed: not_assigned_to_you",
        ),
        (
            intruder,
            {"type": "task_accepted", "task_id": tid, "generation": gen},
            "task_accept_failed: not_assigned_to_you",
        ),
    ]
    for who, message, error in refused:
        n = len(who.errors)
        await who.send(message)
        reply = await who.wait_for(lambda m, n=n, who=who: len(who.errors) > n)
        assert who.errors[n]["error"] == error and who.errors[n]["task_id"] == tid, reply
        assert hub.hub.queue.tasks[tid].as_dict() == before
    assert sim.acks == [{"protocol_version": 1, "type": "task_ack", "task_id": tid, "status": "accepted"}]
    assert hub.hub.violations.n_violations == 0, "a refused report is an answer, not a violation"

    await sim.send({"type": "task_complete", "task_id": tid, "generation": gen, "result": {"status": "success"}})
    assert (await sim.wait_for(is_type("task_ack", status="complete")))["task_id"] == tid
    await sim.send({"type": "task_complete", "task_id": tid, "generation": gen - 1, "result": {}})
    assert await sim.wait_for(lambda m: m.get("error", "").startswith("task_complete_failed: invalid"))
    assert hub.hub.queue.tasks[tid].status == "completed"


async def test_duplicate_complete_is_acked_once_recorded(hub, make_agent):
    """The same task_complete again (same generation) is acked "complete" without a second completed entry."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="said twice")
    gen = (await sim.wait_for(is_type("task_assign")))["generation"]
    report = {
        "type": "task_complete",
        "task_id": tid,
        "generation": gen,
        "result": {"status": "success", "output": "1"},
    }
    await sim.send(report)
    await sim.wait_for(is_type("task_ack", status="complete"))
    completed_at = hub.hub.queue.tasks[tid].completed_at
    await sim.send({**report, "result": {"status": "success", "output": "2"}})
    await sim.wait_for(lambda m: sum(a["status"] == "complete" for a in sim.acks) == 2)
    task = await hub.task(tid)
    assert [h["event"] for h in task["history"]].count("completed") == 1
    assert task["result"] == {"status": "success", "output": "1"} and task["completed_at"] == completed_at
    assert sim.errors == []


async def test_reports_for_a_finished_task_are_refused_alike(hub, make_agent):
    """After a cancel, success, failure and task_failed reports of the old attempt are all refused invalid_state."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="cancelled under the agent")
    gen = (await sim.wait_for(is_type("task_assign")))["generation"]
    assert (await hub.http.post(f"/api/tasks/{tid}/cancel")).status_code == 200
    await sim.wait_for(is_type("task_cancelled", task_id=tid))
    before = copy.deepcopy(hub.hub.queue.tasks[tid].as_dict())
    reports = [
        (
            {"type": "task_complete", "task_id": tid, "generation": gen, "result": {"status": "success"}},
            "task_complete_failed: invalid_state",
        ),
        (
            {"type": "task_complete", "task_id": tid, "generation": gen, "result": {"status": "failed"}},
            "task_complete_failed: invalid_state",
        ),
        (
            {"type": "task_failed", "task_id": tid, "generation": gen, "error": "late"},
            "task_fail_failed: invalid_state",
        ),
    ]
    for n, (message, error) in enumerate(reports):
        await sim.send(message)
        await sim.wait_for(lambda m, n=n: len(sim.errors) > n)
        assert sim.errors[n]["error"] == error
    assert hub.hub.queue.tasks[tid].as_dict() == before


async def test_parse_stats_are_summed_per_model_across_tasks(hub, make_agent):
    """Parse-path counts reported with results are exposed per model, summed over tasks, failures included."""
    stats = {"coder:7b": {"replies": 4, "native": 2, "hermes": 1, "final_answer": 1, "format_error": 0}}
    await make_agent(result={"status": "success", "parse_stats": stats})
    ids = [await hub.submit(description=f"parse {n}") for n in range(3)]
    await wait_tasks(hub, ids, {"completed"})
    r = await hub.http.get("/api/tasks/parse-stats")
    assert r.status_code == 200
    assert r.json()["models"] == {
        "coder:7b": {"final_answer": 3, "format_error": 0, "hermes": 3, "native": 6, "replies": 12}
    }
