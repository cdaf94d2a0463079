"""Malformed HTTP requests get precise errors, and the hub stays healthy.

The tables run against one hub shared by the module (every bad input lands on the same hub, which must keep
serving).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import HubHandle
from tests.hub.bad_input_hub import (  # noqa: F401 (fixture "shared")
    assert_healthy,
    module_loop,
    shared_hub,
)


def fields(*pairs: str) -> list[tuple[str, str]]:
    return [tuple(p.split(":")) for p in pairs]  # type: ignore[misc]


OK = {"description": "fine"}
# (case, method, path, token role, body: dict/list -> JSON, bytes -> raw, None -> no body,
#  status, error code, [(field, code)] for validation errors)
HTTP: list[tuple[str, str, str, str, Any, int, str, list[tuple[str, str]]]] = [
    (
        "missing description",
        "POST",
        "/api/tasks",
        "admin",
        {"priority": "high"},
        422,
        "validation_failed",
        fields("description:required"),
    ),
    (
        "description not a string",
        "POST",
        "/api/tasks",
        "admin",
        {"description": 123},
        422,
        "validation_failed",
        fields("description:wrong_type"),
    ),
    (
        "empty description",
        "POST",
        "/api/tasks",
        "admin",
        {"description": ""},
        422,
        "validation_failed",
        fields("description:invalid_value"),
    ),
    (
        "description over 10000 characters",
        "POST",
        "/api/tasks",
        "admin",
        {"description": "x" * 10_001},
        422,
        "validation_failed",
        fields("description:too_long"),
    ),
    (
        "unknown priority name",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "priority": "critical"},
        422,
        "validation_failed",
        fields("priority:invalid_value"),
    ),
    (
        "priority out of range",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "priority": 7},
        422,
        "validation_failed",
        fields("priority:invalid_value"),
    ),
    (
        "priority a boolean",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "priority": True},
        422,
        "validation_failed",
        fields("priority:invalid_value"),
    ),
    (
        "max_retries as a string",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "max_retries": "3"},
        422,
        "validation_failed",
        fields("max_retries:wrong_type"),
    ),
    (
        "max_retries zero",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "max_retries": 0},
        422,
        "validation_failed",
        fields("max_retries:invalid_value"),
    ),
    (
        "needed_capabilities not a list",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "needed_capabilities": "code"},
        422,
        "validation_failed",
        fields("needed_capabilities:wrong_type"),
    ),
    (
        "metadata not an object",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "metadata": []},
        422,
        "validation_failed",
        fields("metadata:wrong_type"),
    ),
    (
        "verification step of unknown type",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "verification_steps": [{"type": "vibes", "target": "x"}]},
        422,
        "validation_failed",
        fields("verification_steps.0.type:invalid_value"),
    ),
    (
        "verification step without target",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "verification_steps": [{"type": "file_exists", "target": "a"}, {"type": "file_exists"}]},
        422,
        "validation_failed",
        fields("verification_steps.1.target:required"),
    ),
    (
        "verification step not an object",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "verification_steps": ["ls"]},
        422,
        "validation_failed",
        fields("verification_steps.0:wrong_type"),
    ),
    (
        "file hint without path",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "file_hints": [{"reason": "r"}]},
        422,
        "validation_failed",
        fields("file_hints.0.path:required"),
    ),
    (
        "unknown complexity tier",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "complexity_tier": "mega"},
        422,
        "validation_failed",
        fields("complexity_tier:invalid_value"),
    ),
    (
        "too many verification retries",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "max_verification_retries": 6},
        422,
        "validation_failed",
        fields("max_verification_retries:invalid_value"),
    ),
    (
        "unknown depends_on ids",
        "POST",
        "/api/tasks",
        "admin",
        {**OK, "depends_on": ["task-gone", "task-never"]},
        422,
        "validation_failed",
        fields("depends_on:unknown_task"),
    ),
    ("body not JSON", "POST", "/api/tasks", "admin", b"{description: oops", 400, "invalid_json", []),
    (
        "body a JSON array",
        "POST",
        "/api/tasks",
        "admin",
        [{"description": "x"}],
        422,
        "validation_failed",
        fields("(body):wrong_type"),
    ),
    (
        "body a JSON string",
        "POST",
        "/api/tasks",
        "admin",
        "describe me",
        422,
        "validation_failed",
        fields("(body):wrong_type"),
    ),
    ("empty body", "POST", "/api/tasks", "admin", None, 422, "validation_failed", fields("(body):wrong_type")),
    ("unknown route", "GET", "/api/nothing-here", "admin", None, 404, "not_found", []),
    ("unknown task", "GET", "/api/tasks/task-0000000000000000", "admin", None, 404, "task_not_found", []),
    (
        "cancel an unknown task",
        "POST",
        "/api/tasks/task-0000000000000000/cancel",
        "admin",
        None,
        404,
        "task_not_found",
        [],
    ),
    ("wrong method", "PUT", "/api/tasks", "admin", OK, 405, "method_not_allowed", []),
    (
        "bad status filter",
        "GET",
        "/api/tasks?status=sleeping",
        "admin",
        None,
        422,
        "validation_failed",
        fields("status:invalid_value"),
    ),
    (
        "bad priority filter",
        "GET",
        "/api/tasks?priority=asap",
        "admin",
        None,
        422,
        "validation_failed",
        fields("priority:invalid_value"),
    ),
    ("missing token", "GET", "/api/tasks", "none", None, 401, "unauthorized", []),
    ("bad token", "POST", "/api/tasks", "bad", OK, 401, "unauthorized", []),
    ("agent token lists tokens", "GET", "/admin/tokens", "agent", None, 403, "forbidden", []),
    ("agent token mints a token", "POST", "/admin/tokens", "agent", {"agent_id": "evil"}, 403, "forbidden", []),
    ("agent token revokes tokens", "DELETE", "/admin/tokens/submitter", "agent", None, 403, "forbidden", []),
    ("viewer token submits a task", "POST", "/api/tasks", "viewer", OK, 403, "forbidden", []),
    ("viewer token mints a token", "POST", "/admin/tokens", "viewer", {"agent_id": "evil"}, 403, "forbidden", []),
    (
        "token for a bad agent_id",
        "POST",
        "/admin/tokens",
        "admin",
        {"agent_id": "has space"},
        422,
        "validation_failed",
        fields("agent_id:invalid_value"),
    ),
    (
        "token with the admin role",
        "POST",
        "/admin/tokens",
        "admin",
        {"agent_id": "x", "role": "admin"},
        422,
        "validation_failed",
        fields("role:invalid_value"),
    ),
    (
        "token request with an unknown field",
        "POST",
        "/admin/tokens",
        "admin",
        {"agent_id": "x", "rol": "viewer"},
        422,
        "validation_failed",
        fields("rol:unknown_field"),
    ),
    ("revoke an unknown agent's tokens", "DELETE", "/admin/tokens/nobody", "admin", None, 404, "token_not_found", []),
]


@module_loop
@pytest.mark.parametrize(
    ("case", "method", "path", "role", "body", "status", "error", "errs"), HTTP, ids=[row[0] for row in HTTP]
)
async def test_http_bad_input(
    shared: tuple[HubHandle, dict[str, str]],
    case: str,
    method: str,
    path: str,
    role: str,
    body: Any,
    status: int,
    error: str,
    errs: list[tuple[str, str]],
) -> None:
    """A malformed or unauthorised HTTP request gets its exact status and JSON error, and changes nothing."""
    handle, tokens = shared
    n_tasks = len(handle.hub.queue.tasks)
    headers = {"Authorization": f"Bearer {tokens[role]}"} if tokens[role] else {"Authorization": ""}
    kwargs: dict[str, Any] = {"headers": headers}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None:
        kwargs["content"] = json.dumps(body).encode()
    r = await handle.http.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert data["error"] == error
    assert [(e["field"], e["error"]) for e in data.get("errors", [])] == errs
    if status == 401:
        assert data["hint"] == "provide Authorization: Bearer <token>"
    if case == "unknown depends_on ids":
        assert data["errors"][0]["value"] == ["task-gone", "task-never"]
        assert "task-gone" in data["errors"][0]["detail"] and "task-never" in data["errors"][0]["detail"]
    assert len(handle.hub.queue.tasks) == n_tasks, "a refused request creates no task"
    await assert_healthy(handle)


GOOD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("description of exactly 10000 characters", {"description": "x" * 10_000}, {}),
    ("priority by name", {**OK, "priority": "urgent"}, {"priority": 0, "priority_name": "urgent"}),
    ("priority by number", {**OK, "priority": 1}, {"priority": 1, "priority_name": "high"}),
    ("repo normalised", {**OK, "repo": " https://github.com/o/r.git/ "}, {"repo": "https://github.com/o/r"}),
    (
        "capabilities deduplicated and sorted",
        {**OK, "needed_capabilities": ["b", "a", "b"]},
        {"needed_capabilities": ["a", "b"]},
    ),
]


@module_loop
@pytest.mark.parametrize(("case", "body", "expect"), GOOD, ids=[g[0] for g in GOOD])
async def test_http_good_input_at_the_edges(
    shared: tuple[HubHandle, dict[str, str]], case: str, body: dict[str, Any], expect: dict[str, Any]
) -> None:
    """Valid bodies at the limits are accepted (201) and stored as normalised."""
    handle, _ = shared
    r = await handle.http.post("/api/tasks", json={**body, "assign_to": "no-such-agent"})
    assert r.status_code == 201, r.text
    task = await handle.task(r.json()["task_id"])
    assert {k: task[k] for k in expect} == expect


@module_loop
async def test_unknown_fields_are_ignored_with_a_warning(shared: tuple[HubHandle, dict[str, str]]) -> None:
    """Unknown fields in a task body are ignored and named in the response's warnings; 11 steps warn too."""
    handle, tokens = shared
    steps = [{"type": "file_exists", "target": f"f{n}"} for n in range(11)]
    r = await handle.http.post(
        "/api/tasks",
        json={**OK, "colour": "blue", "verification_steps": steps, "assign_to": "no-such-agent"},
        headers={"Authorization": f"Bearer {tokens['agent']}"},
    )
    assert r.status_code == 201
    assert r.json()["warnings"] == [
        "unknown field 'colour' ignored",
        "11 verification steps; more than 10 slows every attempt",
    ]
    assert (await handle.task(r.json()["task_id"]))["submitted_by"] == "submitter"
