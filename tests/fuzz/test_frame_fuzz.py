"""Fuzzing the agents' socket: any frame, in any order, gets a JSON answer or a policy close, and the hub holds."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from shared import protocol as P
from tests.fuzz.conftest import COUNTS, FUZZ, QUIET_PRNG_WARNING, FuzzHub
from tests.fuzz.strategies import Raw, Slot, dumps, json_objects, json_values, numbers, shaped, texts

MODELS = (
    P.Identify,
    P.Ping,
    P.TaskAccepted,
    P.TaskProgress,
    P.TaskComplete,
    P.TaskFailed,
    P.TaskRejected,
    P.TaskRecovering,
    P.StateReport,
    P.ResourceReport,
    P.AgentRestarting,
)
ALLOWED_CLOSES = {1000, 1008, 1009, 4000, 4426}  # 4426: a protocol version this hub does not speak
"""Normal, policy (too many invalid frames, cooldown), frame too big, replaced by a newer connection."""

# Frames mostly name the task the hub just assigned, at its generation (or one off), so that out-of-order reports
# (complete before accept, progress after complete, a second complete) reach the task's real state machine.
task_ids = st.integers(0, 3).flatmap(lambda i: st.just(Slot("task_id")) if i else st.one_of(texts, json_values))
generations = st.integers(0, 4).flatmap(
    lambda i: (
        st.just(Slot("generation"))
        if i > 1
        else st.just(Slot("generation+1"))
        if i
        else st.one_of(numbers, json_values)
    )
)
REPORTS = (P.TaskAccepted, P.TaskProgress, P.TaskComplete, P.TaskFailed)  # the ones that write to the store
sidecar_frames = st.sampled_from(MODELS + REPORTS).flatmap(
    lambda m: shaped(
        m,
        task_id=task_ids,
        generation=generations,
        execution_event=json_objects,
        agent_id=st.just(Slot("agent_id")),
        token=st.just(Slot("token")),
    )
)
# The task's metadata holds the numbers the hub computes with while the task runs; the other hostile metadata is the
# HTTP fuzzer's (so that a bug on the submit path does not hide the frame handlers' own).
task_metadata = st.fixed_dictionaries({}, optional={"timeout_ms": numbers})
frames = st.one_of(
    sidecar_frames,
    sidecar_frames,
    sidecar_frames,
    json_values,  # any JSON at all
    st.binary(max_size=64),  # a binary frame
    st.sampled_from(['{"type":', "not json", "", "{}", '{"type": null}', '{"type": "task_assign"}', "[]"]).map(Raw),
)


def _recv(ws: ClientConnection, timeout_s: float = 10) -> dict[str, Any]:
    raw = ws.recv(timeout=timeout_s)
    assert isinstance(raw, str), f"the hub sent a binary frame: {raw!r}"
    message = json.loads(raw)
    assert isinstance(message, dict) and isinstance(message.get("type"), str), raw
    if message["type"] == "error":
        assert isinstance(message.get("error"), str), raw
    return message


def _until(ws: ClientConnection, kind: str, or_error_for: str | None = None) -> dict[str, Any]:
    while True:
        message = _recv(ws)
        if message["type"] == kind or (message["type"] == "error" and message.get("message_type") == or_error_for):
            return message


@pytest.mark.timeout(900)
@QUIET_PRNG_WARNING
@FUZZ
@given(identify=st.booleans(), metadata=task_metadata, sequence=st.lists(frames, min_size=1, max_size=5))
def test_agent_frames_never_crash_a_handler_and_the_hub_holds(
    fuzz_hub: FuzzHub, identify: bool, metadata: Any, sequence: list[Any]
) -> None:
    """Valid-shaped frames of every type with hostile leaves, bad JSON, binary, any order: the hub holds."""
    fuzz_hub.ensure()
    COUNTS["frame examples"] += 1
    agent_id = f"fuzz-{uuid.uuid4().hex[:10]}"  # a fresh agent each case: no cooldown carries over
    ctx: dict[str, Any] = {
        "agent_id": agent_id,
        "token": fuzz_hub.mint(agent_id),
        "task_id": "task-none",
        "generation": 0,
        "generation+1": 1,
    }
    with connect(fuzz_hub.ws_url, max_size=2**22, compression=None, open_timeout=10) as ws:
        if identify:
            ws.send(json.dumps({"type": "identify", "agent_id": agent_id, "token": ctx["token"]}))
            _until(ws, "identified")
            # A task for this agent, with hostile metadata (a sweep reads metadata.timeout_ms while it runs).
            body = dumps({"description": "fuzzed", "assign_to": agent_id, "metadata": metadata})
            assert fuzz_hub.http is not None
            r = fuzz_hub.http.post("/api/tasks", content=body.encode("utf-8", "surrogatepass"), headers=fuzz_hub.admin)
            assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
            if r.status_code == 201:
                assign = _until(ws, "task_assign")
                ctx.update(
                    task_id=assign["task_id"],
                    generation=assign["generation"],
                    **{"generation+1": assign["generation"] + 1},
                )
        closed = None
        try:
            for frame in sequence:
                COUNTS["frames"] += 1
                ws.send(frame if isinstance(frame, bytes) else dumps(frame, ctx))
            ws.send(json.dumps({"type": "ping"}))  # answered after every frame before it was handled
            _until(ws, "pong", or_error_for="ping")  # not_identified when no identify got through
        except ConnectionClosed as exc:
            closed = exc.rcvd.code if exc.rcvd is not None else None
        if closed is not None:
            assert closed in ALLOWED_CLOSES, f"closed with {closed}"
    problem = fuzz_hub.problem()
    assert problem is None, problem
