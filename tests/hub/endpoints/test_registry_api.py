"""The endpoint registry over HTTP: admin add/list/show/delete, agent reports, validation, restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from tests.conftest import HubHandle
from tests.hub.endpoints.helpers import connect_agent, wait_registry

MakeHub = Callable[..., Awaitable[HubHandle]]
QUIET = {"endpoint_probe_enabled": False}


async def test_admin_adds_lists_shows_and_deletes(make_hub: MakeHub) -> None:
    """An admin adds an endpoint (201), the same URL spelled otherwise updates it (200); listed, shown, deleted."""
    hub = await make_hub(**QUIET)
    r = await hub.http.post("/api/endpoints", json={"url": "http://GPU-Box:11434/", "name": "gpu", "models": ["q"]})
    assert r.status_code == 201, r.text
    ep = r.json()
    assert ep["url"] == "http://gpu-box:11434" and ep["kind"] == "ollama" and ep["added_by_admin"]
    assert [m["name"] for m in ep["models"]] == ["q"]
    again = await hub.http.post("/api/endpoints", json={"url": "http://gpu-box:11434", "models": ["r"]})
    assert again.status_code == 200 and again.json()["id"] == ep["id"]
    listed = (await hub.http.get("/api/endpoints")).json()["endpoints"]
    assert [e["id"] for e in listed] == [ep["id"]] and [m["name"] for m in listed[0]["models"]] == ["q", "r"]
    assert listed[0]["name"] == "gpu"
    shown = await hub.http.get(f"/api/endpoints/{ep['id']}")
    assert shown.status_code == 200 and shown.json()["probe_results"] == {}
    assert (await hub.http.delete(f"/api/endpoints/{ep['id']}")).json() == {"deleted": ep["id"]}
    assert (await hub.http.get(f"/api/endpoints/{ep['id']}")).json()["error"] == "endpoint_not_found"
    assert (await hub.http.delete(f"/api/endpoints/{ep['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://user:s3cret@gpu:11434"}, "url"),
        ({"url": "http://:s3cret@gpu:11434"}, "url"),
        ({"url": "ftp://gpu:11434"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "http://gpu:11434/?token=s3cret"}, "url"),
        ({"url": "http://gpu:11434/" + "a" * 600}, "url"),
        ({"url": "http://gpu:99999"}, "url"),
        ({"url": "http://gpu bad:11434"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "http://gpu:11434", "kind": "vllm"}, "kind"),
        ({"url": "http://gpu:11434", "models": ["m"] * 65}, "models"),
        ({"url": "http://gpu:11434", "name": "x" * 65}, "name"),
        ({"url": 7}, "url"),
        ({}, "url"),
    ],
)
async def test_bad_admin_input_is_422(make_hub: MakeHub, body: dict[str, object], field: str) -> None:
    """A URL with credentials, a non-http scheme, a query, a huge URL or bad fields: 422 naming the field, no echo."""
    hub = await make_hub(**QUIET)
    r = await hub.http.post("/api/endpoints", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_failed"
    assert field in [e["field"] for e in r.json()["errors"]]
    assert "s3cret" not in r.text
    assert hub.hub.endpoints.endpoints == {}


async def test_only_admins_change_the_registry(make_hub: MakeHub) -> None:
    """Agent and viewer tokens may list endpoints but not add, delete or probe them (403)."""
    hub = await make_hub(**QUIET)
    viewer = await hub.mint_token("v", role="viewer")
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {viewer}"}) as client:
        assert (await client.get("/api/endpoints")).status_code == 200
        assert (await client.post("/api/endpoints", json={"url": "http://gpu:1"})).status_code == 403
        assert (await client.delete("/api/endpoints/ep-x")).status_code == 403
        assert (await client.post("/api/endpoints/ep-x/probe")).status_code == 403
    async with httpx.AsyncClient(base_url=hub.url) as anonymous:
        assert (await anonymous.get("/api/endpoints")).status_code == 401


async def test_registry_is_bounded(make_hub: MakeHub) -> None:
    """Past endpoint_max the registry refuses more endpoints (409 endpoint_limit), and keeps the ones it has."""
    hub = await make_hub(endpoint_max=2, **QUIET)
    for i in range(2):
        assert (await hub.http.post("/api/endpoints", json={"url": f"http://gpu{i}:11434"})).status_code == 201
    r = await hub.http.post("/api/endpoints", json={"url": "http://gpu9:11434"})
    assert r.status_code == 409 and r.json()["error"] == "endpoint_limit"
    assert (await hub.http.post("/api/endpoints", json={"url": "http://gpu0:11434", "name": "x"})).status_code == 200
    assert len((await hub.http.get("/api/endpoints")).json()["endpoints"]) == 2


async def test_agents_report_endpoints_keyed_by_normalised_url(make_hub: MakeHub) -> None:
    """Two agents naming one Ollama (spelled differently) make one endpoint with both as owners; a URL with
    credentials is refused and counted, never stored."""
    hub = await make_hub(**QUIET)
    async with FakeOllamaServer() as server:
        a = await connect_agent(hub, "a1", ollama_url=server.url + "/", models=["fake-coder:latest"])
        b = await connect_agent(hub, "a2", ollama_url=server.url.upper().replace("HTTP", "http"), models=["other"])
        c = await connect_agent(hub, "a3", ollama_url="http://u:s3cret@gpu:11434", models=["x"])
        registry = hub.hub.endpoints
        await wait_registry(hub, lambda: any(len(e.owners) == 2 for e in registry.endpoints.values()))
        await wait_registry(hub, lambda: registry.n_refused_reports == 1)
        listed = (await hub.http.get("/api/endpoints")).json()
        assert len(listed["endpoints"]) == 1
        ep = listed["endpoints"][0]
        assert ep["url"] == server.url and ep["owners"] == ["a1", "a2"] and ep["owners_connected"] == ["a1", "a2"]
        assert {m["name"] for m in ep["models"]} >= {"fake-coder:latest", "other"}
        assert listed["stats"]["refused_reports"] == 1 and "s3cret" not in str(listed)
        for sim in (a, b, c):
            await sim.close()


async def test_endpoints_and_probes_survive_a_restart(make_hub: MakeHub, tmp_path: object) -> None:
    """Endpoints and what was found about them are stored: a hub restarted on the same data dir lists them again."""
    hub = await make_hub(**QUIET)
    r = await hub.http.post("/api/endpoints", json={"url": "http://gpu:8080/v1", "kind": "openai", "name": "llama"})
    assert r.status_code == 201 and r.json()["url"] == "http://gpu:8080"
    await hub.hub.endpoints.put_probe(r.json()["id"], "m", {"score": 0.6, "path": "fenced", "probed_at": 1})
    await hub.server.stop()
    again = await make_hub(data_dir=hub.data_dir, **QUIET)
    shown = (await again.http.get(f"/api/endpoints/{r.json()['id']}")).json()
    assert shown["kind"] == "openai" and shown["name"] == "llama" and shown["added_by_admin"]
    assert shown["probe_results"]["m"]["path"] == "fenced"


async def test_a_corrupt_stored_endpoint_is_skipped_and_counted(make_hub: MakeHub) -> None:
    """A stored endpoint or probe that cannot be read is skipped at start (counted), the others load."""
    from hub.store import PutRecord, RecordRow

    hub = await make_hub(**QUIET)
    assert (await hub.http.post("/api/endpoints", json={"url": "http://gpu:11434"})).status_code == 201
    await hub.hub.store.write([
        PutRecord(RecordRow("endpoint", "ep-bad", 1, "[1, 2")),
        PutRecord(RecordRow("endpoint", "ep-odd", 1, '{"id": "ep-odd", "surprise": 1}')),
        PutRecord(RecordRow("probe", "ep-bad m", 1, '{"model": "m"}')),
    ])  # fmt: skip
    await hub.server.stop()
    again = await make_hub(data_dir=hub.data_dir, **QUIET)
    listed = (await again.http.get("/api/endpoints")).json()
    assert [e["url"] for e in listed["endpoints"]] == ["http://gpu:11434"]
    assert listed["stats"]["bad_rows"] == 3


@pytest.mark.parametrize(
    ("url", "peer", "expected"),
    [
        ("http://localhost:11434", "10.0.0.5", "http://10.0.0.5:11434"),
        ("http://127.0.0.1:11434", "10.0.0.5", "http://10.0.0.5:11434"),
        ("http://[::1]:11434", "fd00::7", "http://[fd00::7]:11434"),
        ("http://0.0.0.0:11434/ollama", "10.0.0.5", "http://10.0.0.5:11434/ollama"),
        ("http://localhost:11434", "127.0.0.1", "http://localhost:11434"),  # the agent runs beside the hub
        ("http://localhost:11434", None, "http://localhost:11434"),
        ("http://localhost:11434", "unknown", "http://localhost:11434"),
        ("http://gpu-box:11434", "10.0.0.5", "http://gpu-box:11434"),
    ],
)
def test_a_loopback_url_from_afar_names_the_agent_s_machine(url: str, peer: str | None, expected: str) -> None:
    """Two sidecars on one remote machine reporting localhost share that machine's endpoint, not the hub's."""
    from hub.endpoints.urls import localise

    assert localise(url, peer) == expected
