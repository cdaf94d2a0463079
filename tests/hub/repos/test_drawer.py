"""The task drawer in Chromium shows a task's change: branch, commit, tier, publication, files and the diff, escaped."""

from __future__ import annotations

from typing import Any

import pytest

from shared.agent_sim import AgentSim
from tests.conftest import HubHandle, wait_tasks
from tests.dashboard.conftest import browser, needs_chromium, open_dashboard  # noqa: F401  (fixtures)
from tests.hub.repos.conftest import Remote, answer_registry
from tests.hub.repos.test_dispatch import change

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]


async def test_drawer_shows_the_change_with_the_diff_as_text(
    hub: HubHandle,
    make_remote: Any,
    open_dashboard: Any,  # noqa: F811
) -> None:
    """A completed task's drawer lists branch, commit, tier, merge, files with +/- and the diff (markup not run)."""
    remote: Remote = make_remote("app")
    assert (await hub.http.post("/api/repos", json={"name": "app", "url": remote.url})).status_code == 201
    sim = AgentSim(hub.ws_url, "sim-git", await hub.mint_token("sim-git"), behaviour="ignore")
    await sim.connect()
    await answer_registry(sim)
    task_id = await hub.submit(description="fix it", repo="app")
    assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    reported = change(task_id, assign["checkout"]["base_commit"])
    await sim.send({"type": "task_accepted", "task_id": task_id, "generation": assign["generation"]})
    result = {"status": "success", "output": "done", "change": reported}
    await sim.send({"type": "task_complete", "task_id": task_id, "generation": assign["generation"], "result": result})
    await wait_tasks(hub, [task_id], {"completed"})

    page = await open_dashboard(hub.url, hub.admin_token)
    await page.locator(f'#tasks tr[data-task-id="{task_id}"]').click()
    drawer = page.locator("#detail-body [data-change]")
    for text in (f"agentcom/{task_id}", "on app", reported["commit"][:12], "auto_merge", "merged", "+8", "-1"):
        await expect(drawer).to_contain_text(text)
    await expect(page.locator("#detail-body ul.files li")).to_have_count(2)
    await expect(page.locator("#detail-body ul.files li").first).to_contain_text("src/app.py +3 -1")
    await page.locator("#detail-body details summary", has_text="Diff").click()
    await expect(page.locator("#detail-body pre.diff")).to_contain_text("<script>alert(1)</script>")
    assert await page.locator("#detail-body pre.diff script").count() == 0, "the diff is text, never markup"
    await sim.close()
