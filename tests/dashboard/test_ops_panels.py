"""Operator controls of the dashboard in Debian's Chromium against a real hub: restarting an agent, acknowledging
alerts, the costs panel (spend against budgets) and the goal form."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import HubHandle, wait_tasks
from tests.dashboard.test_browser import connect_sim
from tests.hub.repos.conftest import Remote, make_remote  # noqa: F401  (fixture)

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

from tests.dashboard.conftest import needs_chromium  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]


def is_restart(message: dict[str, Any]) -> bool:
    return message.get("type") == "restart_sidecar"


async def test_restart_button_restarts_idle_agents_and_defers_busy_ones(hub: HubHandle, open_dashboard: Any) -> None:
    """Restart on an idle agent sends restart_sidecar; on a busy one it shows deferred and sends once the task ends."""
    idle = await connect_sim(hub, "sim-idle", behaviour="ignore", capabilities=["idle"])
    busy = await connect_sim(hub, "sim-busy", behaviour="ignore", capabilities=["busy"])
    tid = await hub.submit(description="keep it busy", needed_capabilities=["busy"])
    assign = await busy.wait_for(lambda m: m.get("type") == "task_assign")
    await busy.send({"type": "task_accepted", "task_id": tid, "generation": assign["generation"]})
    await wait_tasks(hub, [tid], {"working"})

    viewer = await open_dashboard(hub.url, await hub.mint_token("wall", role="viewer"))
    await expect(viewer.locator('#agents tr[data-agent-id="sim-idle"]')).to_be_visible()
    assert await viewer.locator('[data-agent-action="restart"]').count() == 0, "viewers get no Restart"

    page = await open_dashboard(hub.url, hub.admin_token)
    await expect(page.locator('[data-agent-action="restart"]')).to_have_count(2)
    fits = "(() => { const a = document.getElementById('agents'); return a.scrollWidth <= a.clientWidth; })()"
    assert await page.evaluate(fits), "the Restart buttons fit in the agents panel without sideways scrolling"
    await page.locator('#agents tr[data-agent-id="sim-idle"] [data-agent-action="restart"]').click()
    await expect(page.locator('.toast[data-kind="ok"]').last).to_contain_text("Restarting sim-idle")
    await idle.wait_for(is_restart)

    row = page.locator('#agents tr[data-agent-id="sim-busy"]')
    await row.locator('[data-agent-action="restart"]').click()
    await expect(row.locator('[data-restart="deferred"]')).to_be_visible()
    await expect(page.locator('.toast[data-kind="ok"]').last).to_contain_text(f"deferred until its task {tid} ends")
    assert not any(is_restart(m) for m in busy.inbox)
    result = {"status": "success", "output": "done"}
    await busy.send({"type": "task_complete", "task_id": tid, "generation": assign["generation"], "result": result})
    await busy.wait_for(is_restart)
    await expect(row.locator('[data-restart="deferred"]')).to_have_count(0)
    for sim in (idle, busy):
        await sim.close()


async def test_alerts_can_be_acknowledged_by_admins(hub: HubHandle, open_dashboard: Any) -> None:
    """Admins (only) get Acknowledge on an alert: it is marked, stops counting toward the status; the hub agrees."""
    sim = await connect_sim(hub, behaviour="fail")
    tid = await hub.submit(description="fail into dead-letter", max_retries=1)
    await wait_tasks(hub, [tid], {"dead_letter"})
    await sim.settled()
    await sim.close()  # leaves agents_offline too: two conditions, both warnings

    viewer = await open_dashboard(hub.url, await hub.mint_token("wall", role="viewer"))
    await expect(viewer.locator('.alert[data-condition="dead_letter"]')).to_be_visible()
    assert await viewer.locator(".alert [data-ack]").count() == 0

    page = await open_dashboard(hub.url, hub.admin_token)
    dead = page.locator('.alert[data-condition="dead_letter"]')
    await expect(page.locator("#health-pill")).to_have_attribute("data-status", "warning")
    await dead.locator("[data-ack]").click()
    await expect(dead).to_have_attribute("data-acknowledged", "true")
    await expect(dead).to_contain_text("acknowledged by admin")
    await expect(dead.locator("[data-ack]")).to_have_count(0)
    acked = {c["id"]: c["acknowledged"] for c in (await hub.http.get("/api/alerts")).json()["conditions"]}
    assert acked["dead_letter"] is True and acked["agents_offline"] is False, acked
    await expect(page.locator("#health-pill")).to_have_attribute("data-status", "warning")  # offline still counts
    for cid in [cid for cid, done in acked.items() if not done]:  # agents offline, no agents
        alert = page.locator(f'.alert[data-condition="{cid}"]')
        await alert.locator("[data-ack]").click()
        await expect(alert).to_have_attribute("data-acknowledged", "true")
    await expect(page.locator("#health-pill")).to_have_attribute("data-status", "ok")
    assert (await hub.http.get("/api/alerts")).json()["status"] == "ok"
    assert (await hub.http.get("/health")).json()["alerts"]["status"] == "ok"


async def test_costs_panel_shows_spend_against_budgets(hub: HubHandle, open_dashboard: Any) -> None:
    """Budgets from /api/costs/budgets show as bars of spend against limit, and the spend per hub state as a table."""
    budgets = {"hub_states": {"executing": {"hourly": {"usd": 1.0}}, "resting": {"daily": {"tokens": 5000}}}}
    assert (await hub.http.put("/api/costs/budgets", json=budgets)).status_code == 200
    sim = await connect_sim(hub, "sim-spender")
    sim.usage = {"tokens_in": 600, "tokens_out": 200, "cost_usd": 0.25, "model": "claude-test"}
    tid = await hub.submit(description="spend a quarter")
    await wait_tasks(hub, [tid], {"completed"})
    await sim.settled()
    spend = (await hub.http.get("/api/costs", params={"group_by": "hub_state"})).json()
    assert spend["total"]["usd"] == pytest.approx(0.25)
    report = (await hub.http.get("/api/costs/budgets")).json()["budgets"]
    assert report

    page = await open_dashboard(hub.url, hub.admin_token)
    panel = page.locator("#costs-panel")
    await expect(panel).to_be_visible()
    await expect(page.locator("#costs-summary")).to_contain_text("$0.2500 spent")
    for row in report:
        item = panel.locator(f'li.budget[data-budget="{row["budget"]}"]')
        await expect(item).to_have_attribute("data-state", row["state"])
        limit = row["limit_usd"] if row["limit_usd"] is not None else row["limit_tokens"]
        used = (row["spent_usd"] if row["limit_usd"] is not None else row["spent_tokens"]) / limit
        fraction = float(await item.locator("svg.bar").get_attribute("data-fraction") or "nan")
        assert fraction == pytest.approx(min(1.0, used), abs=1e-3)
        await expect(item).to_contain_text(" of ")
    assert any(r["spent_usd"] for r in report), report  # the quarter counted against a budget
    for group in spend["groups"]:
        await expect(panel.locator(f'tr[data-hub-state="{group["key"]}"]')).to_contain_text(f"${group['usd']:.4f}")
    await sim.close()


async def test_goal_form_submits_a_goal_with_its_repository(
    hub: HubHandle,
    make_remote: Any,  # noqa: F811
    open_dashboard: Any,
) -> None:
    """The goal form posts the description and the chosen repository; a refused goal is shown as an error."""
    remote: Remote = make_remote("site")
    for name in ("first", "site"):
        assert (await hub.http.post("/api/repos", json={"name": name, "url": remote.url})).status_code == 201
    page = await open_dashboard(hub.url, hub.admin_token)
    form = page.locator("#goal-form")
    await expect(form.locator('option[value="site"]')).to_have_count(1)
    await form.locator("textarea[name=description]").fill("make the site fast")
    await form.locator("select[name=repo]").select_option("site")
    await form.locator("button[type=submit]").click()
    await expect(page.locator('.toast[data-kind="ok"]').last).to_contain_text("Submitted goal")
    goals = (await hub.http.get("/api/goals")).json()["goals"]
    assert [(g["description"], g["repo"], g["source"]) for g in goals] == [("make the site fast", "site", "dashboard")]
    await expect(form.locator("textarea[name=description]")).to_have_value("")

    await form.locator("textarea[name=description]").fill("x" * 4001)
    await form.locator("button[type=submit]").click()
    await expect(page.locator('.toast[data-kind="error"]').last).to_contain_text("422")

    viewer = await open_dashboard(hub.url, await hub.mint_token("wall", role="viewer"))
    await expect(viewer.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(viewer.locator("#goal-panel")).to_be_hidden()
