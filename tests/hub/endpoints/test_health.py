"""Health checks against real fake Ollama servers: discovery, failure, backoff, recovery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from hub.endpoints.health import check
from shared.fakes.ollama_server import FakeOllamaServer
from tests.conftest import HubHandle
from tests.hub.endpoints.helpers import NATIVE, wait_registry

MakeHub = Callable[..., Awaitable[HubHandle]]
FAST = {"endpoint_health_interval_s": 0.1, "endpoint_unhealthy_after": 2, "endpoint_backoff_max_s": 0.8,
        "endpoint_http_timeout_s": 2.0, "endpoint_probe_enabled": False}  # fmt: skip


async def test_models_capabilities_and_warm_models_are_discovered(make_hub: MakeHub) -> None:
    """A check lists the server's models, their capabilities and context length (/api/show), the loaded ones and
    their VRAM (/api/ps)."""
    hub = await make_hub(**FAST)
    async with FakeOllamaServer(models={"native:1b": NATIVE}, warm=["native:1b"]) as server:
        r = await hub.http.post("/api/endpoints", json={"url": server.url})
        ep_id = r.json()["id"]
        registry = hub.hub.endpoints
        await wait_registry(hub, lambda: registry.endpoints[ep_id].healthy is True)
        shown = (await hub.http.get(f"/api/endpoints/{ep_id}")).json()
    assert shown["health"] == "healthy" and shown["failures"] == 0
    models = {m["name"]: m for m in shown["models"]}
    assert set(models) == {"fake-coder:latest", "native:1b"}
    assert models["native:1b"]["capabilities"] == ["completion", "tools", "thinking"]
    assert models["native:1b"]["context_length"] == 32768 and models["native:1b"]["discovered"]
    assert [w["name"] for w in shown["warm"]] == ["native:1b"] and shown["vram_bytes"] == 1_000_000_000
    assert {b["model"] for b in server.bodies("/api/show")} == {"fake-coder:latest", "native:1b"}


async def test_unhealthy_when_the_server_stops_and_recovers_with_backoff(make_hub: MakeHub) -> None:
    """N failed checks in a row make an endpoint unhealthy; it is then checked after doubling waits (capped) and is
    healthy again once its server answers."""
    hub = await make_hub(**FAST)
    server = FakeOllamaServer()
    await server.start()
    port = urlsplit(server.url).port
    r = await hub.http.post("/api/endpoints", json={"url": server.url})
    ep = hub.hub.endpoints.endpoints[r.json()["id"]]
    await wait_registry(hub, lambda: ep.healthy is True)
    await server.stop()
    waits: list[int] = []

    def record_waits() -> bool:
        if ep.last_check_at is not None and ep.failures and len(waits) < ep.failures:
            waits.append(ep.next_check_at - ep.last_check_at)
        return ep.failures >= 6

    await wait_registry(hub, record_waits)
    assert ep.healthy is False and ep.last_error
    assert (await hub.http.get(f"/api/endpoints/{ep.id}")).json()["health"] == "unhealthy"
    assert ep.warm == {}
    assert waits[:6] == [100, 100, 200, 400, 800, 800], waits  # interval until unhealthy, then doubling, capped
    await server.start(port=port)
    try:
        await wait_registry(hub, lambda: ep.healthy is True)
        assert ep.failures == 0 and ep.last_error is None
    finally:
        await server.stop()


async def test_a_check_in_flight_does_not_revive_a_deleted_endpoint(make_hub: MakeHub) -> None:
    """A check that finishes after its endpoint was deleted stores nothing: it stays deleted after a restart."""
    hub = await make_hub(**{**FAST, "endpoint_health_interval_s": 3600})
    async with FakeOllamaServer() as server:
        r = await hub.http.post("/api/endpoints", json={"url": server.url})
        registry = hub.hub.endpoints
        ep = registry.endpoints[r.json()["id"]]
        await wait_registry(hub, lambda: ep.healthy is True)
        ep.healthy, ep.models = None, {}  # as before its first check, which would store what it finds
        assert await registry.remove(ep.id) is ep
        async with httpx.AsyncClient() as client:
            await check(client, registry, ep)  # the check that was in flight
        assert ep.healthy is True and ep.id not in registry.endpoints
    await hub.server.stop()
    again = await make_hub(data_dir=hub.data_dir, **FAST)
    assert (await again.http.get("/api/endpoints")).json()["endpoints"] == []
