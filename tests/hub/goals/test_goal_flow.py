"""A goal carried by a real hub from one sentence to complete: decomposed by the fake model over a real repository's
file tree, executed by simulated agents in DAG order, verified; and carried on across a hub restart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.agent_sim import AgentSim
from tests.conftest import HubHandle
from tests.hub.goals.helpers import (
    DOWN,
    MODEL,
    GoalOllama,
    GoalReplies,
    git_repo,
    plan,
    submit_goal,
    task,
    verdict,
    wait_status,
)

THREE = plan(
    task("Create src/util.py with a helper", files=["src/util.py"]),
    task("Use the helper from src/app.py", [0], ["src/app.py"]),
    task("Test the helper", [0, 1], ["tests/test_util.py"]),
)


@pytest.fixture
async def agents() -> AsyncIterator[Callable[[HubHandle], Awaitable[AgentSim]]]:
    sims: list[AgentSim] = []

    async def connect(handle: HubHandle, **kwargs: Any) -> AgentSim:
        agent_id = f"sim-{uuid.uuid4().hex[:8]}"
        kwargs.setdefault("reach_repos", True)
        sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id), **kwargs)
        await sim.connect()
        sims.append(sim)
        return sim

    yield connect
    for sim in sims:
        await sim.close()


async def test_goal_goes_from_sentence_to_complete_in_dag_order(
    make_hub: Callable[..., Awaitable[HubHandle]], agents: Any, tmp_path: Path
) -> None:
    """A goal is decomposed over the repo's tree, its tasks run in DAG order with goal_id, then it is verified."""
    repo = git_repo(tmp_path / "origin")
    replies = GoalReplies([THREE], [verdict(True, "util exists and is used")])
    async with GoalOllama(replies) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL)
        sim = await agents(hub)
        goal = await submit_goal(hub, repo=str(repo), checks=["the app uses the helper"], priority="high")
        assert goal["status"] == "submitted" and goal["source"] == "api" and goal["priority"] == 1
        done = await wait_status(hub, goal["id"], "complete", "failed", "needs_human_review")
        assert done.status == "complete", done.reason
        assert [h.status for h in done.history] == ["submitted", "decomposing", "executing", "verifying", "complete"]
        prompt = model.bodies("/api/chat")[0]["messages"][1]["content"]
        assert "src/app.py" in prompt and "tests/test_app.py" in prompt and "the app uses the helper" in prompt
        assert model.bodies("/api/chat")[0]["format"] == "json"
        ids = done.task_ids
        assert [r.task_id for r in sim.received] == ids  # one agent: dependencies force this order
        tasks = [hub.hub.queue.tasks[t] for t in ids]
        assert [t.depends_on for t in tasks] == [[], [ids[0]], [ids[0], ids[1]]]
        assert {t.goal_id for t in tasks} == {goal["id"]} and {t.repo for t in tasks} == {repo.name}
        assert tasks[0].file_hints == [{"path": "src/util.py"}] and tasks[0].success_criteria == ["ok"]
        r = await hub.http.get(f"/api/goals/{goal['id']}")
        body = r.json()
        assert r.status_code == 200 and body["status"] == "complete" and body["verdict"] == "util exists and is used"
        assert body["progress"] == {"completed": 3, "total": 3, "fraction": 1.0}
        assert [t["depends_on"] for t in body["tasks"]] == [[], [ids[0]], ids[:2]]
        listed = (await hub.http.get("/api/goals", params={"status": "complete"})).json()
        assert [g["id"] for g in listed["goals"]] == [goal["id"]]


async def test_goal_survives_a_restart_mid_execution(
    make_hub: Callable[..., Awaitable[HubHandle]], agents: Any, tmp_path: Path
) -> None:
    """A goal executing when the hub stops is loaded again with its tasks and completes on the next hub."""
    replies = GoalReplies([THREE])
    async with GoalOllama(replies) as model:
        first = await make_hub(data_dir=tmp_path / "data", hub_model_url=model.url, hub_model=MODEL)
        goal = await submit_goal(first)  # no agent yet: the tasks wait
        executing = await wait_status(first, goal["id"], "executing")
        await first.server.stop()
        second = await make_hub(data_dir=tmp_path / "data", hub_model_url=model.url, hub_model=MODEL)
        reloaded = second.hub.goals.get(goal["id"])
        assert reloaded.status == "executing" and reloaded.task_ids == executing.task_ids
        await agents(second)
        done = await wait_status(second, goal["id"], "complete", "failed", "needs_human_review")
        assert done.status == "complete", done.reason
        assert len(model.bodies("/api/chat")) == 2  # one decomposition, one verdict: nothing redone


async def test_failed_tasks_get_follow_up_rounds_then_need_review(
    make_hub: Callable[..., Awaitable[HubHandle]], agents: Any
) -> None:
    """Failed tasks are re-queued as a follow-up round; past the bound the goal needs human review."""
    async with GoalOllama(GoalReplies([plan(task("a"), task("b", [0]))])) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL, goal_rounds=1)
        await agents(hub, behaviour="fail")
        goal = await submit_goal(hub)
        done = await wait_status(hub, goal["id"], "complete", "failed", "needs_human_review")
        assert done.status == "needs_human_review"
        assert "after 1 follow-up rounds" in done.reason and done.rounds == 1
        assert len(done.task_ids) == 4  # two rounds of two
        follow_a, follow_b = (hub.hub.queue.tasks[t] for t in done.task_ids[2:])
        assert follow_b.depends_on == [follow_a.id] and "Follow-up" in follow_a.description
        assert [b for b in model.bodies("/api/chat") if b["messages"][0]["content"].startswith("You verify")] == []


async def test_model_gaps_become_a_follow_up_round(make_hub: Callable[..., Awaitable[HubHandle]], agents: Any) -> None:
    """The model's gaps on a finished goal become follow-up tasks, and the goal completes after them."""
    gaps = [{"description": "Document the helper", "files": ["README.md"], "verification": ["README mentions it"]}]
    replies = GoalReplies([plan(task("a"))], [verdict(False, "undocumented", gaps), verdict(True, "documented")])
    async with GoalOllama(replies) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL)
        change = {"repo": "demo", "branch": "goal/a", "base_commit": "abc123", "diff": "+def util(): ...\n"}
        await agents(hub, result={"status": "success", "outcome": "verified", "output": "done", "change": change})
        goal = await submit_goal(hub)
        done = await wait_status(hub, goal["id"], "complete", "failed", "needs_human_review")
        assert done.status == "complete" and done.rounds == 1 and done.verdict == "documented"
        asked = [
            b["messages"][1]["content"]
            for b in model.bodies("/api/chat")
            if b["messages"][0]["content"].startswith("You verify")
        ]
        assert len(asked) == 2 and "Combined diff:\n+def util(): ..." in asked[0]
        follow = hub.hub.queue.tasks[done.task_ids[1]]
        assert follow.description == "Document the helper" and follow.goal_id == goal["id"]
        assert [h.status for h in done.history][-3:] == ["executing", "verifying", "complete"]


async def test_cancel_fails_the_goal_and_cancels_its_tasks(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """Cancelling an executing goal cancels its live tasks; a final goal cannot be cancelled again (409)."""
    async with GoalOllama(GoalReplies([THREE])) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL)
        goal = await submit_goal(hub)
        await wait_status(hub, goal["id"], "executing")
        r = await hub.http.post(f"/api/goals/{goal['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "failed" and "cancelled by" in r.json()["reason"]
        statuses = [t["status"] for t in r.json()["tasks"]]
        assert statuses[0] == "cancelled" and set(statuses) <= {"cancelled", "dead_letter"}  # dependents cascade
        again = await hub.http.post(f"/api/goals/{goal['id']}/cancel")
        assert again.status_code == 409 and again.json()["error"] == "invalid_transition"


async def test_verifier_down_waits_then_needs_review(
    make_hub: Callable[..., Awaitable[HubHandle]], agents: Any
) -> None:
    """With the model failing at verification the goal waits in verifying, then needs review naming why."""
    async with GoalOllama(GoalReplies([plan(task("a"))], [DOWN])) as model:
        hub = await make_hub(
            hub_model_url=model.url, hub_model=MODEL, goal_model_attempts=2, goal_model_backoff_s=(0.05,)
        )
        await agents(hub)
        goal = await submit_goal(hub)
        done = await wait_status(hub, goal["id"], "complete", "failed", "needs_human_review")
        assert done.status == "needs_human_review" and "HTTP 500" in done.reason
        assert "gave up after 2 attempts" in done.reason
        assert [h.status for h in done.history][-2:] == ["verifying", "needs_human_review"]
        assert any(h.status == "verifying" for h in done.history) and done.model_failures == 2
