"""Authorization, black-box: which routes need a token, revocation of live sockets, hub-owned event identity and
what each role may read. A real hub, raw HTTP (httpx) and raw WebSocket frames (websockets)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
from typing import Any

import httpx
import pytest
import websockets

from hub.auth import hash_token
from shared.protocol import PROTOCOL_VERSION
from tests.conftest import SCALE, HubHandle, wait_tasks

TIMEOUT_S = 10 * SCALE


def client(hub: HubHandle, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=10)


async def send(ws: Any, message: dict[str, Any]) -> None:
    await ws.send(json.dumps({"protocol_version": PROTOCOL_VERSION, **message}))


async def recv(ws: Any, kind: str, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The next message of type ``kind``; every message read on the way is appended to ``seen``."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            msg = json.loads(await ws.recv())
            if seen is not None:
                seen.append(msg)
            if msg.get("type") == kind:
                return msg


async def closed_with(ws: Any, seen: list[dict[str, Any]]) -> tuple[int, str]:
    """Read until the socket closes; returns the close code and reason the hub sent."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                seen.append(json.loads(await ws.recv()))
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def agent_socket(hub: HubHandle, agent_id: str, token: str) -> Any:
    ws = await websockets.connect(hub.ws_url)
    await send(ws, {"type": "identify", "agent_id": agent_id, "token": token, "capabilities": []})
    await recv(ws, "identified")
    return ws


async def take_task(ws: Any, hub: HubHandle, **body: Any) -> tuple[str, int]:
    """Submit a task pinned to the agent on ``ws``, accept it; returns its id and generation."""
    tid = await hub.submit(**body)
    assign = await recv(ws, "task_assign")
    assert assign["task_id"] == tid
    await send(ws, {"type": "task_accepted", "task_id": tid, "generation": assign["generation"]})
    await recv(ws, "task_ack")
    return tid, assign["generation"]


async def token_id_of(hub: HubHandle, prefix: str) -> str:
    tokens = (await hub.http.get("/admin/tokens")).json()["tokens"]
    return next(t["token_id"] for t in tokens if t["prefix"] == prefix)


# --- which routes are open -------------------------------------------------------------------------------------


async def test_agent_routes_need_a_token_of_any_role(hub):
    """GET /api/agents and /api/agents/{id} answer 401 without a token and 200 to viewer, agent and admin."""
    viewer, agent = await hub.mint_token("v", "viewer"), await hub.mint_token("a")
    ws = await agent_socket(hub, "a", agent)
    try:
        async with client(hub, None) as anon:
            for path in ("/api/agents", "/api/agents/a", "/api/agents/nobody"):
                r = await anon.get(path)
                assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), path
            assert (await anon.get("/health")).status_code == 200
            assert (await anon.get("/dashboard")).status_code == 200
        for token in (viewer, agent, hub.admin_token):
            async with client(hub, token) as c:
                assert [a["agent_id"] for a in (await c.get("/api/agents")).json()["agents"]] == ["a"]
                assert (await c.get("/api/agents/a")).json()["status"] == "online"
    finally:
        await ws.close()


# --- revocation ------------------------------------------------------------------------------------------------


async def test_revoking_a_token_closes_its_agent_socket_at_once(make_hub):
    """Revoking an agent's token by id closes its /ws with 4401 before the DELETE answers; no task_assign reaches it
    afterwards and its in-flight task is reclaimed by the usual disconnect path (one attempt counted)."""
    hub = await make_hub(reconnect_grace_s=0.2, sweep_interval_s=0.05)
    token = await hub.mint_token("doomed")
    ws = await agent_socket(hub, "doomed", token)
    seen: list[dict[str, Any]] = []
    held, _ = await take_task(ws, hub, description="in flight", assign_to="doomed")
    tid = await token_id_of(hub, token[:8])
    r = await hub.http.delete(f"/admin/tokens/id/{tid}")
    assert r.status_code == 200 and r.json() == {"token_id": tid, "revoked": 1}
    assert hub.hub.agents.get("doomed") is None, "off the fleet before the admin is answered"
    later = await hub.submit(description="never for the revoked socket", assign_to="doomed")
    assert await closed_with(ws, seen) == (4401, "token revoked")
    assert [m for m in seen if m.get("type") == "task_assign"] == []
    await wait_tasks(hub, [held], {"queued"})
    task = await hub.task(held)
    assert task["retry_count"] == 1 and task["last_error"].startswith("agent_lost")
    assert (await hub.task(later))["status"] == "queued"
    async with client(hub, token) as c:
        assert (await c.get("/api/agents")).status_code == 401


async def test_revoking_a_viewer_token_closes_its_dashboard(hub):
    """A viewer on /ws/dashboard whose token is revoked (by prefix) is closed with 4401 and gets no further event."""
    viewer = await hub.mint_token("watcher", "viewer")
    other = await hub.mint_token("other-watcher", "viewer")
    async with (
        websockets.connect(hub.ws_url + "/dashboard?token=" + viewer) as ws,
        websockets.connect(hub.ws_url + "/dashboard?token=" + other) as kept,
    ):
        await recv(ws, "snapshot")
        await recv(kept, "snapshot")
        r = await hub.http.delete("/admin/tokens", params={"prefix": viewer[:8]})
        assert r.status_code == 200 and r.json()["revoked"] == 1
        tid = await hub.submit(description="after the revocation", assign_to="nobody")
        seen: list[dict[str, Any]] = []
        assert await closed_with(ws, seen) == (4401, "token revoked")
        assert tid not in json.dumps(seen)
        # The other viewer's socket is untouched and sees the task.
        while tid not in json.dumps(await recv(kept, "events")):
            pass


async def test_tokens_are_revoked_one_at_a_time(hub):
    """DELETE /admin/tokens/id/{id} revokes one token of an agent and leaves its others working; a second call 404s."""
    first, second = await hub.mint_token("twice"), await hub.mint_token("twice")
    tid = await token_id_of(hub, first[:8])
    assert (await hub.http.delete(f"/admin/tokens/id/{tid}")).status_code == 200
    async with client(hub, first) as gone, client(hub, second) as kept:
        assert (await gone.get("/api/tasks")).status_code == 401
        assert (await kept.get("/api/tasks")).status_code == 200
    r = await hub.http.delete(f"/admin/tokens/id/{tid}")
    assert (r.status_code, r.json()["error"]) == (404, "token_not_found")
    listed = (await hub.http.get("/admin/tokens")).json()["tokens"]
    assert [(t["agent_id"], t["prefix"]) for t in listed] == [("twice", second[:8])]
    for bad in ("", "short", "x" * 9, "abc def!"):
        r = await hub.http.delete("/admin/tokens", params={"prefix": bad})
        assert (r.status_code, r.json()["error"]) == (422, "validation_failed"), bad
    r = await hub.http.delete("/admin/tokens", params={"prefix": "00000000" if second[:8] != "00000000" else "1" * 8})
    assert (r.status_code, r.json()["error"]) == (404, "token_not_found")


async def test_an_ambiguous_prefix_revokes_nothing(make_hub, tmp_path):
    """Two tokens sharing the listed prefix: revoking by it is refused (409, naming both ids) and both still work."""
    data_dir = tmp_path / "ambiguous"
    first = await make_hub(data_dir=data_dir)
    await first.server.stop()
    tokens = ["abcdef12" + secrets.token_hex(28) for _ in range(2)]
    with sqlite3.connect(data_dir / "agentcom.db") as db:
        db.executemany(
            "INSERT INTO tokens (token_hash, agent_id, role, prefix, created_at) VALUES (?, ?, ?, ?, ?)",
            [(hash_token(t), f"twin-{i}", "agent", t[:8], i) for i, t in enumerate(tokens)],
        )
    hub = await make_hub(data_dir=data_dir)
    r = await hub.http.delete("/admin/tokens", params={"prefix": "abcdef12"})
    assert (r.status_code, r.json()["error"]) == (409, "ambiguous_prefix")
    listed = {t["agent_id"]: t["token_id"] for t in (await hub.http.get("/admin/tokens")).json()["tokens"]}
    assert sorted(r.json()["token_ids"]) == sorted(listed.values())
    for token in tokens:
        async with client(hub, token) as c:
            assert (await c.get("/api/tasks")).status_code == 200
        assert token not in r.text


async def test_token_actions_are_audited_without_the_token(hub, caplog):
    """Minting and revoking write one audit line each, naming the token id and never the token or its hash."""
    caplog.set_level(logging.INFO, logger="hub.audit")
    r = await hub.http.post("/admin/tokens", json={"agent_id": "audited"})
    token, tid = r.json()["token"], r.json()["token_id"]
    await hub.http.delete(f"/admin/tokens/id/{tid}")
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "hub.audit"]
    assert len(lines) == 2
    assert "action=mint_token " in lines[0] and "action=revoke_token " in lines[1]
    assert all(tid in line for line in lines)
    for line in lines:
        assert token not in line and token[8:] not in line and hash_token(token) not in line
        assert hub.admin_token not in line


# --- event identity --------------------------------------------------------------------------------------------


async def test_the_hub_sets_event_identity_not_the_agent(hub):
    """An execution_event carrying fake seq, task_id, agent_id, timestamp and kind is stored and shown on the
    dashboard with the hub's values."""
    token, viewer = await hub.mint_token("honest"), await hub.mint_token("eyes", "viewer")
    ws = await agent_socket(hub, "honest", token)
    try:
        async with websockets.connect(hub.ws_url + "/dashboard?token=" + viewer) as dash:
            await recv(dash, "snapshot")
            tid, gen = await take_task(ws, hub, description="watched", assign_to="honest")
            victim = await hub.submit(description="someone else's", assign_to="nobody")
            fake = {
                "event_type": "tool_call",
                "tool_name": "read_file",
                "seq": 999,
                "task_id": victim,
                "agent_id": "mallory",
                "timestamp": 1,
                "kind": "task_event",
            }
            before = hub.hub.clock.now_ms()
            await send(ws, {"type": "task_progress", "task_id": tid, "generation": gen, "execution_event": fake})
            live = (await recv(dash, "execution_event"))["data"]
            assert (live["task_id"], live["agent_id"], live["seq"]) == (tid, "honest", 1)
            assert live["timestamp"] >= before and live["tool_name"] == "read_file"
            await send(dash, {"type": "subscribe_task", "task_id": tid})
            timeline = (await recv(dash, "task_detail"))["data"]["timeline"]
            assert [(e["task_id"], e["agent_id"], e["seq"]) for e in timeline] == [(tid, "honest", 1)]
        stored = (await hub.http.get(f"/api/tasks/{tid}/trajectory")).json()["events"]
        assert len(stored) == 1
        row = stored[0]
        assert (row["seq"], row["kind"], row["timestamp"]) == (1, "tool_call", live["timestamp"])
        assert {k: row["event"].get(k) for k in ("task_id", "agent_id", "seq", "timestamp", "kind")} == {
            "task_id": tid,
            "agent_id": "honest",
            "seq": 1,
            "timestamp": live["timestamp"],
            "kind": None,
        }
        assert (await hub.http.get(f"/api/tasks/{victim}/trajectory")).json()["count"] == 0
    finally:
        await ws.close()


async def test_progress_only_for_the_task_held_now(hub):
    """task_progress for another task, a stale generation or a finished task is dropped and counted; the current
    task's is stored."""
    token = await hub.mint_token("reporter")
    ws = await agent_socket(hub, "reporter", token)
    try:
        first, gen = await take_task(ws, hub, description="first", assign_to="reporter")
        await send(ws, {"type": "task_complete", "task_id": first, "generation": gen, "result": {"status": "success"}})
        await recv(ws, "task_ack")
        held, gen = await take_task(ws, hub, description="held", assign_to="reporter")
        other = await hub.submit(description="not mine", assign_to="nobody")
        event = {"event_type": "tool_call", "tool_name": "x"}
        base = (await hub.http.get("/health")).json()["refused_events"]
        for task_id, generation in ((other, None), (held, gen - 1), (first, None), ("task-missing", None)):
            await send(
                ws, {"type": "task_progress", "task_id": task_id, "generation": generation, "execution_event": event}
            )
        await send(ws, {"type": "task_progress", "task_id": held, "generation": gen, "execution_event": event})
        await send(ws, {"type": "ping"})
        await recv(ws, "pong")  # replies follow every earlier frame's handling
        assert (await hub.http.get("/health")).json()["refused_events"] == base + 4
        counts = {t: (await hub.http.get(f"/api/tasks/{t}/trajectory")).json()["count"] for t in (first, held, other)}
        assert counts == {first: 0, held: 1, other: 0}
    finally:
        await ws.close()


# --- who reads what --------------------------------------------------------------------------------------------

SECRETS = {
    "api_key": "sk-live-0123456789",
    "nested": {"password": "hunter2", "fine": "visible-value"},
    "items": [{"client_secret": "cs-abc"}],
    "tokens_budget": 5000,
}


async def dead_letter_task(hub: HubHandle, **body: Any) -> str:
    """A task in dead-letter at once: it depends on a cancelled task."""
    parent = await hub.submit(description="parent", assign_to="nobody")
    await hub.http.post(f"/api/tasks/{parent}/cancel")
    r = await hub.http.post("/api/tasks", json={"description": "child", "depends_on": [parent], **body})
    assert r.json()["status"] == "dead_letter"
    return r.json()["task_id"]


def assert_masked(text: str) -> None:
    for raw in ("sk-live-0123456789", "hunter2", "cs-abc"):
        assert raw not in text
    assert "visible-value" in text and "[redacted]" in text


async def test_viewers_never_see_secret_looking_values(hub):
    """A viewer's task list, task, dead-letter list and trajectory mask values under secret-looking keys (numbers
    stay); the admin sees them raw."""
    viewer, agent = await hub.mint_token("peeker", "viewer"), await hub.mint_token("worker")
    ws = await agent_socket(hub, "worker", agent)
    try:
        tid, gen = await take_task(ws, hub, description="with secrets", assign_to="worker", metadata=SECRETS)
        await send(
            ws,
            {
                "type": "task_progress",
                "task_id": tid,
                "generation": gen,
                "execution_event": {
                    "event_type": "tool_call",
                    "args": {"env": {"GITHUB_TOKEN": "ghp_secretvalue"}, "path": "visible-value"},
                    "api_key": "sk-live-0123456789",
                    "password": "hunter2",
                    "client_secret": "cs-abc",
                },
            },
        )
        await send(ws, {"type": "ping"})
        await recv(ws, "pong")
        dead = await dead_letter_task(hub, metadata=SECRETS)
        async with client(hub, viewer) as c:
            task = (await c.get(f"/api/tasks/{tid}")).json()
            assert task["metadata"]["api_key"] == "[redacted]" and task["metadata"]["tokens_budget"] == 5000
            for path in (
                f"/api/tasks/{tid}",
                "/api/tasks",
                "/api/tasks/dead-letter",
                f"/api/tasks/{dead}",
                f"/api/tasks/{tid}/trajectory",
            ):
                r = await c.get(path)
                assert r.status_code == 200, path
                assert_masked(r.text)
                assert "ghp_secretvalue" not in r.text
            assert dead in (await c.get("/api/tasks/dead-letter")).text
        raw = (await hub.http.get(f"/api/tasks/{tid}")).json()
        assert raw["metadata"] == SECRETS
        assert "ghp_secretvalue" in (await hub.http.get(f"/api/tasks/{tid}/trajectory")).text
    finally:
        await ws.close()


async def test_an_agent_reads_in_full_only_its_own_tasks(hub):
    """An agent token reads in full what it submitted or is pinned to; other tasks come without their payloads
    (listed under ``withheld``) and their trajectories are refused; the admin reads everything."""
    alice, bob = await hub.mint_token("alice"), await hub.mint_token("bob")
    async with client(hub, alice) as a, client(hub, bob) as b:
        mine = (
            await a.post("/api/tasks", json={"description": "alice's", "metadata": SECRETS, "assign_to": "nobody"})
        ).json()["task_id"]
        for_bob = await hub.submit(description="pinned to bob", metadata=SECRETS, assign_to="bob")
        assert (await a.get(f"/api/tasks/{mine}")).json()["metadata"] == SECRETS
        assert (await b.get(f"/api/tasks/{for_bob}")).json()["metadata"] == SECRETS
        assert (await a.get(f"/api/tasks/{mine}/trajectory")).status_code == 200
        theirs = (await b.get(f"/api/tasks/{mine}")).json()
        assert "metadata" not in theirs and "history" not in theirs and "result" not in theirs
        assert {"metadata", "result", "verification_report", "history"} <= set(theirs["withheld"])
        assert theirs["description"] == "alice's" and theirs["status"] == "queued"
        listed = {t["id"]: t for t in (await b.get("/api/tasks")).json()["tasks"]}
        assert "metadata" not in listed[mine] and listed[for_bob]["metadata"] == SECRETS
        for text in ((await b.get(f"/api/tasks/{mine}")).text, json.dumps(listed[mine])):
            assert "sk-live-0123456789" not in text and "hunter2" not in text
        r = await b.get(f"/api/tasks/{mine}/trajectory")
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    for tid in (mine, for_bob):
        assert (await hub.http.get(f"/api/tasks/{tid}")).json()["metadata"] == SECRETS
        assert (await hub.http.get(f"/api/tasks/{tid}/trajectory")).status_code == 200
