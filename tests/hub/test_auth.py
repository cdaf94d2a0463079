"""Tokens and roles (hub/auth.py and the HTTP/WS checks): hashed at rest, listed by prefix, revocable, scoped."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import httpx

from hub.auth import hash_token, load_admin_token
from shared.agent_sim import AgentSim


def client(hub, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=10)


def db_bytes(data_dir: Path) -> bytes:
    """Every byte SQLite keeps for the hub: the database and its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("agentcom.db*")))


async def test_tokens_are_stored_hashed(hub):
    """The database holds a token's SHA-256 hash, never the token itself."""
    token = await hub.mint_token("hashed-agent")
    viewer = await hub.mint_token("hashed-viewer", "viewer")
    raw = db_bytes(hub.data_dir)
    for secret in (token, viewer, hub.admin_token):
        assert secret.encode() not in raw
    with sqlite3.connect(hub.data_dir / "agentcom.db") as db:
        rows = dict(db.execute("SELECT agent_id, token_hash FROM tokens").fetchall())
    assert rows == {"hashed-agent": hashlib.sha256(token.encode()).hexdigest(), "hashed-viewer": hash_token(viewer)}


async def test_generated_admin_token_file_is_private(hub):
    """A generated admin token is written to DATA_DIR/admin.token with mode 0600, and it works."""
    path = hub.data_dir / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == hub.admin_token
    assert len(hub.admin_token) == 64
    assert (await hub.http.get("/admin/tokens")).status_code == 200


async def test_configured_admin_token_writes_no_file(make_hub, tmp_path):
    """An admin token given in the settings is used as is and no token file is written."""
    hub = await make_hub(data_dir=tmp_path / "configured", admin_token="configured-admin-token-0123456789")
    assert hub.admin_token == "configured-admin-token-0123456789"
    assert not (tmp_path / "configured" / "admin.token").exists()
    async with client(hub, "configured-admin-token-0123456789") as c:
        assert (await c.get("/admin/tokens")).status_code == 200


def test_admin_token_file_is_reused(tmp_path):
    """An existing admin.token is read back rather than replaced; a configured token wins over it."""
    first = load_admin_token(tmp_path, None)
    assert load_admin_token(tmp_path, None) == first
    assert load_admin_token(tmp_path, "explicit") == "explicit"
    assert (tmp_path / "admin.token").read_text().strip() == first


async def test_token_listing_shows_prefixes_not_tokens(hub):
    """GET /admin/tokens lists id, agent, role and an 8-character prefix for each token, never token or hash."""
    token = await hub.mint_token("listed")
    viewer = await hub.mint_token("watcher", "viewer")
    r = await hub.http.get("/admin/tokens")
    assert r.status_code == 200
    for secret in (token, viewer, hash_token(token), hash_token(viewer)):
        assert secret not in r.text and secret[8:24] not in r.text
    listed = [{k: v for k, v in t.items() if k not in ("created_at", "token_id")} for t in r.json()["tokens"]]
    assert listed == [
        {"agent_id": "listed", "role": "agent", "prefix": token[:8]},
        {"agent_id": "watcher", "role": "viewer", "prefix": viewer[:8]},
    ]
    assert len({t["token_id"] for t in r.json()["tokens"]}) == 2


async def test_revoked_token_is_refused(hub):
    """DELETE /admin/tokens/{agent} revokes its tokens: HTTP answers 401 and identify answers invalid_token."""
    token = await hub.mint_token("leaver")
    spare = await hub.mint_token("leaver")
    async with client(hub, token) as c:
        assert (await c.get("/api/tasks")).status_code == 200
        r = await hub.http.delete("/admin/tokens/leaver")
        assert r.json() == {"agent_id": "leaver", "revoked": 2}
        r = await c.get("/api/tasks")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    sim = AgentSim(hub.ws_url, "leaver", spare)
    await sim.connect(identify=False)
    await sim.send({"type": "identify", "agent_id": "leaver", "token": spare})
    assert (await sim.wait_for(lambda m: m.get("type") == "error"))["error"] == "invalid_token"
    await sim.close()
    assert (await hub.http.delete("/admin/tokens/leaver")).status_code == 404
    assert (await hub.http.get("/admin/tokens")).json()["tokens"] == []


async def test_revoked_tokens_stay_revoked_after_restart(make_hub, tmp_path):
    """A revocation is durable: a restarted hub still refuses the token and still accepts the others."""
    data_dir = tmp_path / "durable"
    first = await make_hub(data_dir=data_dir)
    gone, kept = await first.mint_token("gone"), await first.mint_token("kept")
    await first.http.delete("/admin/tokens/gone")
    await first.server.stop()
    second = await make_hub(data_dir=data_dir)
    async with client(second, gone) as c:
        assert (await c.get("/api/tasks")).status_code == 401
    async with client(second, kept) as c:
        assert (await c.get("/api/tasks")).status_code == 200


async def test_agent_token_submits_and_reads_but_is_not_admin(hub):
    """An agent token may submit and read tasks (recorded as its submitter) but not manage tokens."""
    token = await hub.mint_token("worker-1")
    async with client(hub, token) as c:
        r = await c.post("/api/tasks", json={"description": "from an agent"})
        assert r.status_code == 201
        tid = r.json()["task_id"]
        task = (await c.get(f"/api/tasks/{tid}")).json()
        assert task["submitted_by"] == "worker-1"
        assert (await c.get("/api/tasks")).json()["count"] == 1
        assert (await c.get("/api/tasks/stats")).status_code == 200
        for method, path in (("GET", "/admin/tokens"), ("POST", "/admin/tokens"), ("DELETE", "/admin/tokens/x")):
            r = await c.request(method, path, json={"agent_id": "x"} if method == "POST" else None)
            assert (r.status_code, r.json()["error"]) == (403, "forbidden")


async def test_only_the_submitter_or_admin_steers_a_task(hub):
    """Cancel and retry are allowed to the task's submitter and the admin, refused (403) to other agents."""
    owner, other = await hub.mint_token("owner"), await hub.mint_token("other")
    async with client(hub, owner) as mine, client(hub, other) as theirs:
        tid = (await mine.post("/api/tasks", json={"description": "mine", "assign_to": "nobody"})).json()["task_id"]
        r = await theirs.post(f"/api/tasks/{tid}/cancel")
        assert (r.status_code, r.json()["error"]) == (403, "forbidden")
        assert (await mine.post(f"/api/tasks/{tid}/cancel")).json()["previous_status"] == "queued"
        assert (await theirs.post(f"/api/tasks/{tid}/retry")).status_code == 403
        assert (await hub.http.post(f"/api/tasks/{tid}/retry")).json() == {"status": "requeued", "task_id": tid}
        r = await mine.post(f"/api/tasks/{tid}/retry")
        assert (r.status_code, r.json()["error"]) == (409, "invalid_state")


async def test_viewer_reads_only(hub):
    """A viewer token may read tasks but not submit, steer, manage tokens or run an agent."""
    viewer = await hub.mint_token("dash", "viewer")
    tid = await hub.submit(description="visible", assign_to="nobody")
    async with client(hub, viewer) as c:
        assert (await c.get(f"/api/tasks/{tid}")).status_code == 200
        assert (await c.get("/api/tasks/dead-letter")).status_code == 200
        for path in ("/api/tasks", f"/api/tasks/{tid}/cancel", f"/api/tasks/{tid}/retry", "/admin/tokens"):
            r = await c.post(path, json={"description": "x", "agent_id": "x"})
            assert r.status_code == 403, path
    sim = AgentSim(hub.ws_url, "dash", viewer)
    await sim.connect(identify=False)
    await sim.send({"type": "identify", "agent_id": "dash", "token": viewer})
    assert (await sim.wait_for(lambda m: m.get("type") == "error"))["error"] == "token_agent_mismatch"
    await sim.close()
    assert hub.hub.agents.get("dash") is None


async def test_agent_token_cannot_act_as_another_agent(hub, make_agent):
    """An agent's token identifies only that agent: using it for another id fails and takes nothing over."""
    victim = await make_agent("victim")
    token = await hub.mint_token("mallory")
    sim = AgentSim(hub.ws_url, "victim", token)
    await sim.connect(identify=False)
    await sim.send({"type": "identify", "agent_id": "victim", "token": token})
    assert (await sim.wait_for(lambda m: m.get("type") == "error"))["error"] == "token_agent_mismatch"
    await sim.send({"type": "task_complete", "task_id": "task-x", "generation": 1})
    assert (await sim.wait_for(lambda m: m.get("error") == "not_identified"))["message_type"] == "task_complete"
    await sim.close()
    assert hub.hub.agents.get("victim").sender is not None and victim.ws is not None
    tid = await hub.submit(description="still served", assign_to="victim")
    await victim.wait_for(
        lambda m: m.get("type") == "task_ack" and m.get("task_id") == tid and m["status"] == "complete"
    )


async def test_what_needs_a_token(hub):
    """Health is open; the agent list, tasks and admin routes need a token."""
    expected = {
        "/health": 200,
        "/api/agents": 401,
        "/api/agents/x": 401,
        "/api/tasks": 401,
        "/api/tasks/stats": 401,
        "/api/tasks/dead-letter": 401,
        "/admin/tokens": 401,
    }
    async with client(hub, None) as c:
        assert {path: (await c.get(path)).status_code for path in expected} == expected
