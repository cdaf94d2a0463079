"""Browser fixtures: Debian's Chromium driven by Playwright's async API, in the same loop as the hub under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def open_dashboard(browser: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Factory: a new page on ``url``'s dashboard, with ``token`` in the fragment; page errors fail the test."""
    pages: list[Any] = []
    errors: list[str] = []

    async def open_page(url: str, token: str | None = None, width: int = 1280, height: int = 800) -> Any:
        page = await browser.new_page(viewport={"width": width, "height": height})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(10_000)
        await page.goto(f"{url}/dashboard" + (f"#token={token}" if token else ""))
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        await page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
