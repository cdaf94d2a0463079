"""``/api/goals`` at its edge: hostile and invalid bodies are a 422 naming the field, nothing is stored for them;
roles are enforced; unknown goals are a 404."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HubHandle

HOSTILE = [
    ('{"description": "fix \\ud800 it"}', "description"),
    ('{"description": "fix it", "priority": NaN}', "priority"),
    ('{"description": "fix it", "checks": [1e400]}', "checks"),
    (json.dumps({"description": "x" * 4001}), "description"),
    (json.dumps({"description": "   "}), "description"),
    (json.dumps({"description": "bell \u0007"}), "description"),
    (json.dumps({"description": "fix it", "priority": "extreme"}), "priority"),
    (json.dumps({"description": "fix it", "priority": True}), "priority"),
    (json.dumps({"description": "fix it", "source": "webhook"}), "source"),
    (json.dumps({"description": "fix it", "repo": "https://u:secret@example.com/r.git"}), "repo"),
    (json.dumps({"description": "fix it", "repo": "--upload-pack=touch /tmp/x"}), "repo"),
    (json.dumps({"description": "fix it", "checks": ["c"] * 21}), "checks"),
    (json.dumps({"description": "fix it", "surprise": 1}), "surprise"),
    ('{"description": "fix it", "checks": ' + "[" * 200 + "]" * 200 + "}", "checks"),
    (json.dumps({"description": ["fix it"]}), "description"),
    ("[]", "(body)"),
]


@pytest.mark.parametrize(("raw", "field"), HOSTILE)
async def test_hostile_goal_bodies_are_422(hub: HubHandle, raw: str, field: str) -> None:
    """Each hostile or invalid body is refused with 422 validation_failed, and no goal is stored."""
    r = await hub.http.post("/api/goals", content=raw.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_failed"
    assert any(str(e.get("field", "")).startswith(field) or field in json.dumps(e) for e in body["errors"]), body
    assert hub.hub.goals.list_goals() == [] and await hub.hub.store.load_records("goal") == []


async def test_roles_and_unknown_goals(hub: HubHandle) -> None:
    """A viewer reads but cannot submit (403); no token is 401; an unknown goal is 404."""
    viewer = await hub.mint_token("watcher", role="viewer")
    headers = {"Authorization": f"Bearer {viewer}"}
    r = await hub.http.post("/api/goals", json={"description": "fix it"}, headers=headers)
    assert r.status_code == 403
    assert (await hub.http.get("/api/goals", headers=headers)).status_code == 200
    assert (
        await hub.http.post("/api/goals", json={"description": "x"}, headers={"Authorization": ""})
    ).status_code == 401
    r = await hub.http.get("/api/goals/goal-nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert (await hub.http.post("/api/goals/goal-nope/cancel")).status_code == 404
    r = await hub.http.get("/api/goals", params={"status": "bogus"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"


async def test_submitted_goal_is_stored_with_its_fields(hub: HubHandle) -> None:
    """A valid goal is answered 201 and stored as a goal record with its source, priority and checks."""
    r = await hub.http.post(
        "/api/goals",
        json={"description": " Make it faster. ", "priority": 0, "checks": ["p95 < 1s"], "source": "cli"},
    )
    assert r.status_code == 201, r.text
    goal = r.json()
    assert goal["description"] == "Make it faster." and goal["priority"] == 0 and goal["source"] == "cli"
    (row,) = await hub.hub.store.load_records("goal")
    assert row.key == goal["id"] and json.loads(row.body)["checks"] == ["p95 < 1s"]
