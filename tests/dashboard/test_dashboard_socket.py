"""The dashboard's HTTP routes and WebSocket protocol, without a browser."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
import websockets

from tests.conftest import HubHandle, wait_tasks


def dash_url(hub, query: str = "") -> str:
    return hub.ws_url + "/dashboard" + query


async def recv(ws, kind: str, timeout_s: float = 5) -> dict:
    """The next message of type ``kind`` (others are skipped)."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg


async def close_code(ws) -> int:
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def test_page_is_served_without_data_and_with_a_strict_policy(hub):
    """/ and /dashboard serve the page (no token, no data in it); static files only by plain name."""
    async with httpx.AsyncClient(base_url=hub.url) as client:
        for path in ("/", "/dashboard"):
            r = await client.get(path)
            assert r.status_code == 200 and "text/html" in r.headers["content-type"]
            assert "connect-src 'self'" in r.headers["content-security-policy"]
            assert hub.admin_token not in r.text and "/dashboard/static/main.js" in r.text
            assert re.findall(r'(?:src|href)="(?!/|data:|#)[^"]*"', r.text) == [], "no remote asset"
        r = await client.get("/dashboard/static/main.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/dashboard/static/dashboard.css")).headers["content-type"].startswith("text/css")
        for bad in ("nope.js", "..%2F__init__.py", "%2e%2e%2fhub%2fapp.py", "main.py"):
            assert (await client.get(f"/dashboard/static/{bad}")).status_code == 404, bad


async def test_state_endpoint_needs_an_admin_or_viewer_token_and_hides_secrets(hub):
    await hub.submit(description="has secrets", metadata={"api_key": "sk-live-123", "x": {"github_token": "ghp_9"}})
    viewer = await hub.mint_token("screen", role="viewer")
    agent = await hub.mint_token("worker-1")
    async with httpx.AsyncClient(base_url=hub.url) as client:
        assert (await client.get("/api/dashboard/state")).status_code == 401
        r = await client.get("/api/dashboard/state", headers={"Authorization": f"Bearer {agent}"})
        assert r.status_code == 403
        r = await client.get("/api/dashboard/state", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200
    snap = r.json()
    assert snap["queue"]["by_status"]["queued"] == 1 and snap["recent_tasks"][0]["description"] == "has secrets"
    assert snap["health"]["conditions"][0]["id"] == "no_agents"
    for secret in ("sk-live-123", "ghp_9", hub.admin_token, viewer, agent):
        assert secret not in r.text


async def test_socket_refuses_missing_bad_and_agent_tokens(hub):
    """4401 without a token or with a bad one; 4403 for an agent token (the dashboard is admin or viewer)."""
    async with websockets.connect(dash_url(hub)) as ws:
        await ws.send(json.dumps({"type": "request_snapshot"}))
        assert await close_code(ws) == 4401
    async with websockets.connect(dash_url(hub)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "wrong"}))
        assert await close_code(ws) == 4401
    async with websockets.connect(dash_url(hub, "?token=wrong")) as ws:
        assert await close_code(ws) == 4401
    agent = await hub.mint_token("worker-2")
    async with websockets.connect(dash_url(hub)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": agent}))
        assert await close_code(ws) == 4403


async def test_snapshot_then_batched_events(make_hub):
    """After auth: a snapshot, then events batched (several in one message), with queue counts and health."""
    hub = await make_hub(dashboard_batch_ms=300)
    viewer = await hub.mint_token("screen", role="viewer")
    async with websockets.connect(dash_url(hub)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": viewer}))
        snap = await recv(ws, "snapshot")
        assert snap["role"] == "viewer" and snap["data"]["agents"] == [] and snap["batch_ms"] == 300
        ids = [await hub.submit(description=f"batched {n}") for n in range(3)]
        batch = await recv(ws, "events")
        assert [e["task_id"] for e in batch["data"] if e["event"] == "task_submitted"] == ids
        assert batch["data"][0]["task"]["status"] == "queued" and batch["queue"]["by_status"]["queued"] == 3
        assert batch["health"]["status"] == "warning"
        await ws.send(json.dumps({"type": "request_snapshot"}))
        again = await recv(ws, "snapshot")
        assert {t["id"] for t in again["data"]["queued_tasks"]} == set(ids)
        await ws.send(json.dumps({"type": "launch_missiles"}))
        assert (await recv(ws, "error"))["error"] == "unknown_message"


async def test_tool_calls_go_out_at_once_and_subscribe_sends_the_trajectory(hub, make_agent):
    """Execution events are pushed as they arrive; subscribe_task answers with the task and its stored timeline."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="watch me")
    assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": assign["generation"]})
    async with websockets.connect(dash_url(hub, f"?token={hub.admin_token}")) as ws:
        await recv(ws, "snapshot")
        for n in (1, 2):
            await sim.send(
                {
                    "type": "task_progress",
                    "task_id": tid,
                    "generation": assign["generation"],
                    "execution_event": {
                        "event_type": "tool_call",
                        "tool_name": f"tool{n}",
                        "args_summary": "a",
                        "result_summary": "r",
                        "duration_ms": 5,
                        "iteration": n,
                        "tokens_so_far": 10 * n,
                    },
                }
            )
            live = await recv(ws, "execution_event")
            assert live["data"]["tool_name"] == f"tool{n}" and live["data"]["seq"] == n
            assert live["progress"]["tool_calls"] == n and live["progress"]["tokens_so_far"] == 10 * n
        await ws.send(json.dumps({"type": "subscribe_task", "task_id": tid}))
        detail = (await recv(ws, "task_detail"))["data"]
        assert detail["task"]["status"] == "working"
        assert [e["tool_name"] for e in detail["timeline"]] == ["tool1", "tool2"]
        await ws.send(json.dumps({"type": "subscribe_task", "task_id": "task-missing"}))
        assert (await recv(ws, "error"))["error"] == "task_not_found"


async def test_throughput_series_follows_task_events(hub, make_agent):
    """Completions feed the throughput and latency series sent with every batch."""
    async with websockets.connect(dash_url(hub)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": hub.admin_token}))
        assert sum((await recv(ws, "snapshot"))["data"]["series"]["completed"]) == 0
        await make_agent()
        ids = [await hub.submit(description=f"t{n}") for n in range(3)]
        await wait_tasks(hub, ids, {"completed"})
        completed = 0
        while completed < 3:
            batch = await recv(ws, "events")
            completed += sum(e["event"] == "task_completed" for e in batch["data"])
    series = batch["series"]
    assert sum(series["completed"]) == 3 and series["window_completed"] == 3
    assert any(v is not None for v in series["p50_ms"])


def test_a_page_that_falls_behind_gets_a_fresh_snapshot_instead_of_a_backlog():
    """An outbox over its byte budget is emptied and replaced by one snapshot marker: a slow page never slows it."""
    from hub.auth import Principal, Role
    from hub.dashboard_socket import _SNAPSHOT, Client

    client = Client(conn=None, principal=Principal("screen", Role.VIEWER), outbox_bytes=1000)  # type: ignore[arg-type]
    for n in range(10):
        client.push(f"message {n:02d}" + "x" * 90)  # 100 bytes each: ten fill the budget exactly
    assert (client.outbox.qsize(), client.queued_bytes, client.n_resyncs) == (10, 1000, 0)
    client.push("é")  # two bytes in UTF-8: one over
    assert client.outbox.qsize() == 1 and client.outbox.get_nowait() is _SNAPSHOT
    assert (client.n_resyncs, client.queued_bytes) == (1, 0)


async def test_deeply_nested_page_frames_are_refused_not_raised(hub: HubHandle) -> None:
    """A 100k-deep JSON frame from a page, before or after auth, is answered or closed; the hub keeps serving."""
    import websockets

    url = hub.ws_url.replace("/ws", "/ws/dashboard")
    async with websockets.connect(url, max_size=None) as ws:  # before auth: treated as a bad auth message
        await ws.send("[" * 100_000)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": hub.admin_token}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
        await ws.send("[" * 100_000)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        while reply["type"] != "error":
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["error"] == "unknown_message"
    assert (await hub.http.get("/health")).status_code == 200
