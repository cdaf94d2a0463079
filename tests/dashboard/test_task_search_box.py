"""The task list's search box in Debian's Chromium against a real hub: the hub searches every stored task (``q=``),
and live updates still apply to the rows shown."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import HubHandle

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

from tests.dashboard.conftest import needs_chromium  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]


async def _bulk(hub: HubHandle, n: int) -> None:
    for start in range(0, n, 500):
        body = {"tasks": [{"description": f"bulk {i}"} for i in range(start, min(n, start + 500))]}
        r = await hub.http.post("/api/tasks/batch", json=body)
        assert r.status_code == 201, r.text


async def test_search_box_finds_a_task_beyond_what_the_page_loaded(hub: HubHandle, open_dashboard: Any) -> None:
    """Typing in the search box shows a task that neither the page nor a 1,000-task answer held: the hub searched."""
    far = await hub.submit(description="Paint the Lighthouse", priority="low")  # last in the hub's order
    await _bulk(hub, 1100)  # more than the page's snapshot (and far not recent) and than the list asks for (1,000)
    page = await open_dashboard(hub.url, hub.admin_token)
    rows = page.locator("#tasks tr[data-task-id]")
    await expect(rows).to_have_count(100)
    assert await page.locator(f'#tasks tr[data-task-id="{far}"]').count() == 0
    r = await hub.http.get("/api/tasks", params={"limit": 1000})
    assert far not in {t["id"] for t in r.json()["tasks"]}  # an unsearched answer of the list's size misses it
    asked: list[str] = []
    page.on("request", lambda req: asked.append(req.url) if "/api/tasks?" in req.url else None)

    await page.locator("#task-search").press_sequentially("lighthouse")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-task-id", far)
    assert asked and parse_qs(urlparse(asked[-1]).query)["q"] == ["lighthouse"]


async def test_live_updates_keep_to_the_search(hub: HubHandle, open_dashboard: Any) -> None:
    """While searching, a new task the words match is shown live and one they do not match is not inserted."""
    await _bulk(hub, 5)
    page = await open_dashboard(hub.url, hub.admin_token)
    rows = page.locator("#tasks tr[data-task-id]")
    await expect(rows).to_have_count(5)
    await page.fill("#task-search", "osprey")
    await expect(page.locator("#tasks .empty")).to_contain_text("No task matches")

    other = await hub.submit(description="Feed the cat")
    hit = await hub.submit(description="Band the OSPREY chicks")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-task-id", hit)
    assert await page.locator(f'#tasks tr[data-task-id="{other}"]').count() == 0
    await page.fill("#task-search", "")
    await expect(rows).to_have_count(7)
