"""Free-form JSON and numbers at the edge: hostile values are refused with a precise error or stored safely, and no
stored value can stop the hub, its sweeps or its start.

The HTTP table runs against one hub shared by the module (every hostile body lands on the same hub, which must
keep serving); the agent, restart and database tests get their own hubs.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets

from hub.agents import Agent, finite_resources
from hub.clock import ManualClock
from hub.server import HubServer
from hub.settings import HubSettings
from shared import jsonsafe
from shared.agent_sim import AgentSim
from shared.protocol import MAX_TASK_TIMEOUT_MS
from tests.conftest import SCALE, HubHandle, wait_tasks

module_loop = pytest.mark.asyncio(loop_scope="module")
DEEP = 100_000


def strict_json(text: str | bytes) -> Any:
    """Parse as a browser would: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a JSON answer"))


@asynccontextmanager
async def running(data_dir: Path, clock: ManualClock | None = None, **overrides: Any) -> AsyncIterator[HubHandle]:
    """A real hub on ``data_dir`` (port 0) for the duration of the block."""
    server = HubServer(HubSettings(host="127.0.0.1", port=0, data_dir=data_dir, **overrides), clock)
    await server.start()
    handle = HubHandle(server, data_dir)
    try:
        yield handle
    finally:
        await handle.http.aclose()
        await server.stop()


async def serves_a_task(handle: HubHandle) -> None:
    """A well-behaved agent connects and completes a task: the scheduler and the store writer are alive."""
    agent_id = f"healthy-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id))
    await sim.connect()
    try:
        tid = await handle.submit(description="still alive?", assign_to=agent_id)
        await wait_tasks(handle, [tid], {"completed"})
        await sim.settled()
    finally:
        await sim.close()
    r = await handle.http.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and handle.hub.failed is None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HubHandle]:
    """One real hub for the whole module."""
    async with running(tmp_path_factory.mktemp("hostile-hub")) as handle:
        yield handle


# --- HTTP ----------------------------------------------------------------------------------------------------------


def body(meta: str = "{}", **fields: str) -> bytes:
    """A raw submission: ``metadata`` and extra fields spliced in as JSON text, unparsed."""
    extra = "".join(f',"{k}":{v}' for k, v in fields.items())
    return ('{"description":"hostile","metadata":' + meta + extra + "}").encode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


SEVEN_DAYS = MAX_TASK_TIMEOUT_MS
# (case, path, raw body, status, error code, [(field, code)])
HTTP: list[tuple[str, str, bytes, int, str, list[tuple[str, str]]]] = [
    (
        "lone surrogate in a metadata value",
        "/api/tasks",
        body(r'{"a":"\ud800"}'),
        422,
        "validation_failed",
        [("metadata.a", "invalid_unicode")],
    ),
    (
        "lone surrogate in a metadata key",
        "/api/tasks",
        body(r'{"x":{"\udc00":1}}'),
        422,
        "validation_failed",
        [("metadata.x.\\udc00", "invalid_unicode")],
    ),
    (
        "lone surrogate in the description",
        "/api/tasks",
        rb'{"description":"a\ud800b"}',
        422,
        "validation_failed",
        [("description", "invalid_unicode")],
    ),
    (
        "lone surrogate as an unknown field's name",
        "/api/tasks",
        rb'{"description":"x","\ud800":1}',
        422,
        "validation_failed",
        [("\\ud800", "invalid_unicode")],
    ),
    (
        "lone surrogate in a capability",
        "/api/tasks",
        body(needed_capabilities=r'["\ud800"]'),
        422,
        "validation_failed",
        [("needed_capabilities.0", "invalid_unicode")],
    ),
    ("NaN in metadata", "/api/tasks", body('{"x":NaN}'), 422, "validation_failed", [("metadata.x", "not_finite")]),
    (
        "Infinity in metadata",
        "/api/tasks",
        body('{"x":[1,Infinity]}'),
        422,
        "validation_failed",
        [("metadata.x.1", "not_finite")],
    ),
    (
        "-Infinity in metadata",
        "/api/tasks",
        body('{"x":{"y":-Infinity}}'),
        422,
        "validation_failed",
        [("metadata.x.y", "not_finite")],
    ),
    ("1e400 in metadata", "/api/tasks", body('{"x":1e400}'), 422, "validation_failed", [("metadata.x", "not_finite")]),
    (
        "NaN as max_retries",
        "/api/tasks",
        body(max_retries="NaN"),
        422,
        "validation_failed",
        [("max_retries", "not_finite")],
    ),
    (
        "5,000-digit integer in metadata",
        "/api/tasks",
        body('{"n":' + "9" * 5000 + "}"),
        422,
        "validation_failed",
        [("metadata.n", "out_of_range")],
    ),
    (
        "2**63 in metadata",
        "/api/tasks",
        body('{"n":' + str(2**63) + "}"),
        422,
        "validation_failed",
        [("metadata.n", "out_of_range")],
    ),
    (
        "5,000-digit priority",
        "/api/tasks",
        body(priority="9" * 5000),
        422,
        "validation_failed",
        [("priority", "out_of_range")],
    ),
    (
        "metadata 100,000 levels deep",
        "/api/tasks",
        body('{"x":' + nested(DEEP) + "}"),
        422,
        "validation_failed",
        [("(body)", "too_deep")],
    ),
    (
        "metadata 300 levels deep",
        "/api/tasks",
        body(nested(300)),
        422,
        "validation_failed",
        [("metadata" + ".0" * (jsonsafe.MAX_DEPTH - 1), "too_deep")],
    ),
    (
        "NUL in a capability",
        "/api/tasks",
        body(needed_capabilities=r'["a\u0000"]'),
        422,
        "validation_failed",
        [("needed_capabilities.0", "invalid_characters")],
    ),
    (
        "escape sequence in assign_to",
        "/api/tasks",
        body(assign_to=r'"x\u001b[2J"'),
        422,
        "validation_failed",
        [("assign_to", "invalid_characters")],
    ),
    (
        "NUL in depends_on",
        "/api/tasks",
        body(depends_on=r'["task-\u0000"]'),
        422,
        "validation_failed",
        [("depends_on.0", "invalid_characters")],
    ),
    (
        "newline in goal_id",
        "/api/tasks",
        body(goal_id=r'"g\n1"'),
        422,
        "validation_failed",
        [("goal_id", "invalid_characters")],
    ),
    (
        "timeout_ms Infinity",
        "/api/tasks",
        body('{"timeout_ms":Infinity}'),
        422,
        "validation_failed",
        [("metadata.timeout_ms", "not_finite")],
    ),
    (
        "timeout_ms 1e308",
        "/api/tasks",
        body('{"timeout_ms":1e308}'),
        422,
        "validation_failed",
        [("metadata.timeout_ms", "invalid_value")],
    ),
    (
        "timeout_ms over 7 days",
        "/api/tasks",
        body('{"timeout_ms":' + str(SEVEN_DAYS + 1) + "}"),
        422,
        "validation_failed",
        [("metadata.timeout_ms", "invalid_value")],
    ),
    (
        "timeout_ms a string",
        "/api/tasks",
        body('{"timeout_ms":"600000"}'),
        422,
        "validation_failed",
        [("metadata.timeout_ms", "invalid_value")],
    ),
    (
        "timeout_ms zero",
        "/api/tasks",
        body('{"timeout_ms":0}'),
        422,
        "validation_failed",
        [("metadata.timeout_ms", "invalid_value")],
    ),
    (
        "timeout_ms negative",
        "/api/tasks",
        body('{"timeout_ms":-1}'),
        422,
        "validation_failed",
        [("metadata.timeout_ms", "invalid_value")],
    ),
    (
        "timeout_ms true",
        "/api/tasks",
        body('{"timeout_ms":true}'),
        422,
        "validation_failed",
        [("metadata.timeout_ms", "invalid_value")],
    ),
    (
        "complete_by past the year 9999",
        "/api/tasks",
        body(complete_by="9" * 18),
        422,
        "validation_failed",
        [("complete_by", "invalid_value")],
    ),
    (
        "complete_by negative",
        "/api/tasks",
        body(complete_by="-1"),
        422,
        "validation_failed",
        [("complete_by", "invalid_value")],
    ),
    (
        "NaN in the second task of a batch",
        "/api/tasks/batch",
        b'{"tasks":[{"description":"ok"},{"description":"x","metadata":{"v":NaN}}]}',
        422,
        "validation_failed",
        [("tasks.1.metadata.v", "not_finite")],
    ),
    ("a body that is not JSON", "/api/tasks", b'{"description": "x", ', 400, "invalid_json", []),
    ("a lone surrogate in an unterminated string", "/api/tasks", rb'{"description": "\ud800', 400, "invalid_json", []),
]


@module_loop
@pytest.mark.parametrize(("case", "path", "raw", "status", "code", "errors"), HTTP, ids=[c[0] for c in HTTP])
async def test_hostile_bodies_are_refused_naming_the_field(
    shared: HubHandle, case: str, path: str, raw: bytes, status: int, code: str, errors: list[tuple[str, str]]
) -> None:
    """A body with a value the hub could not store, reload or show is a 4xx JSON error naming the field."""
    before = len(shared.hub.queue.tasks)
    r = await shared.http.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    answer = strict_json(r.content)
    assert answer["error"] == code
    assert [(e["field"], e["error"]) for e in answer.get("errors", [])] == errors
    assert len(shared.hub.queue.tasks) == before, "nothing was queued"
    assert (await shared.http.get("/health")).status_code == 200


OK_BODIES: list[tuple[str, dict[str, Any]]] = [
    (
        "NUL and control characters in free text",
        {"description": "a\x00b\x1b[31m\n", "metadata": {"k": "\x00\x7f"}, "success_criteria": ["tab\there"]},
    ),
    ("astral and non-ASCII text", {"description": "😀 ✓ é", "metadata": {"ключ": "漢字"}}),
    ("timeout_ms of exactly 7 days", {"description": "long", "metadata": {"timeout_ms": SEVEN_DAYS}}),
    ("timeout_ms as a float", {"description": "float", "metadata": {"timeout_ms": 1500.5}}),
    (
        "the largest 64-bit integers and floats",
        {
            "description": "big",
            "metadata": {"i": jsonsafe.MAX_INT, "j": -jsonsafe.MAX_INT, "f": 1.7976931348623157e308},
        },
    ),
    (
        "metadata as deep as the body allows",
        {"description": "deep", "metadata": {"x": json.loads(nested(jsonsafe.MAX_DEPTH - 2))}},
    ),
]


@module_loop
@pytest.mark.parametrize(("case", "submitted"), OK_BODIES, ids=[c for c, _ in OK_BODIES])
async def test_awkward_but_safe_values_are_stored_as_sent(
    shared: HubHandle, case: str, submitted: dict[str, Any]
) -> None:
    """Values inside the limits (NUL, astral text, the largest numbers) are accepted and read back unchanged."""
    tid = await shared.submit(**submitted)
    stored = strict_json((await shared.http.get(f"/api/tasks/{tid}")).content)
    assert {k: stored[k] for k in submitted} == submitted


QUERIES: list[tuple[str, str, str]] = [
    ("after_seq past 64 bits", "/api/tasks/$TASK/trajectory?after_seq=99999999999999999999999", "after_seq"),
    ("after_seq of 5,000 digits", "/api/tasks/$TASK/trajectory?after_seq=" + "9" * 5000, "after_seq"),
    ("negative after_seq", "/api/tasks/$TASK/trajectory?after_seq=-1", "after_seq"),
    ("after_seq NaN", "/api/tasks/$TASK/trajectory?after_seq=NaN", "after_seq"),
    ("trajectory limit past 64 bits", "/api/tasks/$TASK/trajectory?limit=99999999999999999999999", "limit"),
    ("list limit past 64 bits", "/api/tasks?limit=99999999999999999999999", "limit"),
    ("list limit 1e400", "/api/tasks?limit=1e400", "limit"),
    ("priority a superscript digit", "/api/tasks?priority=%C2%B2", "priority"),
    ("priority of 5,000 digits", "/api/tasks?priority=" + "9" * 5000, "priority"),
]


@module_loop
@pytest.mark.parametrize(("case", "url", "field"), QUERIES, ids=[c for c, _, _ in QUERIES])
async def test_out_of_range_query_parameters_are_422(shared: HubHandle, case: str, url: str, field: str) -> None:
    """Query numbers outside their range are a 422 naming the parameter, never a 500."""
    tid = await shared.submit(description="has a trajectory")
    r = await shared.http.get(url.replace("$TASK", tid))
    assert r.status_code == 422, r.text
    answer = strict_json(r.content)
    assert answer["error"] == "validation_failed" and [e["field"] for e in answer["errors"]] == [field]


@module_loop
async def test_a_task_whose_frame_would_be_too_large_is_refused_at_submit(shared: HubHandle) -> None:
    """A task whose task_assign frame would pass the agents' frame limit is a 422 too_large, alone or in a batch.

    The body is under the limit; the frame is not, since routing repeats metadata.model in it."""
    big = {"description": "model name as data", "metadata": {"model": "m" * 600_000}}
    before = len(shared.hub.queue.tasks)
    r = await shared.http.post("/api/tasks", json=big)
    assert r.status_code == 422, r.text
    assert [(e["field"], e["error"]) for e in r.json()["errors"]] == [("(body)", "too_large")]
    r = await shared.http.post("/api/tasks/batch", json={"tasks": [big, {"description": "small"}]})
    assert r.status_code == 422, r.text
    assert [(e["field"], e["error"]) for e in r.json()["errors"]] == [("tasks.0", "too_large")]
    assert len(shared.hub.queue.tasks) == before
    tid = await shared.submit(description="a large but fitting task", metadata={"blob": "b" * 700_000})
    assert (await shared.task(tid))["status"] == "queued"


@module_loop
async def test_hub_still_completes_work_after_the_hostile_bodies(shared: HubHandle) -> None:
    """After every hostile body above, the shared hub still hands out and completes a task."""
    await serves_a_task(shared)


# --- agent frames --------------------------------------------------------------------------------------------------

REPORTS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "lone surrogate in a result value",
        r'{"type":"task_complete","task_id":"$T","generation":$G,'
        r'"result":{"status":"success","out":"\ud800"}}',
        [("result.out", "invalid_unicode")],
    ),
    (
        "lone surrogate in a result key",
        r'{"type":"task_complete","task_id":"$T","generation":$G,'
        r'"result":{"\ud800":1}}',
        [("result.\\ud800", "invalid_unicode")],
    ),
    (
        "lone surrogate in the error text",
        r'{"type":"task_failed","task_id":"$T","generation":$G,'
        r'"error":"bad \udfff"}',
        [("error", "invalid_unicode")],
    ),
    (
        "NaN in the verification report",
        '{"type":"task_complete","task_id":"$T","generation":$G,"verification_report":{"status":"pass","score":NaN}}',
        [("verification_report.score", "not_finite")],
    ),
    (
        "Infinity in the verification history",
        '{"type":"task_complete","task_id":"$T","generation":$G,"verification_history":[{"ms":Infinity}]}',
        [("verification_history.0.ms", "not_finite")],
    ),
    (
        "1e400 in a failure result",
        '{"type":"task_failed","task_id":"$T","generation":$G,"result":{"x":1e400}}',
        [("result.x", "not_finite")],
    ),
    (
        "5,000-digit integer in a result",
        '{"type":"task_complete","task_id":"$T","generation":$G,"result":{"n":' + "9" * 5000 + "}}",
        [("result.n", "out_of_range")],
    ),
    (
        "result 100,000 levels deep",
        '{"type":"task_complete","task_id":"$T","generation":$G,"result":{"x":' + nested(DEEP) + "}}",
        [("(body)", "too_deep")],
    ),
    (
        "tokens_used past 64 bits",
        '{"type":"task_complete","task_id":"$T","generation":$G,"tokens_used":' + "9" * 30 + "}",
        [("tokens_used", "invalid_value")],
    ),
    (
        "lone surrogate in an execution event",
        r'{"type":"task_progress","task_id":"$T","generation":$G,'
        r'"execution_event":{"event_type":"tool_call","text":"\ud83d"}}',
        [("execution_event.text", "invalid_unicode")],
    ),
    (
        "NaN in an execution event",
        '{"type":"task_progress","task_id":"$T","generation":$G,"execution_event":{"event_type":"tokens","n":NaN}}',
        [("execution_event.n", "not_finite")],
    ),
    (
        "generation past 64 bits",
        '{"type":"task_accepted","task_id":"$T","generation":' + "9" * 40 + "}",
        [("generation", "invalid_value")],
    ),
    (
        "NaN cpu_percent",
        '{"type":"resource_report","cpu_percent":NaN}',
        [("cpu_percent", "invalid_value"), ("cpu_percent", "wrong_type")],
    ),
]


async def test_hostile_reports_are_refused_and_never_reach_the_task(make_hub) -> None:
    """Hostile reports about a held task are each a validation_failed error naming the field and counted as a
    violation; the task stays as it was, and a clean report afterwards completes it."""
    handle = await make_hub(violation_limit=100)
    sim = AgentSim(handle.ws_url, "holder", await handle.mint_token("holder"), behaviour="ignore")
    await sim.connect()
    try:
        tid = await handle.submit(description="hold me", assign_to="holder")
        assign = await sim.wait_for(lambda m: m.get("type") == "task_assign")
        gen = assign["generation"]
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
        await sim.wait_for(lambda m: m.get("type") == "task_ack")
        for case, frame, errors in REPORTS:
            before, seen = handle.hub.violations.n_violations, len(sim.errors)
            await sim.send_raw(frame.replace("$T", tid).replace("$G", str(gen)))
            reply = await sim.wait_for(lambda m, n=seen: m.get("type") == "error" and m in sim.errors[n:])
            assert reply["error"] == "validation_failed", case
            assert [(e["field"], e["error"]) for e in reply["errors"]] == errors, case
            assert handle.hub.violations.n_violations == before + 1, case
        task = await handle.task(tid)
        assert (task["status"], task["result"], task["verification_report"]) == ("working", None, None)
        r = await handle.http.get(f"/api/tasks/{tid}/trajectory")
        assert r.status_code == 200 and r.json()["count"] == 0
        await sim.send(
            {
                "type": "task_complete",
                "task_id": tid,
                "generation": gen,
                "result": {"status": "success", "output": "nul \x00 kept", "pi": 3.14},
            }
        )
        await wait_tasks(handle, [tid], {"completed"})
        assert strict_json((await handle.http.get(f"/api/tasks/{tid}")).content)["result"]["output"] == "nul \x00 kept"
    finally:
        await sim.close()
    await serves_a_task(handle)


async def test_hostile_identify_is_refused_and_a_clean_one_then_works(hub) -> None:
    """Before identify, hostile identifiers or pm2_info are validation_failed violations; the socket stays usable."""
    token = await hub.mint_token("ident")
    sim = AgentSim(hub.ws_url, "ident", token)
    await sim.connect(identify=False)
    try:
        frames = [
            ('{"type":"identify","agent_id":"ident\\u0000","token":"' + token + '"}', "agent_id", "invalid_characters"),
            (r'{"type":"identify","agent_id":"id\ud800","token":"' + token + '"}', "agent_id", "invalid_unicode"),
            (
                '{"type":"identify","agent_id":"ident","token":"' + token + '","pm2_info":{"mem":1e400}}',
                "pm2_info.mem",
                "not_finite",
            ),
            (
                '{"type":"identify","agent_id":"ident","token":"' + token + '","name":"x\\u001b]0;pwn\\u0007"}',
                "name",
                "invalid_characters",
            ),
        ]
        for frame, field, code in frames:
            before, seen = hub.hub.violations.n_violations, len(sim.errors)
            await sim.send_raw(frame)
            reply = await sim.wait_for(lambda m, n=seen: m.get("type") == "error" and m in sim.errors[n:])
            assert [(e["field"], e["error"]) for e in reply["errors"]] == [(field, code)]
            assert hub.hub.violations.n_violations == before + 1
        assert hub.hub.agents.get("ident") is None
        await sim.send({"type": "identify", "agent_id": "ident", "token": token})
        await asyncio.wait_for(sim.identified.wait(), 10 * SCALE)
    finally:
        await sim.close()


async def test_resources_are_shown_finite_even_if_a_bad_value_slipped_in(hub, make_agent) -> None:
    """A NaN resource report is refused; a non-finite value already in an agent's resources never reaches the
    API, the dashboard state or the dashboard snapshot (all of which a browser must be able to parse)."""
    sim = await make_agent()
    await sim.send({"type": "resource_report", "cpu_percent": 12.5, "ram_used_bytes": 100})
    await sim.send_raw('{"type":"resource_report","cpu_percent":NaN}')
    await sim.wait_for(lambda m: m.get("type") == "error")
    await sim.send({"type": "ping"})
    await sim.wait_for(lambda m: m.get("type") == "pong")
    agent = hub.hub.agents.get(sim.agent_id)
    assert agent is not None and agent.resources["cpu_percent"] == 12.5
    agent.resources.update(cpu_percent=math.nan, vram_used_bytes=math.inf, ram_total_bytes=-1.0)  # slipped in
    shown = strict_json((await hub.http.get(f"/api/agents/{sim.agent_id}")).content)["resources"]
    assert shown == {"ram_used_bytes": 100, "reported_at": agent.resources["reported_at"]}
    viewer = await hub.mint_token("screen", role="viewer")
    r = await hub.http.get("/api/dashboard/state", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200
    strict_json(r.content)
    async with websockets.connect(hub.ws_url + f"/dashboard?token={viewer}") as ws:
        async with asyncio.timeout(10 * SCALE):
            while (msg := strict_json(await ws.recv()))["type"] != "snapshot":
                pass
    assert msg["type"] == "snapshot"


def test_finite_resources_keeps_only_finite_non_negative_numbers() -> None:
    """finite_resources drops NaN, infinities and negative numbers and keeps everything else."""
    report = {
        "cpu_percent": math.nan,
        "ram_used_bytes": 5,
        "vram_used_bytes": math.inf,
        "x": -1,
        "ok": 0.5,
        "reported_at": 1,
        "note": "s",
        "none": None,
        "flag": True,
    }
    assert finite_resources(report) == {
        "ram_used_bytes": 5,
        "ok": 0.5,
        "reported_at": 1,
        "note": "s",
        "none": None,
        "flag": True,
    }
    assert Agent("a", 0, resources={"cpu_percent": math.nan}).view()["resources"] == {}
