"""Idempotency keys on POST /api/tasks and /api/tasks/batch, black-box: a real hub and raw HTTP."""

from __future__ import annotations

import asyncio
import sqlite3

import httpx

from tests.conftest import HubHandle


def client(hub: HubHandle, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def stored_tasks(hub: HubHandle) -> int:
    with sqlite3.connect(hub.data_dir / "agentcom.db") as db:
        return db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]


BODY = {"description": "exactly once", "assign_to": "nobody", "metadata": {"a": 1, "b": [1, 2]}}


async def test_a_retry_returns_the_original_task(hub):
    """The same key and body again answers 200 with the original id, duplicate: true and a header; one task exists."""
    first = await hub.http.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 201 and "duplicate" not in first.json()
    again = await hub.http.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "retry-1"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == {**first.json(), "duplicate": True}
    reordered = {
        "metadata": {"b": [1, 2], "a": 1},
        "assign_to": "nobody",
        "description": "exactly once",
        "idempotency_key": "retry-1",
    }  # the key in the body instead, fields in another order
    third = await hub.http.post("/api/tasks", json=reordered)
    assert (third.status_code, third.json()["task_id"]) == (200, first.json()["task_id"])
    assert (await hub.http.get("/api/tasks")).json()["count"] == 1
    assert stored_tasks(hub) == 1


async def test_a_reused_key_with_another_body_is_refused(hub):
    """The same key with a different body is refused with 409 idempotency_key_reused and creates nothing."""
    await hub.http.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "once"})
    r = await hub.http.post(
        "/api/tasks", json={**BODY, "description": "something else"}, headers={"Idempotency-Key": "once"}
    )
    assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_reused")
    r = await hub.http.post("/api/tasks/batch", json={"tasks": [BODY]}, headers={"Idempotency-Key": "once"})
    assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_reused")
    assert (await hub.http.get("/api/tasks")).json()["count"] == 1


async def test_keys_are_scoped_per_submitter(hub):
    """Two agents (and the admin) using the same key get a task each; each retry returns its own."""
    tokens = {"admin": hub.admin_token, "one": await hub.mint_token("one"), "two": await hub.mint_token("two")}
    ids: dict[str, str] = {}
    for name, token in tokens.items():
        async with client(hub, token) as c:
            r = await c.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "shared-key"})
            assert r.status_code == 201
            ids[name] = r.json()["task_id"]
    assert len(set(ids.values())) == 3
    for name, token in tokens.items():
        async with client(hub, token) as c:
            r = await c.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "shared-key"})
            assert (r.status_code, r.json()["task_id"]) == (200, ids[name])


async def test_racing_retries_make_one_task(hub):
    """Identical requests in flight at once (single and batch) yield one submission: every answer names it."""
    answers = await asyncio.gather(
        *[hub.http.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "race"}) for _ in range(8)]
    )
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201]
    assert len({r.json()["task_id"] for r in answers}) == 1
    batch = {"tasks": [BODY, {**BODY, "description": "second"}], "idempotency_key": "race-batch"}
    answers = await asyncio.gather(*[hub.http.post("/api/tasks/batch", json=batch) for _ in range(4)])
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 201]
    assert len({tuple(t["task_id"] for t in r.json()["tasks"]) for r in answers}) == 1
    assert (await hub.http.get("/api/tasks")).json()["count"] == 3
    assert stored_tasks(hub) == 3


async def test_a_batch_retry_returns_the_same_ids_in_order(hub):
    """One key per batch: a retry returns the same list of ids in the same order; keys on items are refused."""
    batch = {"tasks": [{**BODY, "description": f"item {i}"} for i in range(5)]}
    first = await hub.http.post("/api/tasks/batch", json=batch, headers={"Idempotency-Key": "batch-1"})
    assert first.status_code == 201
    again = await hub.http.post("/api/tasks/batch", json=batch, headers={"Idempotency-Key": "batch-1"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert [t["task_id"] for t in again.json()["tasks"]] == [t["task_id"] for t in first.json()["tasks"]]
    r = await hub.http.post("/api/tasks/batch", json={"tasks": [{**BODY, "idempotency_key": "per-item"}]})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "tasks.0.idempotency_key")
    assert (await hub.http.get("/api/tasks")).json()["count"] == 5


async def test_keys_survive_a_restart(make_hub, tmp_path):
    """A retry after the hub restarted (single and batch) returns the original ids and creates nothing."""
    data_dir = tmp_path / "restart"
    first = await make_hub(data_dir=data_dir)
    single = (await first.http.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "k1"})).json()["task_id"]
    batch = {"tasks": [{**BODY, "description": f"item {i}"} for i in range(3)], "idempotency_key": "k2"}
    listed = [t["task_id"] for t in (await first.http.post("/api/tasks/batch", json=batch)).json()["tasks"]]
    await first.server.stop()
    second = await make_hub(data_dir=data_dir)
    r = await second.http.post("/api/tasks", json=BODY, headers={"Idempotency-Key": "k1"})
    assert (r.status_code, r.json()["task_id"], r.json()["duplicate"]) == (200, single, True)
    r = await second.http.post("/api/tasks/batch", json=batch)
    assert r.status_code == 200 and [t["task_id"] for t in r.json()["tasks"]] == listed
    r = await second.http.post("/api/tasks", json={**BODY, "priority": "high"}, headers={"Idempotency-Key": "k1"})
    assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_reused")
    assert (await second.http.get("/api/tasks")).json()["count"] == 4


async def test_malformed_keys_are_refused(hub):
    """Keys must be 1-255 printable ASCII characters without spaces; header and body must agree."""
    for bad in ("", "has space", "x" * 256, "tab\there", "é"):
        r = await hub.http.post("/api/tasks", json={**BODY, "idempotency_key": bad})
        assert (r.status_code, r.json()["error"]) == (422, "validation_failed"), bad
    for bad in ("", "has space", "x" * 256):
        r = await hub.http.post("/api/tasks", json=BODY, headers={"Idempotency-Key": bad})
        assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "Idempotency-Key"), bad
    r = await hub.http.post("/api/tasks", json={**BODY, "idempotency_key": "a"}, headers={"Idempotency-Key": "b"})
    assert (r.status_code, r.json()["errors"][0]["error"]) == (422, "conflict")
    r = await hub.http.post("/api/tasks", json={**BODY, "idempotency_key": 5})
    assert r.status_code == 422
    assert (await hub.http.get("/api/tasks")).json()["count"] == 0
