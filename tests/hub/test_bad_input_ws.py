"""Malformed and unauthorised WebSocket frames get precise errors, and the hub stays healthy.

The table runs against one hub shared by the module (every bad frame lands on the same hub, which must keep
serving).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from shared.agent_sim import AgentSim
from shared.protocol import SIDECAR_TYPES
from tests.conftest import HubHandle
from tests.hub.bad_input_hub import (  # noqa: F401 (fixture "shared")
    assert_healthy,
    assert_serves_a_task,
    module_loop,
    shared_hub,
)

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
