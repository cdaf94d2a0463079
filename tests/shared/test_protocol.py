"""The wire protocol (shared/protocol.py): decoding and validation of every frame, as pure tables."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from shared import protocol as P

VALID: list[dict[str, Any]] = [
    {
        "type": "identify",
        "agent_id": "a1",
        "token": "t",
        "name": "n",
        "status": "idle",
        "capabilities": ["code"],
        "ollama_url": "http://h:11434",
        "client_type": "sidecar",
        "sandbox_level": "bwrap",
        "models": ["m"],
        "pm2_info": {"name": "x", "restart_count": 0},
    },
    {"type": "ping"},
    {"type": "task_accepted", "task_id": "task-1"},
    {"type": "task_accepted", "task_id": "task-1", "generation": 2},
    {"type": "task_progress", "task_id": "task-1", "progress": 50, "execution_event": {"event_type": "tool"}},
    {"type": "task_complete", "task_id": "task-1", "generation": 1},
    {
        "type": "task_complete",
        "task_id": "task-1",
        "generation": 1,
        "result": {"status": "success"},
        "tokens_used": 42,
        "verification_report": {"status": "pass"},
        "verification_history": [{"run_number": 1}],
    },
    {"type": "task_failed", "task_id": "task-1", "generation": 1, "error": "boom", "reason": "r"},
    {"type": "task_rejected", "task_id": "task-1", "reason": "busy"},
    {"type": "task_recovering", "task_id": "task-1"},
    {"type": "state_report", "task_id": "task-1", "status": "working", "generation": 3, "assigned_at": 1},
    {
        "type": "resource_report",
        "cpu_percent": 12.5,
        "ram_used_bytes": 1,
        "ram_total_bytes": 2,
        "vram_used_bytes": 0,
        "vram_total_bytes": 0,
        "timestamp": 1,
    },
    {"type": "resource_report", "cpu_percent": 12},
    {"type": "agent_restarting", "reason": "update"},
    {"type": "repo_reach", "reachable": ["demo"], "unreachable": [{"name": "private", "reason": "auth failed"}]},
    {"type": "budget_request", "request_id": "r1", "task_id": "t1", "model": "m", "est_tokens_in": 10, "est_usd": 0.1},
    {"type": "usage_report", "task_id": "t1", "grant_id": "g1", "usage": {"tokens_in": 5}, "wall_ms": 3},
]


@pytest.mark.parametrize("frame", VALID, ids=[f"{f['type']}-{len(f)}" for f in VALID])
def test_valid_frames_decode(frame: dict[str, Any]) -> None:
    """A valid frame of every sidecar type decodes to its model with the fields it carried."""
    msg = P.decode_sidecar(json.dumps({"protocol_version": 1, **frame}))
    assert msg.type == frame["type"]
    for key, value in frame.items():
        assert dumped(getattr(msg, key)) == value


def dumped(value: Any) -> Any:
    """A decoded field as the JSON it came from (typed payloads: the fields that were sent)."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if isinstance(value, list):
        return [dumped(v) for v in value]
    return value


def test_every_sidecar_type_has_a_valid_example() -> None:
    """The valid table covers every sidecar message type, task_rejected and agent_restarting included."""
    assert {f["type"] for f in VALID} == set(P.SIDECAR_TYPES)
    assert {"task_rejected", "agent_restarting", "state_report"} <= set(P.SIDECAR_TYPES)
    assert len(P.SIDECAR_TYPES) == 14


def test_unknown_fields_pass_through() -> None:
    """Unknown fields are ignored, not errors (sidecars may be newer than the hub)."""
    msg = P.decode_sidecar(json.dumps({"type": "ping", "shiny_new_field": [1], "protocol_version": 1}))
    assert isinstance(msg, P.Ping)


def test_bytes_decode_like_text() -> None:
    """decode_sidecar accepts the UTF-8 bytes of a frame as well as its text."""
    assert isinstance(P.decode_sidecar(b'{"type":"ping"}'), P.Ping)


def err(
    error: str, message_type: str | None = None, errors: list[dict[str, Any]] | None = None, detail: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "error": error, "protocol_version": 1}
    for key, value in (("message_type", message_type), ("errors", errors), ("detail", detail)):
        if value is not None:
            out[key] = value
    return out


BAD: list[tuple[str, str | bytes, dict[str, Any]]] = [
    ("not JSON", "{nope", err("invalid_json")),
    ("empty frame", "", err("invalid_json")),
    ("invalid UTF-8", b"\xff\xfe{", err("invalid_json")),
    ("JSON array", "[1, 2]", err("invalid_json", detail="a frame must be a JSON object")),
    ("JSON string", '"ping"', err("invalid_json", detail="a frame must be a JSON object")),
    ("JSON null", "null", err("invalid_json", detail="a frame must be a JSON object")),
    ("missing type", '{"agent_id": "a"}', err("validation_failed", errors=[{"field": "type", "error": "required"}])),
    ("null type", '{"type": null}', err("validation_failed", errors=[{"field": "type", "error": "required"}])),
    (
        "type not a string",
        '{"type": 123}',
        err("validation_failed", errors=[{"field": "type", "error": "wrong_type", "value": 123}]),
    ),
    (
        "unknown type",
        '{"type": "teleport"}',
        err(
            "unknown_message_type",
            message_type="teleport",
            errors=[{"field": "type", "error": "unknown_message_type", "known_types": list(P.SIDECAR_TYPES)}],
        ),
    ),
]


@pytest.mark.parametrize(("case", "frame", "reply"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_frames(case: str, frame: str | bytes, reply: dict[str, Any]) -> None:
    """A malformed frame raises FrameError carrying the exact AgentCom error reply."""
    with pytest.raises(P.FrameError) as info:
        P.decode_sidecar(frame)
    assert json.loads(P.encode(info.value.reply)) == reply


def field_errors_of(frame: dict[str, Any]) -> tuple[str, str | None, list[tuple[str, str, Any]]]:
    with pytest.raises(P.FrameError) as info:
        P.decode_sidecar(json.dumps(frame))
    reply = info.value.reply
    return reply.error, reply.message_type, [(e["field"], e["error"], e.get("value")) for e in reply.errors or []]


INVALID_FIELDS: list[tuple[str, dict[str, Any], list[tuple[str, str, Any]]]] = [
    (
        "identify without agent_id and token",
        {"type": "identify"},
        [("agent_id", "required", None), ("token", "required", None)],
    ),
    ("identify without token", {"type": "identify", "agent_id": "a"}, [("token", "required", None)]),
    (
        "agent_id of 129 characters",
        {"type": "identify", "agent_id": "a" * 129, "token": "t"},
        [("agent_id", "too_long", "a" * 129)],
    ),
    ("empty agent_id", {"type": "identify", "agent_id": "", "token": "t"}, [("agent_id", "invalid_value", "")]),
    (
        "token of 257 characters",
        {"type": "identify", "agent_id": "a", "token": "t" * 257},
        [("token", "too_long", "t" * 257)],
    ),
    (
        "status not a string",
        {"type": "identify", "agent_id": "a", "token": "t", "status": 42},
        [("status", "wrong_type", 42)],
    ),
    (
        "capabilities not a list",
        {"type": "identify", "agent_id": "a", "token": "t", "capabilities": 42},
        [("capabilities", "wrong_type", 42)],
    ),
    (
        "a capability not a string",
        {"type": "identify", "agent_id": "a", "token": "t", "capabilities": ["x", 1]},
        [("capabilities.1", "wrong_type", 1)],
    ),
    ("task_complete without generation", {"type": "task_complete", "task_id": "t"}, [("generation", "required", None)]),
    (
        "generation as a string is not coerced",
        {"type": "task_complete", "task_id": "t", "generation": "1"},
        [("generation", "wrong_type", "1")],
    ),
    (
        "generation not an int",
        {"type": "task_complete", "task_id": "t", "generation": "not_int"},
        [("generation", "wrong_type", "not_int")],
    ),
    (
        "generation a float",
        {"type": "task_failed", "task_id": "t", "generation": 1.5},
        [("generation", "wrong_type", 1.5)],
    ),
    (
        "result not an object",
        {"type": "task_complete", "task_id": "t", "generation": 1, "result": "ok"},
        [("result", "wrong_type", "ok")],
    ),
    (
        "error over 2000 characters",
        {"type": "task_failed", "task_id": "t", "generation": 1, "error": "e" * 2001},
        [("error", "too_long", "e" * 2001)],
    ),
    ("task_id missing", {"type": "task_accepted"}, [("task_id", "required", None)]),
    ("task_id a number", {"type": "state_report", "task_id": 7}, [("task_id", "wrong_type", 7)]),
]


@pytest.mark.parametrize(("case", "frame", "errors"), INVALID_FIELDS, ids=[c for c, _, _ in INVALID_FIELDS])
def test_field_errors(case: str, frame: dict[str, Any], errors: list[tuple[str, str, Any]]) -> None:
    """A frame with bad fields fails validation_failed, naming its type and each bad field with a precise code."""
    assert field_errors_of(frame) == ("validation_failed", frame["type"], errors)


def test_union_field_errors_name_the_field() -> None:
    """A value fitting no member of a union field (cpu_percent: float or int) is reported as wrong_type on it."""
    error, message_type, errors = field_errors_of({"type": "resource_report", "cpu_percent": "high"})
    assert (error, message_type) == ("validation_failed", "resource_report")
    assert errors and all(f.split(".")[0] == "cpu_percent" and e == "wrong_type" and v == "high" for f, e, v in errors)


def test_agent_id_of_128_characters_is_fine() -> None:
    """The agent_id limit is inclusive: 128 characters are accepted."""
    msg = P.decode_sidecar(json.dumps({"type": "identify", "agent_id": "a" * 128, "token": "t"}))
    assert isinstance(msg, P.Identify) and len(msg.agent_id) == 128


def test_messages_are_immutable() -> None:
    """Decoded messages are frozen."""
    msg = P.decode_sidecar('{"type": "task_accepted", "task_id": "t"}')
    with pytest.raises(ValueError):
        msg.task_id = "other"  # type: ignore[misc]


HUB_MESSAGES: list[P.Message] = [
    P.Identified(agent_id="a"),
    P.ErrorReply(error="validation_failed", message_type="ping", errors=[{"field": "x", "error": "required"}]),
    P.Pong(timestamp=5),
    P.TaskAssign(
        task_id="t",
        description="d",
        generation=1,
        assigned_at=2,
        metadata={"k": 1},
        verification_steps=[{"type": "file_exists", "target": "x"}],
        complexity={"effective_tier": "x"},
    ),
    P.TaskAck(task_id="t", status="complete"),
    P.TaskContinue(task_id="t", generation=3),
    P.TaskReassign(task_id="t"),
    P.TaskCancelled(task_id="t", timestamp=9),
    P.StateReportAck(task_id="t", action="continue", generation=2),
    P.RestartSidecar(),
]


@pytest.mark.parametrize("message", HUB_MESSAGES, ids=lambda m: m.type)
def test_hub_messages_round_trip(message: P.Message) -> None:
    """Every hub message encodes to JSON without null fields and decodes back to an equal model."""
    text = P.encode(message)
    assert None not in json.loads(text).values()
    assert P.decode_hub(text) == message


def test_decode_hub_rejects_garbage() -> None:
    """A malformed hub frame raises ValueError on the sidecar side."""
    for text in ("{", '{"type": "task_ack", "task_id": "t", "status": "maybe"}', '{"type": "warp"}'):
        with pytest.raises(ValueError):
            P.decode_hub(text)
