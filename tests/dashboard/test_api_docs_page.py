"""The /api/docs page renders the hub's OpenAPI document in a browser with no route to the internet."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import needs_chromium


@pytest.mark.browser
@needs_chromium
async def test_docs_page_renders_offline(hub, browser):
    """In Chromium with every request to another origin aborted, the page renders the operations and the
    Authorize button, and no request left the hub."""
    page = await browser.new_page()
    outside: list[str] = []
    errors: list[str] = []

    async def route(r):
        if r.request.url.startswith(hub.url):
            await r.continue_()
        else:
            outside.append(r.request.url)
            await r.abort()

    await page.route("**/*", route)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(15_000)
    await page.goto(hub.url + "/api/docs")
    await page.locator(".opblock-summary-path", has_text="/api/tasks/batch").first.wait_for()
    await page.locator("button.authorize").wait_for()
    await page.close()
    assert outside == []
    assert errors == []
