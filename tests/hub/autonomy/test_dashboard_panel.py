"""The dashboard's hub panel in Chromium: the machine's state, its timeline and healing log (needs Chromium)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hub.autonomy.states import State
from tests.conftest import HubHandle
from tests.dashboard.conftest import browser, needs_chromium, open_dashboard  # noqa: F401 (fixtures)
from tests.hub.autonomy.conftest import WAIT_S, auto_of, holder

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]


async def test_hub_panel_shows_state_and_timeline(
    start: Callable[..., Awaitable[HubHandle]],
    open_dashboard: Callable[..., Awaitable[Any]],  # noqa: F811
) -> None:
    """With work queued the panel shows ``executing`` and the transitions so far, newest first, with durations; a
    pause reaches the open page by its event."""
    handle = await start()
    held = await holder(handle)
    await handle.submit(description="it never reports")
    await auto_of(handle).fsm.wait_for(State.EXECUTING, WAIT_S)
    page = await open_dashboard(handle.url, handle.admin_token)
    panel = page.locator("#hub-fsm-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator("header .pill").first).to_have_text("executing")
    items = panel.locator(".fsm-timeline li")
    await expect(items).to_have_count(2)
    await expect(items.first).to_contain_text("work waiting")
    await expect(items.first).to_contain_text("in resting")
    await expect(panel).to_contain_text("no healing yet")
    assert (await handle.http.post("/api/hub/pause")).json() == {"status": "paused"}
    await expect(panel.locator("header .pill").nth(1)).to_have_text("paused")  # pushed by the hub_fsm event
    await held.close()
