"""Regression tests for the original AgentCom's bugs (reference §9.4), each against a real hub and real sockets:
generation fencing, duplicate and late reports, per-model parse counts."""

from __future__ import annotations

import copy

from tests.conftest import wait_tasks
from tests.hub.regressions_helpers import is_type

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
