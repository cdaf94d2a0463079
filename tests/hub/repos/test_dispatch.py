"""Tasks with a repository on a real hub: the registry reaches agents, only agents that reached a repository get
its tasks, with a checkout at the base commit the hub resolved; the reported change is stored and shown."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle, wait_tasks
from tests.hub.repos.conftest import AgentFactory, Remote, answer_registry, registry_count


async def waiting_code(handle: HubHandle, task_id: str, code: str) -> dict[str, str]:
    """Wait (on the hub's events) until the task waits with reason ``code``."""
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(10 * SCALE):
            while (reason := handle.hub.queue.tasks[task_id].waiting_reason) is None or reason["code"] != code:
                await events.get()
    return reason


async def test_registry_reaches_agents_and_tasks_go_only_where_the_repo_is_reachable(
    hub: HubHandle, make_agent: AgentFactory, make_remote: Any
) -> None:
    """repo_registry follows identify and every change; a task waits (no agent can reach repo X) until one can."""
    remote: Remote = make_remote("app")
    assert (await hub.http.post("/api/repos", json={"name": "app", "url": remote.url})).status_code == 201
    blind: AgentSim = await make_agent(behaviour="ignore")
    registry = await answer_registry(blind, 1, reach=lambda name: False)
    assert registry["repos"] == [{"name": "app", "url": remote.url, "default_branch": "main"}]

    task_id = await hub.submit(description="fix the bug", repo="app")
    reason = await waiting_code(hub, task_id, "no_agent_can_reach_repo")
    assert reason["detail"] == "no agent can reach repo app"

    other: Remote = make_remote("lib")
    assert (await hub.http.post("/api/repos", json={"name": "lib", "url": other.url})).status_code == 201
    again = await registry_count(blind, 2)
    assert [r["name"] for r in again["repos"]] == ["app", "lib"], "a registry change reaches connected agents"

    able: AgentSim = await make_agent(behaviour="ignore")
    await answer_registry(able, 1)
    assign = await able.wait_for(lambda m: m.get("type") == "task_assign")
    assert assign["task_id"] == task_id and blind.received == []
    checkout = assign["checkout"]
    assert checkout["name"] == "app" and checkout["url"] == remote.url
    assert checkout["branch"] == f"agentcom/{task_id}" and checkout["default_branch"] == "main"
    assert checkout["base_commit"] == remote.head()
    assert (await hub.task(task_id))["base_commit"] == remote.head(), "the base commit is recorded on the task"


async def test_task_without_repo_gets_no_checkout(hub: HubHandle, make_agent: AgentFactory) -> None:
    """A shell task without a repository is sent as before: no checkout, no reachability needed."""
    sim: AgentSim = await make_agent(behaviour="ignore")
    task_id = await hub.submit(description="echo hi", executor="shell", metadata={"shell_command": "echo hi"})
    assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    assert assign["task_id"] == task_id and assign.get("checkout") is None


def change(task_id: str, base: str, **extra: Any) -> dict[str, Any]:
    return {
        "repo": "app",
        "branch": f"agentcom/{task_id}",
        "base_commit": base,
        "commit": "c0ffee" * 6 + "beef",
        "files": [{"path": "src/app.py", "added": 3, "removed": 1}, {"path": "tests/test_app.py", "added": 5}],
        "added": 8,
        "removed": 1,
        "diff": "--- a/src/app.py\n+++ b/src/app.py\n+<script>alert(1)</script>\n",
        "tier": "auto_merge",
        "tier_reasons": ["verified", "2 files, 9 lines"],
        "published": "merged",
        "merged_commit": "ab" * 20,
        **extra,
    }


async def test_reported_change_is_stored_shown_and_published(
    hub: HubHandle, make_agent: AgentFactory, make_remote: Any
) -> None:
    """The result's change is stored on the task (API, restart-proof), in its history, and on the dashboard's bus."""
    remote: Remote = make_remote("app")
    assert (await hub.http.post("/api/repos", json={"name": "app", "url": remote.url})).status_code == 201
    sim: AgentSim = await make_agent(behaviour="ignore")
    await answer_registry(sim)
    task_id = await hub.submit(description="fix it", repo="app")
    assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    reported = change(task_id, assign["checkout"]["base_commit"])
    with hub.hub.bus.subscribe() as events:
        await sim.send(
            {
                "type": "task_complete",
                "task_id": task_id,
                "generation": assign["generation"],
                "result": {"status": "success", "output": "done", "change": reported},
            }
        )
        async with asyncio.timeout(10 * SCALE):
            while (event := await events.get()).get("event") != "task_completed":
                pass
    assert event["change"]["tier"] == "auto_merge" and event["change"]["published"] == "merged"
    assert event["change"]["n_files"] == 2 and event["change"]["added"] == 8
    await wait_tasks(hub, [task_id], {"completed"})
    shown = await hub.task(task_id)
    assert shown["change"]["commit"] == reported["commit"] and shown["change"]["files"] == reported["files"]
    completed = [h for h in shown["history"] if h["event"] == "completed"][-1]["details"]
    assert (completed["tier"], completed["published"]) == ("auto_merge", "merged")
    stranger = await hub.mint_token("stranger")
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {stranger}"}) as client:
        theirs = (await client.get(f"/api/tasks/{task_id}")).json()
    assert "change" not in theirs and "change" in theirs["withheld"], "an unrelated agent does not read the diff"
    from hub.dashboard_state import task_detail

    drawer = task_detail(hub.hub.queue.tasks[task_id])["change"]
    assert drawer["diff"] == reported["diff"] and drawer["files"][0] == {
        "path": "src/app.py",
        "added": 3,
        "removed": 1,
        "status": "modified",
    }
