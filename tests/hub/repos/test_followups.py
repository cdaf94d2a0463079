"""A task failing with merge_conflict becomes one visible follow-up task, linked both ways, kept across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle, wait_tasks
from tests.hub.repos.conftest import Remote, answer_registry

MakeHub = Callable[..., Awaitable[HubHandle]]


async def connect(handle: HubHandle, agent_id: str) -> AgentSim:
    token = await handle.mint_token(agent_id)
    sim = AgentSim(handle.ws_url, agent_id, token, behaviour="ignore")
    await sim.connect()
    await answer_registry(sim)
    return sim


async def fail_in_conflict(handle: HubHandle, sim: AgentSim, task_id: str, n: int) -> None:
    """Take the ``n``-th assignment of ``task_id`` and fail it with merge_conflict in src/a.py and src/b.py."""
    async with asyncio.timeout(10 * SCALE):
        await sim.wait_for(lambda m: len([r for r in sim.received if r.task_id == task_id]) >= n)
    rec = [r for r in sim.received if r.task_id == task_id][n - 1]
    base = rec.message["checkout"]["base_commit"]
    change = {"repo": "app", "branch": f"agentcom/{task_id}", "base_commit": base, "conflict": ["src/a.py", "src/b.py"]}
    await sim.send({"type": "task_accepted", "task_id": task_id, "generation": rec.generation})
    await sim.send(
        {
            "type": "task_failed",
            "task_id": task_id,
            "generation": rec.generation,
            "reason": "merge_conflict",
            "error": "rebase onto main failed",
            "result": {"status": "failure", "error": "conflict", "change": change},
        }
    )


async def failures(handle: HubHandle, task_id: str, n: int) -> None:
    """Wait (on the hub's events) until ``n`` attempts of the task have failed since it was last (re)queued."""
    task = handle.hub.queue.tasks[task_id]
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(10 * SCALE):
            while task.retry_count < n:
                await events.get()


async def handled(handle: HubHandle) -> None:
    """Wait until the follow-up loop has looked at every event recorded so far."""
    async with asyncio.timeout(10 * SCALE):
        await handle.hub.repos.followups.wait_handled(handle.hub.queue.feed.last_seq)


def follow_ups_of(handle: HubHandle, task_id: str) -> list[str]:
    return [t.id for t in handle.hub.queue.tasks.values() if t.metadata.get("follow_up_of") == task_id]


async def test_merge_conflict_becomes_one_follow_up_linked_both_ways(make_hub: MakeHub, make_remote: Any) -> None:
    """One high-priority follow-up on the same repo names the task and files; retries and a restart add none."""
    handle = await make_hub()
    remote: Remote = make_remote("app")
    assert (await handle.http.post("/api/repos", json={"name": "app", "url": remote.url})).status_code == 201
    sim = await connect(handle, "conflicted")
    task_id = await handle.submit(description="rename things", repo="app", max_retries=2, assign_to="conflicted")
    await fail_in_conflict(handle, sim, task_id, 1)
    await failures(handle, task_id, 1)
    await handled(handle)
    (follow_up,) = follow_ups_of(handle, task_id)
    shown = await handle.task(follow_up)
    assert shown["description"].startswith(f"Resolve merge conflict of {task_id} in src/a.py, src/b.py")
    assert shown["repo"] == "app" and shown["priority_name"] == "high"
    assert shown["follow_up_of"] == task_id and shown["metadata"]["conflict_files"] == ["src/a.py", "src/b.py"]
    assert [h["path"] for h in shown["file_hints"]] == ["src/a.py", "src/b.py"]
    original = await handle.task(task_id)
    assert original["follow_ups"] == [follow_up] and original["change"]["conflict"] == ["src/a.py", "src/b.py"]
    assert original["last_error"].startswith("merge_conflict")
    r = await handle.http.post(f"/api/tasks/{follow_up}/cancel")  # out of the way: the one agent retries the original
    assert r.status_code == 200, r.text

    await fail_in_conflict(handle, sim, task_id, 2)  # the retry conflicts again
    await wait_tasks(handle, [task_id], {"dead_letter"})
    await handled(handle)
    assert follow_ups_of(handle, task_id) == [follow_up], "created once, whatever the retries"

    await sim.close()
    data_dir = handle.data_dir
    await handle.http.aclose()
    await handle.server.stop()
    again = await make_hub(data_dir)
    await handled(again)
    assert follow_ups_of(again, task_id) == [follow_up], "a restart replays no follow-up"
    assert (await again.task(task_id))["follow_ups"] == [follow_up]
    assert (await again.http.post(f"/api/tasks/{task_id}/retry")).status_code == 200
    sim = await connect(again, "conflicted")
    await fail_in_conflict(again, sim, task_id, 1)
    await failures(again, task_id, 1)
    await handled(again)
    assert follow_ups_of(again, task_id) == [follow_up], "the index of follow-ups is rebuilt at start"
    await sim.close()


async def test_other_failures_make_no_follow_up(hub: HubHandle, make_remote: Any) -> None:
    """A task failing for another reason gets no follow-up."""
    remote: Remote = make_remote("app")
    assert (await hub.http.post("/api/repos", json={"name": "app", "url": remote.url})).status_code == 201
    sim = await connect(hub, "plain")
    task_id = await hub.submit(description="x", repo="app", max_retries=1, assign_to="plain")
    async with asyncio.timeout(10 * SCALE):
        rec = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    await sim.send({"type": "task_failed", "task_id": task_id, "generation": rec["generation"], "error": "boom"})
    await wait_tasks(hub, [task_id], {"dead_letter"})
    await handled(hub)
    assert follow_ups_of(hub, task_id) == [] and "follow_ups" not in await hub.task(task_id)
    await sim.close()
