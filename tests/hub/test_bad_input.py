"""Malformed HTTP requests and WebSocket frames get precise errors, and the hub stays healthy.

The two tables run against one hub shared by the module (every bad input lands on the same hub, which must keep
serving); the violation-limit tests get their own hubs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from hub.clock import ManualClock
from hub.server import HubServer
from hub.settings import HubSettings
from hub.violations import ViolationTracker
from shared.agent_sim import AgentSim
from shared.protocol import SIDECAR_TYPES
from tests.conftest import HubHandle, wait_tasks

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[HubHandle, dict[str, str]]]:
    """One real hub for the whole module, with a token of each role."""
    data_dir = tmp_path_factory.mktemp("shared-hub")
    server = HubServer(HubSettings(host="127.0.0.1", port=0, data_dir=data_dir))
    await server.start()
    handle = HubHandle(server, data_dir)
    tokens = {
        "admin": handle.admin_token,
        "agent": await handle.mint_token("submitter"),
        "viewer": await handle.mint_token("watcher", "viewer"),
        "none": "",
        "bad": "not-a-token",
    }
    yield handle, tokens
    await handle.http.aclose()
    await server.stop()


async def assert_healthy(handle: HubHandle) -> None:
    r = await handle.http.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def assert_serves_a_task(handle: HubHandle) -> None:
    """A well-behaved agent connects and completes a task."""
    agent_id = f"healthy-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id))
    await sim.connect()
    try:
        tid = await handle.submit(description="still alive?", assign_to=agent_id)
        await wait_tasks(handle, [tid], {"completed"})
        await sim.settled()
        assert sim.completed_count == 1
    finally:
        await sim.close()


# --- HTTP ----------------------------------------------------------------------------------------------------------


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


# --- WebSocket -------------------------------------------------------------------------------------------------------

TYPES = list(SIDECAR_TYPES)
# (case, identify first, frame: text with $AGENT / $TOKEN / $OTHER / $VIEWER, or bytes for a binary frame,
#  expected reply projection, counts as a violation)
WS: list[tuple[str, bool, str | bytes, dict[str, Any], bool]] = [
    ("invalid JSON", True, "{type: ping", {"error": "invalid_json"}, True),
    ("non-object JSON", True, "[1, 2, 3]", {"error": "invalid_json", "detail": "a frame must be a JSON object"}, True),
    ("missing type", True, '{"task_id": "t"}', {"error": "validation_failed", "fields": [("type", "required")]}, True),
    (
        "type not a string",
        True,
        '{"type": ["ping"]}',
        {"error": "validation_failed", "fields": [("type", "wrong_type")]},
        True,
    ),
    (
        "unknown type",
        True,
        '{"type": "self_destruct"}',
        {
            "error": "unknown_message_type",
            "message_type": "self_destruct",
            "fields": [("type", "unknown_message_type")],
            "known_types": TYPES,
        },
        True,
    ),
    (
        "missing required fields",
        True,
        '{"type": "task_complete"}',
        {
            "error": "validation_failed",
            "message_type": "task_complete",
            "fields": [("task_id", "required"), ("generation", "required")],
        },
        True,
    ),
    (
        "wrong types",
        True,
        '{"type": "task_complete", "task_id": 5, "generation": "1", "result": []}',
        {
            "error": "validation_failed",
            "message_type": "task_complete",
            "fields": [("task_id", "wrong_type"), ("generation", "wrong_type"), ("result", "wrong_type")],
        },
        True,
    ),
    (
        "too-long agent_id",
        False,
        '{"type": "identify", "agent_id": "' + "a" * 129 + '", "token": "$TOKEN"}',
        {"error": "validation_failed", "message_type": "identify", "fields": [("agent_id", "too_long")]},
        True,
    ),
    ("message before identify", False, '{"type": "ping"}', {"error": "not_identified", "message_type": "ping"}, True),
    (
        "task report before identify",
        False,
        '{"type": "task_complete", "task_id": "t", "generation": 1}',
        {"error": "not_identified", "message_type": "task_complete"},
        True,
    ),
    (
        "token of another agent",
        False,
        '{"type": "identify", "agent_id": "$AGENT", "token": "$OTHER"}',
        {"error": "token_agent_mismatch", "message_type": "identify"},
        True,
    ),
    (
        "viewer token",
        False,
        '{"type": "identify", "agent_id": "$AGENT", "token": "$VIEWER"}',
        {"error": "token_agent_mismatch", "message_type": "identify"},
        True,
    ),
    (
        "unknown token",
        False,
        '{"type": "identify", "agent_id": "$AGENT", "token": "nope"}',
        {"error": "invalid_token", "message_type": "identify"},
        True,
    ),
    (
        "re-identify as someone else",
        True,
        '{"type": "identify", "agent_id": "$OTHERID", "token": "$OTHER"}',
        {"error": "already_identified", "detail": "$AGENT"},
        True,
    ),
    (
        "binary frame",
        True,
        b'{"type": "ping"}',
        {"error": "invalid_json", "detail": "binary frames are not accepted; send JSON text"},
        True,
    ),
    (
        "binary garbage",
        False,
        b"\x00\xff\x13",
        {"error": "invalid_json", "detail": "binary frames are not accepted; send JSON text"},
        True,
    ),
    (
        "result for an unknown task",
        True,
        '{"type": "task_complete", "task_id": "task-nope", "generation": 1}',
        {"error": "task_complete_failed: not_found", "task_id": "task-nope", "detail": "task-nope"},
        False,
    ),
    (
        "failure for an unknown task",
        True,
        '{"type": "task_failed", "task_id": "task-nope", "generation": 1}',
        {"error": "task_fail_failed: not_found", "task_id": "task-nope", "detail": "task-nope"},
        False,
    ),
    (
        "rejection of a task not held",
        True,
        '{"type": "task_rejected", "task_id": "task-nope"}',
        {"error": "task_reject_failed: not_assigned_to_you", "task_id": "task-nope"},
        False,
    ),
]


def project(reply: dict[str, Any]) -> dict[str, Any]:
    out = {k: reply[k] for k in ("error", "message_type", "detail", "task_id") if k in reply}
    if "errors" in reply:
        out["fields"] = [(e["field"], e["error"]) for e in reply["errors"]]
        known = [e["known_types"] for e in reply["errors"] if "known_types" in e]
        if known:
            out["known_types"] = known[0]
    return out


@module_loop
@pytest.mark.parametrize(("case", "identify", "frame", "expected", "violation"), WS, ids=[w[0] for w in WS])
async def test_ws_bad_frames(
    shared: tuple[HubHandle, dict[str, str]],
    case: str,
    identify: bool,
    frame: str | bytes,
    expected: dict[str, Any],
    violation: bool,
) -> None:
    """A malformed or unauthorised frame is answered with the precise error; the socket and the hub stay up."""
    handle, tokens = shared
    agent_id, other_id = f"bad-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    token, other = await handle.mint_token(agent_id), await handle.mint_token(other_id)
    sim = AgentSim(handle.ws_url, agent_id, token)
    await sim.connect(identify=identify)
    try:
        before = handle.hub.violations.n_violations
        if isinstance(frame, bytes):
            assert sim.ws is not None
            await sim.ws.send(frame)
        else:
            for key, value in (
                ("$OTHERID", other_id),
                ("$AGENT", agent_id),
                ("$TOKEN", token),
                ("$OTHER", other),
                ("$VIEWER", tokens["viewer"]),
            ):
                frame = frame.replace(key, value)
            await sim.send_raw(frame)
        reply = await sim.wait_for(lambda m: m.get("type") == "error")
        assert project(reply) == {k: agent_id if v == "$AGENT" else v for k, v in expected.items()}
        assert handle.hub.violations.n_violations == before + int(violation)
        await sim.send({"type": "ping"})
        answer = await sim.wait_for(
            lambda m: m.get("type") == "pong" or (m.get("error") == "not_identified" and m is not reply)
        )
        assert answer["type"] == ("pong" if identify else "error"), "the socket is still served"
        if case == "re-identify as someone else":
            assert handle.hub.agents.get(agent_id) is not None and handle.hub.agents.get(other_id) is None
    finally:
        await sim.close()
    await assert_healthy(handle)


@module_loop
async def test_frame_over_the_cap_closes_with_1009(shared: tuple[HubHandle, dict[str, str]]) -> None:
    """A frame over the 1 MiB cap closes that socket with 1009 and nothing else is affected."""
    handle, _ = shared
    agent_id = f"big-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id))
    await sim.connect()
    huge = json.dumps({"type": "task_progress", "task_id": "t", "execution_event": {"blob": "x" * (1 << 20)}})
    await sim.send_raw(huge)
    with pytest.raises(ConnectionError):
        await sim.wait_for(lambda m: False)
    assert sim.ws is not None and sim.ws.close_code == 1009
    await sim.close()
    await assert_healthy(handle)


@module_loop
async def test_hub_still_completes_work_after_the_tables(shared: tuple[HubHandle, dict[str, str]]) -> None:
    """After every bad request and frame above, the same hub is healthy and a normal agent completes a task."""
    handle, _ = shared
    await assert_healthy(handle)
    await assert_serves_a_task(handle)


# --- violation limits ----------------------------------------------------------------------------------------------


async def closed(sim: AgentSim) -> tuple[int | None, str | None]:
    """Wait for the hub to close ``sim``'s socket; its close code and reason."""
    with pytest.raises(ConnectionError):
        await sim.wait_for(lambda m: False)
    assert sim.ws is not None
    return sim.ws.close_code, sim.ws.close_reason


async def test_ten_violations_close_and_cooldown_refuses_reidentify(hub) -> None:
    """Ten invalid frames close the socket with 1008; identifying again within the cooldown is closed with 1008."""
    token = await hub.mint_token("noisy")
    sim = AgentSim(hub.ws_url, "noisy", token)
    await sim.connect()
    for n in range(10):
        await sim.send_raw(f"not json {n}")
    assert await closed(sim) == (1008, "too many validation errors")
    assert [e["error"] for e in sim.errors] == ["invalid_json"] * 10
    assert hub.hub.violations.stats() == {"violations": 10, "disconnects": 1}

    again = AgentSim(hub.ws_url, "noisy", token)
    await again.connect(identify=False)
    await again.send({"type": "identify", "agent_id": "noisy", "token": token})
    code, reason = await closed(again)
    assert code == 1008 and reason is not None and reason.startswith("cooldown active: retry in ")
    assert not again.identified.is_set() and hub.hub.agents.get("noisy") is None

    r = await hub.http.get("/health")
    assert r.json()["status"] == "ok" and r.json()["violations"] == {"violations": 10, "disconnects": 1}
    await assert_serves_a_task(hub)


async def test_nine_violations_keep_the_socket(hub) -> None:
    """Nine invalid frames within the window are answered but do not close the socket."""
    token = await hub.mint_token("clumsy")
    sim = AgentSim(hub.ws_url, "clumsy", token)
    await sim.connect()
    for _ in range(9):
        await sim.send_raw("{")
    await sim.send({"type": "ping"})
    await sim.wait_for(lambda m: m.get("type") == "pong")
    assert len(sim.errors) == 9
    await sim.close()


async def test_violations_before_identify_close_the_connection_only(hub) -> None:
    """Ten bad frames before identify close that connection; the agent may still identify on a new one."""
    token = await hub.mint_token("early")
    sim = AgentSim(hub.ws_url, "early", token)
    await sim.connect(identify=False)
    for _ in range(10):
        await sim.send({"type": "ping"})
    assert await closed(sim) == (1008, "too many validation errors")
    fresh = AgentSim(hub.ws_url, "early", token)
    await fresh.connect()
    assert hub.hub.agents.get("early") is not None
    await fresh.close()


# (actions, expected results): "v" records a violation (result: closes?), "d" a disconnect (result: cooldown s),
# "+N" advances the clock N seconds, "c" reads the remaining cooldown.
TRACKER: list[tuple[str, list[str], list[Any]]] = [
    ("ninth violation does not close", ["v"] * 9, [False] * 9),
    ("tenth violation closes", ["v"] * 10, [False] * 9 + [True]),
    ("window slides", ["v"] * 9 + ["+61", "v"], [False] * 9 + [None, False]),
    ("inside the window they add up", ["v"] * 9 + ["+59", "v"], [False] * 9 + [None, True]),
    ("cooldowns escalate", ["d", "d", "d", "d"], [30.0, 60.0, 300.0, 300.0]),
    ("disconnect clears the count", ["v"] * 9 + ["d", "v"], [False] * 9 + [30.0, False]),
    ("cooldown runs down", ["c", "d", "c", "+10", "c", "+20", "c"], [0.0, 30.0, 30.0, None, 20.0, None, 0.0]),
]


@pytest.mark.parametrize(("case", "actions", "results"), TRACKER, ids=[t[0] for t in TRACKER])
def test_violation_tracker(case: str, actions: list[str], results: list[Any]) -> None:
    """The tracker closes at the 10th violation within 60 s and escalates cooldowns 30 s, 60 s, 300 s."""
    clock = ManualClock()
    tracker = ViolationTracker(clock, limit=10, window_s=60, cooldowns_s=(30.0, 60.0, 300.0))
    out: list[Any] = []
    for action in actions:
        if action == "v":
            out.append(tracker.record("agent"))
        elif action == "d":
            out.append(tracker.disconnected("agent"))
        elif action == "c":
            out.append(tracker.cooldown_remaining_s("agent"))
        else:
            clock.advance(float(action))
            out.append(None)
    assert out == results


def test_violation_tracker_keys_are_independent() -> None:
    """One offender's violations and cooldown do not affect another key."""
    tracker = ViolationTracker(ManualClock(), limit=2, window_s=60, cooldowns_s=(30.0,))
    assert tracker.record("a") is False and tracker.record("a") is True
    tracker.disconnected("a")
    assert tracker.record("b") is False
    assert tracker.cooldown_remaining_s("b") == 0.0 and tracker.cooldown_remaining_s("a") == 30.0


async def test_replies_keep_frame_order_around_a_binary_frame(hub, make_agent) -> None:
    """A binary frame's error is answered after the replies to the frames sent before it."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="ordered")
    gen = (await sim.wait_for(lambda m: m.get("type") == "task_assign"))["generation"]
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
    await sim.send({"type": "task_complete", "task_id": tid, "generation": gen, "result": {}})
    assert sim.ws is not None
    await sim.ws.send(b"\x00")
    await sim.send({"type": "ping"})
    await sim.wait_for(lambda m: m.get("type") == "pong")
    replies = [
        m.get("status") or m.get("error") or m["type"]
        for m in sim.inbox
        if m["type"] not in ("task_assign", "identified")
    ]
    assert replies == ["accepted", "complete", "invalid_json", "pong"]
