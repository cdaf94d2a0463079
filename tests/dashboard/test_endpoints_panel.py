"""The Endpoints panel and the drawer's routing line, in Debian's Chromium against a real hub and fake Ollama."""

from __future__ import annotations

import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from tests.conftest import wait_tasks
from tests.dashboard.conftest import needs_chromium
from tests.hub.endpoints.helpers import NATIVE, connect_agent, wait_registry

pytest.importorskip("playwright.async_api")
from playwright.async_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]


async def test_endpoints_panel_and_routing_line(make_hub, open_dashboard):
    """The panel shows each endpoint's health, models, warm chip and probe score/path, and turns unhealthy live
    when the server stops; the task drawer shows where the task was routed and why."""
    hub = await make_hub(endpoint_health_interval_s=0.2, endpoint_unhealthy_after=1, endpoint_backoff_max_s=0.4)
    server = FakeOllamaServer(models={"coder": NATIVE}, warm=["coder"])
    await server.start()
    try:
        ep_id = (await hub.http.post("/api/endpoints", json={"url": server.url, "name": "gpu-1"})).json()["id"]
        registry = hub.hub.endpoints
        await wait_registry(hub, lambda: (ep_id, "coder") in registry.probes)
        sim = await connect_agent(hub, "worker", ollama_url=server.url, models=["coder"], executors=["ollama"])
        task_id = await hub.submit(description="write a helper")
        await wait_tasks(hub, [task_id], {"completed"})
        page = await open_dashboard(hub.url, hub.admin_token)
        card = page.locator(f'#endpoints [data-endpoint="{ep_id}"]')
        await expect(card).to_contain_text("gpu-1")
        await expect(card.locator(".pill")).to_have_attribute("data-status", "ok")
        coder = card.locator('li[data-model="coder"]')
        await expect(coder).to_contain_text("warm")
        await expect(coder).to_contain_text("probe 1.00 (native")
        await page.locator(f'#tasks tr[data-task-id="{task_id}"]').click()
        await expect(page.locator("#detail-head .routing")).to_contain_text(f"ollama/coder via {ep_id}")
        await expect(page.locator("#detail-head .routing")).to_contain_text("score 1.50 (probe +1 warm +0.5)")
        await server.stop()
        await expect(card.locator(".pill")).to_have_attribute("data-status", "critical")
        await sim.close()
    finally:
        await server.stop()
