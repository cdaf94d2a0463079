"""Regression tests for the original AgentCom's bugs (reference §9.4), each against a real hub and real sockets:
unknown dependencies and dependencies that can never complete."""

from __future__ import annotations

from tests.conftest import wait_tasks
from tests.hub.regressions_helpers import events_of

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
