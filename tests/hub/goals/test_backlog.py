"""The backlog without the loop: the transition table's guards, priority order for ``advance_one`` (as another
driver calls it), the open-goal bound, and what a restart does to goals caught mid-step."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hub.goals.backlog import GoalTransitionError
from hub.goals.model import TRANSITIONS, Goal, GoalStatus
from hub.goals.model_client import _safe_url
from hub.store.records import PutRecord, RecordRow
from tests.conftest import HubHandle
from tests.hub.goals.helpers import MODEL, GoalOllama, GoalReplies, plan, submit_goal, task

S = GoalStatus


@pytest.mark.parametrize(
    ("start", "allowed"),
    [
        (S.SUBMITTED, {S.DECOMPOSING, S.FAILED}),
        (S.DECOMPOSING, {S.SUBMITTED, S.EXECUTING, S.FAILED}),
        (S.EXECUTING, {S.VERIFYING, S.FAILED}),
        (S.VERIFYING, {S.EXECUTING, S.COMPLETE, S.FAILED, S.NEEDS_HUMAN_REVIEW}),
        (S.COMPLETE, set()),
        (S.FAILED, set()),
        (S.NEEDS_HUMAN_REVIEW, set()),
    ],
)
async def test_transition_table_guards_every_move(hub: HubHandle, start: GoalStatus, allowed: set[GoalStatus]) -> None:
    """Each status allows exactly its listed moves; any other raises and leaves the goal as it was."""
    assert set(TRANSITIONS[start]) == allowed
    backlog = hub.hub.goals.backlog
    for to in GoalStatus:
        now = hub.hub.clock.now_ms()
        goal = Goal(id=f"goal-t-{start}-{to}", description="x", status=start, created_at=now, updated_at=now)
        backlog.goals[goal.id] = goal
        if to in allowed:
            await backlog.transition(goal, to, "test")
            assert goal.status is to and goal.history[-1].reason == "test"
        else:
            with pytest.raises(GoalTransitionError):
                await backlog.transition(goal, to, "test")
            assert goal.status is start and goal.history == []


async def test_advance_one_takes_the_most_urgent_goal_first(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """With no loop, each advance_one does one unit: the urgent goal before the older low one; then nothing."""
    async with GoalOllama(GoalReplies([plan(task("a"))])) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL, goals_loop=False, autonomy_enabled=False)
        goals = hub.hub.goals
        low = await submit_goal(hub, priority="low")
        urgent = await submit_goal(hub, priority="urgent")
        assert [g.id for g in goals.pending()] == [urgent["id"], low["id"]]
        assert await goals.advance_one()
        assert goals.get(urgent["id"]).status == "executing" and goals.get(low["id"]).status == "submitted"
        assert [g.id for g in goals.active()] == [urgent["id"]]
        assert await goals.advance_one()
        assert goals.get(low["id"]).status == "executing"
        assert not await goals.advance_one()  # tasks queued, no agent: nothing to do
        assert goals.next_due_s() is None


async def test_open_goals_are_bounded(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """Past goal_max_open open goals a submission is 503 backlog_full; listing honours its limit."""
    hub = await make_hub(goal_max_open=2, goals_loop=False)
    for _ in range(2):
        await submit_goal(hub)
    r = await hub.http.post("/api/goals", json={"description": "one more"})
    assert r.status_code == 503 and r.json()["error"] == "backlog_full"
    listed = (await hub.http.get("/api/goals", params={"limit": 1})).json()
    assert len(listed["goals"]) == 1 and listed["count"] == 2
    assert (await hub.http.get("/api/goals", params={"limit": 0})).status_code == 422


async def test_restart_settles_goals_caught_mid_step(
    make_hub: Callable[..., Awaitable[HubHandle]], tmp_path: Path
) -> None:
    """A restart settles goals mid-step (decomposing: executing if queued, else submitted; verifying: executing)."""
    first = await make_hub(data_dir=tmp_path / "d", goals_loop=False)
    now = first.hub.clock.now_ms()
    queued = await first.submit(description="queued before the crash", goal_id="goal-queued")
    caught = [
        Goal(
            id="goal-queued", description="z", status=S.DECOMPOSING, task_ids=[queued], created_at=now, updated_at=now
        ),
        Goal(
            id="goal-dec",
            description="x",
            status=S.DECOMPOSING,
            task_ids=["task-never"],
            created_at=now,
            updated_at=now,
        ),
        Goal(id="goal-ver", description="y", status=S.VERIFYING, created_at=now, updated_at=now),
    ]
    rows = [PutRecord(RecordRow("goal", g.id, now, g.model_dump_json())) for g in caught]
    rows.append(PutRecord(RecordRow("goal", "goal-bad", now, json.dumps({"id": "goal-bad"}))))
    await first.hub.store.write(rows)
    await first.server.stop()
    second = await make_hub(data_dir=tmp_path / "d", goals_loop=False)
    goals = second.hub.goals
    assert goals.get("goal-dec").status == "submitted" and goals.get("goal-dec").task_ids == []
    assert goals.get("goal-dec").reason == "hub restarted during decomposition"
    assert goals.get("goal-ver").status == "executing"
    assert goals.get("goal-queued").status == "executing" and goals.get("goal-queued").task_ids == [queued]
    assert goals.backlog.n_unreadable == 1
    await goals.advance_one()  # the first pass stores what the load settled (then tries goal-dec: no model)
    stored = {r.key: json.loads(r.body) for r in await second.hub.store.load_records("goal")}
    assert stored["goal-dec"]["status"] == "submitted" and stored["goal-ver"]["status"] == "executing"
    assert stored["goal-bad"] == {"id": "goal-bad"}


def test_model_urls_lose_their_credentials_in_reasons() -> None:
    """A model URL with a user or password is shown without them."""
    assert _safe_url("http://user:pw@127.0.0.1:11434") == "http://127.0.0.1:11434"
    assert _safe_url("https://api.anthropic.com") == "https://api.anthropic.com"


async def test_finished_goals_beyond_the_bound_are_forgotten(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """With goal_keep_final=2, a third finished goal deletes the oldest finished one, in memory and in the store."""
    hub = await make_hub(goal_keep_final=2, goals_loop=False)
    ids = [(await submit_goal(hub))["id"] for _ in range(3)]
    for goal_id in ids:
        await hub.http.post(f"/api/goals/{goal_id}/cancel")
    assert {g.id for g in hub.hub.goals.list_goals()} == set(ids[1:])
    assert {r.key for r in await hub.hub.store.load_records("goal")} == set(ids[1:])
