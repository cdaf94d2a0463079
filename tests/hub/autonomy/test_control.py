"""Control endpoints, the GitHub webhook and the machine's state across a restart, over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from hub.autonomy.states import State
from hub.store.records import AppendJournal, PutRecord, RecordRow
from tests.conftest import HubHandle
from tests.hub.autonomy.conftest import WAIT_S, auto_of, holder, make_repo, stop, transitions

Start = Callable[..., Awaitable[HubHandle]]
SECRET = "s3cret-for-tests"


async def test_pause_and_resume(start: Start) -> None:
    """Pause (admin only) freezes the machine with work waiting; resume lets it execute; repeats say so."""
    handle = await start()
    auto = auto_of(handle)
    async with httpx.AsyncClient(base_url=handle.url) as anonymous:
        assert (await anonymous.post("/api/hub/pause")).json()["error"] == "unauthorized"
    assert (await handle.http.post("/api/hub/pause")).json() == {"status": "paused"}
    assert (await handle.http.post("/api/hub/pause")).json() == {"status": "already_paused"}
    held = await holder(handle)
    await handle.submit(description="waits for resume")
    await auto.tick()
    state = (await handle.http.get("/api/hub/state")).json()
    assert state["fsm_state"] == "resting" and state["paused"] is True
    assert (await handle.http.post("/api/hub/resume")).json() == {"status": "resumed"}
    await auto.fsm.wait_for(State.EXECUTING, WAIT_S)
    assert (await handle.http.post("/api/hub/resume")).json() == {"status": "not_paused"}
    await held.close()


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_webhook_signatures(start: Start, tmp_path: Path) -> None:
    """A delivery with a good HMAC-SHA256 is accepted (a push to a registered repository's default branch schedules
    a scan of main); a bad or missing signature, or a hub without a secret, is 401 invalid_signature."""
    repo = make_repo(tmp_path / "demo", {"a.py": "x = 1\n"})
    handle = await start(github_webhook_secret=SECRET, autonomy_scan_paths=(repo,))
    auto = auto_of(handle)
    body = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "acme/demo", "default_branch": "main"}})
    raw = body.encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    r = await handle.http.post(
        "/api/webhooks/github", content=raw, headers={**headers, "X-Hub-Signature-256": signed(raw)}
    )
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["scan_scheduled"] is True
    assert "demo" in auto.forced_scans
    bad = signed(raw, "wrong-secret")
    for extra in ({"X-Hub-Signature-256": bad}, {}, {"X-Hub-Signature-256": signed(raw + b" ")}):
        r = await handle.http.post("/api/webhooks/github", content=raw, headers={**headers, **extra})
        assert (r.status_code, r.json()) == (401, {"error": "invalid_signature"})
    merged = json.dumps({"action": "closed", "pull_request": {"merged": True}, "repository": {"full_name": "x/y"}})
    r = await handle.http.post(
        "/api/webhooks/github",
        content=merged.encode(),
        headers={"X-GitHub-Event": "pull_request", "X-Hub-Signature-256": signed(merged.encode())},
    )
    assert r.json() == {"status": "accepted", "event": "pull_request", "repo": None, "scan_scheduled": False}
    ping = await handle.http.post(
        "/api/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": signed(b"{}")}
    )
    assert ping.json()["status"] == "ignored"
    unset = await start()
    r = await unset.http.post(
        "/api/webhooks/github", content=raw, headers={**headers, "X-Hub-Signature-256": signed(raw)}
    )
    assert (r.status_code, r.json()) == (401, {"error": "invalid_signature"})


async def test_webhook_body_is_bounded(start: Start) -> None:
    """A webhook body over its limit is refused with 413 before the signature is checked."""
    handle = await start(github_webhook_secret=SECRET, webhook_max_bytes=1024)
    raw = b"{" + b" " * 2000 + b"}"
    r = await handle.http.post(
        "/api/webhooks/github", content=raw, headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signed(raw)}
    )
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"


async def test_history_and_pause_survive_a_restart(start: Start, tmp_path: Path) -> None:
    """The transition history and ``paused`` are read back after a restart; a hub stopped in executing resumes
    resting with a ``hub restarted`` transition."""
    data = tmp_path / "hub"
    first = await start(data_dir=data)
    held = await holder(first)
    await first.submit(description="never run")
    await auto_of(first).fsm.wait_for(State.EXECUTING, WAIT_S)
    await held.close()
    await stop(first)
    second = await start(data_dir=data)
    auto = auto_of(second)
    assert auto.fsm.current is State.RESTING
    assert transitions(second) == [(None, "resting"), ("resting", "executing"), ("executing", "resting")]
    assert auto.fsm.history[-1]["reason"] == "hub restarted"
    history = (await second.http.get("/api/hub/history", params={"limit": 2})).json()["transitions"]
    assert [h["reason"] for h in history] == ["hub restarted", "work waiting"]
    assert (await second.http.post("/api/hub/pause")).json() == {"status": "paused"}
    await stop(second)
    third = await start(data_dir=data)
    state = (await third.http.get("/api/hub/state")).json()
    assert state["paused"] is True and state["fsm_state"] == "resting"
    assert state["transition_count"] == len(auto_of(third).fsm.history) - 1  # every entry but the first start


async def test_unreadable_stored_state_starts_afresh(start: Start, tmp_path: Path) -> None:
    """A corrupt snapshot and a corrupt history row do not stop the hub: it starts resting, unpaused, keeping the
    readable history."""
    data = tmp_path / "hub"
    first = await start(data_dir=data)
    now = first.hub.clock.now_ms()
    await first.hub.store.write(
        [
            PutRecord(RecordRow("hub_state", "fsm", now, '{"fsm_state": "nonsense", "paused": true}')),
            AppendJournal("hub_transition", now, "{not json"),
        ]
    )
    await stop(first)
    second = await start(data_dir=data)
    state = (await second.http.get("/api/hub/state")).json()
    assert (state["fsm_state"], state["paused"]) == ("resting", False)
    assert transitions(second) == [(None, "resting"), (None, "resting")]  # both starts, the bad row skipped
    r = await second.http.get("/api/hub/history")
    assert r.status_code == 200 and r.json()["count"] == 2
