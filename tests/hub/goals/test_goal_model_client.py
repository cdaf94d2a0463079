"""The hub's model client under goals: the local model down -> Claude answers; both down -> the goal waits with
the reason and a retry time, then fails after the bounded attempts, without spinning; the key is never shown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import HubHandle
from tests.hub.goals.helpers import (
    GoalAnthropic,
    GoalReplies,
    closed_url,
    plan,
    submit_goal,
    task,
    wait_goal,
    wait_status,
)

KEY = "sk-ant-test-" + "k" * 24
STATES = ("resting", "executing", "improving", "contemplating", "healing")


async def test_local_model_down_falls_back_to_claude(
    make_hub: Callable[..., Awaitable[HubHandle]], caplog: pytest.LogCaptureFixture
) -> None:
    """With the local model unreachable, Claude decomposes the goal; the key is sent and never logged or stored."""
    caplog.set_level(logging.DEBUG)
    async with GoalAnthropic(GoalReplies([plan(task("a"), task("b", [0]))]), api_key=KEY) as claude:
        hub = await make_hub(hub_model_url=closed_url(), hub_claude_url=claude.url, hub_claude_api_key=KEY)
        goal = await submit_goal(hub)
        done = await wait_status(hub, goal["id"], "executing", "failed", "submitted", timeout_s=30)
        assert done.status == "executing", done.reason
        (request,) = [r for r in claude.requests if r.path == "/v1/messages"]
        assert request.headers["x-api-key"] == KEY and request.body["system"].startswith("You decompose")
        assert hub.hub.goals.model.n_fallbacks == 1
        shown = (await hub.http.get(f"/api/goals/{goal['id']}")).text
        assert KEY not in shown and KEY not in caplog.text


async def test_both_models_down_goal_waits_with_reason(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """Both endpoints down: the goal goes back to submitted with a reason naming both and a retry time."""
    hub = await make_hub(
        hub_model_url=closed_url(), hub_claude_url=closed_url(), hub_claude_api_key=KEY, goal_model_backoff_s=(600.0,)
    )
    goal = await submit_goal(hub)
    waiting = await wait_goal(hub, goal["id"], lambda g: g.model_failures == 1)
    assert waiting.status == "submitted" and waiting.retry_at is not None
    assert waiting.reason.startswith("waiting 600s for a model: no model answered: local model at http://")
    assert "Claude at http://" in waiting.reason and "connection refused" in waiting.reason
    due = hub.hub.goals.next_due_s()
    assert due is not None and 500 < due <= 600
    assert not await hub.hub.goals.advance_one()  # not due: nothing to do, no model call
    assert hub.hub.goals.model.n_calls == 1


async def test_both_models_down_goal_fails_after_attempts_without_spinning(
    make_hub: Callable[..., Awaitable[HubHandle]],
) -> None:
    """After the bounded attempts the goal fails with the reason; the loop did one unit per attempt and then rests."""
    hub = await make_hub(
        hub_model_url=closed_url(),
        hub_claude_url=closed_url(),
        hub_claude_api_key=KEY,
        goal_model_attempts=3,
        goal_model_backoff_s=(0.05, 0.1),
    )
    goal = await submit_goal(hub)
    done = await wait_status(hub, goal["id"], "failed")
    assert "no model answered" in done.reason and "gave up after 3 attempts" in done.reason
    goals = hub.hub.goals
    assert goals.model.n_calls == 3 and goals.n_units == 3
    assert goals.n_passes <= 12  # a polling loop would have made hundreds of passes during the 150 ms of backoff
    assert goals.next_due_s() is None


async def test_no_model_configured_names_it(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """With no local model and no key the reason says so (no network call is made)."""
    hub = await make_hub(goal_model_attempts=1)
    goal = await submit_goal(hub)
    done = await wait_status(hub, goal["id"], "failed")
    assert "no local model configured" in done.reason and "no Claude fallback" in done.reason


async def test_the_hubs_own_model_calls_are_booked_and_gated(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """A decomposition by Claude is booked in the cost ledger as the hub's own call, priced; once the hub state's
    token budget is spent, the next goal's call is refused before it is made and the goal (whose budget of 1 token an
    hour no new hour can make room in) fails at once naming the budget."""
    replies = GoalReplies([plan(task("a")), plan(task("b"))])
    async with GoalAnthropic(replies, api_key=KEY) as claude:
        hub = await make_hub(hub_model_url=closed_url(), hub_claude_url=claude.url, hub_claude_api_key=KEY,
                             goal_model_backoff_s=(600.0,))  # fmt: skip
        first = await submit_goal(hub)
        assert (await wait_status(hub, first["id"], "executing", "failed", timeout_s=30)).status == "executing"
        booked = (await hub.http.get("/api/costs", params={"group_by": "hub_state"})).json()
        row = booked["total"]  # booked to the hub state of the moment of the call
        assert row["calls"] == 1 and row["tokens"] > 0 and row["usd"] > 0
        assert [g["key"] for g in booked["groups"]][0] in STATES
        spent = {"hourly": {"tokens": 1, "action": "stop"}}
        budget = {"hub_states": {state: spent for state in STATES}}
        assert (await hub.http.put("/api/costs/budgets", json=budget)).status_code == 200
        calls_before = len([r for r in claude.requests if r.path == "/v1/messages"])
        second = await submit_goal(hub, description="A second goal once the budget is spent.")
        refused = await wait_goal(hub, second["id"], lambda g: g.status == "failed" or g.model_failures > 0)
        assert refused.status == "failed" and "budget_exhausted" in refused.reason and "hour" in refused.reason
        assert len([r for r in claude.requests if r.path == "/v1/messages"]) == calls_before
