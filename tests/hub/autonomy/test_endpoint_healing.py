"""A healing episode caused by the model endpoint going away, on a real hub with the real clock: the fake Ollama is
stopped, the endpoint turns unhealthy, the hub heals (re-checks with backoff, then routes to Claude first), rests,
and once the server is back the fallback is cleared."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from shared.fakes.ollama_server import FakeOllamaServer
from tests.conftest import SCALE, HubHandle

FAST = {
    "endpoint_health_interval_s": 0.1, "endpoint_unhealthy_after": 2, "endpoint_backoff_max_s": 0.4,
    "endpoint_http_timeout_s": 2.0, "endpoint_probe_enabled": False, "autonomy_tick_s": 0.2,
    "autonomy_reprobe_backoff_s": (0.05, 0.1), "autonomy_healing_cooldown_s": 0.0,
}  # fmt: skip


async def until(hub: HubHandle, predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    """Wait until ``predicate()`` holds, looking again after each event on the hub's bus (and at least each second,
    since the bus is lossy)."""
    with hub.hub.bus.subscribe() as events:
        async with asyncio.timeout(timeout_s * SCALE):
            while not predicate():
                try:
                    await asyncio.wait_for(events.get(), 1.0)
                except TimeoutError:
                    pass


async def test_killing_the_model_endpoint_makes_the_hub_heal_and_fall_back(
    make_hub: Callable[..., Awaitable[HubHandle]],
) -> None:
    """Endpoint down: resting -> healing -> resting with a re-check and a routing fallback to Claude in the audit
    log; endpoint back: the fallback is cleared."""
    hub = await make_hub(**FAST)
    server = FakeOllamaServer()
    await server.start()
    port = urlsplit(server.url).port
    try:
        ep_id = (await hub.http.post("/api/endpoints", json={"url": server.url})).json()["id"]
        endpoint = hub.hub.endpoints.endpoints[ep_id]
        await until(hub, lambda: endpoint.healthy is True)
        await server.stop()
        scheduler = hub.hub.fleet.scheduler
        await until(hub, lambda: scheduler.prefer_target == "claude")

        async def audit() -> list[dict[str, Any]]:
            return (await hub.http.get("/api/hub/healing-history")).json()["history"]  # newest first

        healing = await audit()
        assert (healing[0]["action"], healing[0]["target"]) == ("routing_fallback", "endpoints")
        states = hub.hub.autonomy.fsm
        await until(hub, lambda: states.current.value == "resting")
        history = (await hub.http.get("/api/hub/history")).json()["transitions"]
        moves = [(t["from"], t["to"]) for t in history]
        assert ("resting", "healing") in moves and ("healing", "resting") in moves
        reason = next(t["reason"] for t in history if t["to"] == "healing")
        assert "all model endpoints unhealthy" in reason
        await server.start(port=port)
        await until(hub, lambda: endpoint.healthy is True and scheduler.prefer_target is None)
    finally:
        await server.stop()
