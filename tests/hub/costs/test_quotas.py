"""Quotas on agent-made work: recursion depth, running tasks per goal, a goal's fail-fast (real hub, real sockets)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from shared.agent_sim import AgentSim
from tests.conftest import wait_tasks
from tests.hub.costs.test_budgets import _sim


async def test_agent_made_tasks_are_refused_past_the_depth_limit(make_hub) -> None:
    """A task an agent submits with metadata.parent_task_id gets its parent's depth + 1; past max_task_depth it is
    refused 422 max_depth (single and batch), and an admin's submission is not counted."""
    hub = await make_hub(max_task_depth=2)
    token = await hub.mint_token("planner")
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}) as agent:

        async def child(parent: str) -> httpx.Response:
            return await agent.post("/api/tasks", json={"description": "sub", "metadata": {"parent_task_id": parent}})

        root = await hub.submit(description="root")
        r1 = await child(root)
        assert r1.status_code == 201
        r2 = await child(r1.json()["task_id"])
        assert r2.status_code == 201 and (await hub.task(r2.json()["task_id"]))["metadata"]["depth"] == 2
        r3 = await child(r2.json()["task_id"])
        assert r3.status_code == 422 and r3.json()["error"] == "max_depth" and r3.json()["depth"] == 3
        batch = {"tasks": [{"description": "ok", "metadata": {"parent_task_id": root}},
                           {"description": "deep", "metadata": {"parent_task_id": r2.json()["task_id"]}}]}  # fmt: skip
        before = len(hub.hub.queue.tasks)
        rb = await agent.post("/api/tasks/batch", json=batch)
        assert rb.status_code == 422 and rb.json()["error"] == "max_depth" and len(hub.hub.queue.tasks) == before
    deep = {"description": "x", "metadata": {"parent_task_id": r2.json()["task_id"]}}
    r = await hub.http.post("/api/tasks", json=deep)
    assert r.status_code == 201 and "depth" not in (await hub.task(r.json()["task_id"]))["metadata"]


async def assigned(agent: AgentSim) -> list[str]:
    return [r.task_id for r in agent.received]


async def test_at_most_n_tasks_of_a_goal_run_at_once(make_hub) -> None:
    """With goal_max_running=1 and three idle agents only one of a goal's three tasks is assigned (the others wait
    with reason goal_concurrency, while a task of no goal is assigned); when it ends the next one goes."""
    hub = await make_hub(goal_max_running=1)
    goal_tasks = [await hub.submit(description=f"g{i}", goal_id="g") for i in range(3)]
    sims = [await _sim(hub, behaviour="ignore") for _ in range(3)]
    free = await hub.submit(description="no goal")
    await wait_tasks(hub, [free], {"assigned"})
    statuses = {t: str(hub.hub.queue.tasks[t].status) for t in goal_tasks}
    assert sorted(statuses.values()) == ["assigned", "queued", "queued"], statuses
    held = [t for t, s in statuses.items() if s == "queued"]
    assert all(hub.hub.queue.tasks[t].waiting_reason["code"] == "goal_concurrency" for t in held)
    running = next(t for t, s in statuses.items() if s == "assigned")
    holder = next(s for s in sims if running in [r.task_id for r in s.received])
    rec = next(r for r in holder.received if r.task_id == running)
    await holder.send({"type": "task_accepted", "task_id": running, "generation": rec.generation})
    holder.behaviour = "complete"
    await holder.finish(rec)
    async with asyncio.timeout(10):
        while sum(str(hub.hub.queue.tasks[t].status) == "assigned" for t in held) != 1:
            await asyncio.sleep(0.02)
    assert str(hub.hub.queue.tasks[running].status) == "completed"
    for sim in sims:
        await sim.close()


async def test_a_goal_failing_too_often_fails_fast(make_hub) -> None:
    """After goal_fail_fast_min finished tasks with a failed share at the ratio, the goal's queued tasks are
    dead-lettered with reason goal_fail_fast and an event says so; another goal is untouched."""
    hub = await make_hub(goal_fail_fast_min=2, goal_fail_fast_ratio=0.5)
    agent_id = f"a-{uuid.uuid4().hex[:6]}"
    token = await hub.mint_token(agent_id)
    failing = [await hub.submit(description=f"f{i}", goal_id="bad", assign_to=agent_id, max_retries=1)
               for i in range(2)]  # fmt: skip
    later = [await hub.submit(description=f"q{i}", goal_id="bad", assign_to="nobody") for i in range(3)]
    other = await hub.submit(description="other", goal_id="good", assign_to="nobody")
    with hub.hub.bus.subscribe() as bus:
        sim = await AgentSim(hub.ws_url, agent_id, token, behaviour="fail").connect()
        async with asyncio.timeout(10):
            while (event := await bus.get()).get("event") != "goal_fail_fast":
                pass
    assert [str(hub.hub.queue.tasks[t].status) for t in failing] == ["dead_letter"] * 2
    for tid in later:
        task = await hub.task(tid)
        assert task["dead_letter_reason"] == "goal_fail_fast" and "2 of 2" in task["last_error"]
    assert str(hub.hub.queue.tasks[other].status) == "queued"
    assert event["goal_id"] == "bad" and sorted(event["dead_lettered"]) == sorted(later)
    await sim.close()
