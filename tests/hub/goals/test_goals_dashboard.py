"""The Goals panel: the snapshot and the dashboard socket carry the goals with their task DAG levels, and the page
renders them (hostile descriptions as text)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets

from tests.conftest import HubHandle
from tests.dashboard.conftest import needs_chromium
from tests.hub.goals.helpers import MODEL, GoalOllama, GoalReplies, plan, submit_goal, task, wait_status

DIAMOND = plan(task("root"), task("left", [0]), task("right", [0]), task("join", [1, 2]))
HOSTILE = "<img src=x onerror=window.__pwned=1> ship it"


async def _recv_goals(ws: Any, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = json.loads(await ws.recv())
            for event in msg.get("data", []) if msg["type"] == "events" else []:
                if event.get("kind") == "goals" and until(event):
                    return event  # type: ignore[no-any-return]


async def test_snapshot_and_socket_carry_goals_with_dag_levels(make_hub: Callable[..., Awaitable[HubHandle]]) -> None:
    """A goal's change reaches dashboard pages as a goals event; the snapshot shows its tasks indented by depth."""
    async with GoalOllama(GoalReplies([DIAMOND])) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL, dashboard_batch_ms=20)
        async with websockets.connect(hub.ws_url + "/dashboard") as ws:
            await ws.send(json.dumps({"type": "auth", "token": hub.admin_token}))
            goal = await submit_goal(hub, description=HOSTILE)
            event = await _recv_goals(ws, lambda e: any(g["status"] == "executing" for g in e["goals"]))
        assert [t["level"] for t in event["tasks"]] == [0, 1, 1, 2]
        snap = (await hub.http.get("/api/dashboard/state")).json()["goals"]
        assert snap["count"] == 1 and snap["goals"][0]["id"] == goal["id"]
        assert snap["goals"][0]["description"] == HOSTILE and snap["goals"][0]["total"] == 4
        assert [t["level"] for t in snap["tasks"]] == [0, 1, 1, 2]


@pytest.mark.browser
@needs_chromium
async def test_goals_panel_renders_goal_and_dag(make_hub: Callable[..., Awaitable[HubHandle]], browser: Any) -> None:
    """The page lists the goal with its status and its four tasks indented by level; markup stays text."""
    from playwright.async_api import expect

    async with GoalOllama(GoalReplies([DIAMOND])) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL, dashboard_batch_ms=20)
        goal = await submit_goal(hub, description=HOSTILE)
        await wait_status(hub, goal["id"], "executing")
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{hub.url}/dashboard#token={hub.admin_token}")
        item = page.locator(f'[data-goal-id="{goal["id"]}"]')
        await expect(item).to_contain_text(HOSTILE)
        await expect(item.locator(".goal-task")).to_have_count(4)
        levels = await item.locator(".goal-task").evaluate_all("(ns) => ns.map((n) => n.dataset.level)")
        assert levels == ["0", "1", "1", "2"]
        assert await page.evaluate("typeof window.__pwned") == "undefined"
        assert await page.locator("#goals-panel img").count() == 0
        await page.close()
        assert errors == []
