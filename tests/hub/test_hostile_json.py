"""Free-form JSON and numbers at the edge: hostile values are refused with a precise error or stored safely, and no
stored value can stop the hub, its sweeps or its start.

The HTTP table runs against one hub shared by the module (every hostile body lands on the same hub, which must
keep serving); the agent, restart and database tests get their own hubs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets

from hub.agents import Agent, finite_resources
from hub.clock import ManualClock
from hub.server import HubServer
from hub.settings import HubSettings
from hub.store.sqlite import UPSERT_TASK
from hub.sweeps import due_reclaims
from hub.task_shape import CorruptTask
from hub.tasks import EndReason, Task, TaskStatus
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


# --- stored values: sweeps, start, quarantine ---------------------------------------------------------------------


def task_row(task_id: str, now: int, **fields: Any) -> Task:
    task = Task(
        id=task_id,
        description=f"stored {task_id}",
        created_at=now,
        updated_at=now,
        generation=1,
        status=TaskStatus.WORKING,
        assigned_at=now,
        accepted_at=now,
    )
    for name, value in fields.items():
        setattr(task, name, value)
    return task


@contextmanager
def database(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """The database of a stopped hub, committed and closed after the block."""
    db = sqlite3.connect(data_dir / "agentcom.db")
    try:
        with db:
            yield db
    finally:
        db.close()


def write_rows(data_dir: Path, rows: list[tuple[Any, ...]]) -> None:
    """Insert raw task rows into a stopped hub's database."""
    with database(data_dir) as db:
        db.executemany(UPSERT_TASK, rows)


def row_of(task: Task, body: str | None = None) -> tuple[Any, ...]:
    return (
        task.id,
        str(task.status),
        task.priority,
        task.created_at,
        task.updated_at,
        task.assigned_to,
        task.goal_id,
        body if body is not None else task.to_json(),
    )


UNUSABLE_TIMEOUTS: list[Any] = [math.inf, -math.inf, math.nan, 1e308, 10**30, "soon", -5, 0, True, [1], {"ms": 1}]


@pytest.mark.parametrize("value", UNUSABLE_TIMEOUTS, ids=repr)
def test_due_reclaims_treats_an_unusable_timeout_as_absent(value: Any) -> None:
    """due_reclaims never raises on a stored timeout_ms: a non-number or non-finite one counts as absent, a
    finite one past 7 days as 7 days."""
    settings = HubSettings()
    now = 1_700_000_000_000
    task = task_row("task-x", now, assigned_to="a", metadata={"timeout_ms": value})
    agent = Agent("a", now)
    quiet_s = settings.stuck_working_after_s + 1
    due = due_reclaims([task], {"a": agent}, {}, now, now + int(quiet_s * 1000), settings)
    finite_positive = (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (value > 0)
    )
    assert [r.reason for r in due] == ([] if finite_positive else [EndReason.STUCK])
    later = now + MAX_TASK_TIMEOUT_MS + int((settings.stuck_after_timeout_grace_s + 1) * 1000)
    assert [r.reason for r in due_reclaims([task], {"a": agent}, {}, now, later, settings)] == [EndReason.STUCK]


async def test_stored_unusable_timeouts_never_stop_the_sweeps(tmp_path: Path) -> None:
    """Tasks stored with timeout_ms Infinity, NaN, 1e308, 10**30, a string or -5 are loaded and swept every
    interval without an error: the sweep still reclaims a lost agent's task, and the hub keeps serving."""
    data_dir = tmp_path / "hub"
    async with running(data_dir) as first:
        token = await first.mint_token("agent-x")
    clock = ManualClock()
    now = clock.now_ms()
    values = [math.inf, math.nan, 1e308, 10**30, "soon", -5]
    held = [
        task_row(f"task-held-{n}", now, assigned_to="agent-x", metadata={"timeout_ms": v}) for n, v in enumerate(values)
    ]
    lost = task_row("task-lost", now, assigned_to="agent-gone", max_retries=5)
    write_rows(data_dir, [row_of(t) for t in [*held, lost]])
    assert "Infinity" in held[0].to_json() and "NaN" in held[1].to_json()
    async with running(data_dir, clock, sweep_interval_s=0.01, restart_grace_s=30) as second:
        assert second.hub.queue.n_quarantined == 0 and len(second.hub.queue.in_flight()) == len(values) + 1
        sim = AgentSim(second.ws_url, "agent-x", token, behaviour="ignore")
        await sim.connect()
        try:
            await sim.send({"type": "state_report", "task_id": "task-held-2", "generation": 1, "status": "working"})
            ack = await sim.wait_for(lambda m: m.get("type") == "state_report_ack")
            assert ack["action"] == "continue"
            agent = second.hub.agents.get("agent-x")
            assert agent is not None and agent.awaiting_report_since is None  # sweeps now read every timeout_ms
            with second.hub.bus.subscribe() as events:
                clock.advance(31)
                async with asyncio.timeout(10 * SCALE):
                    while not (
                        (e := await events.get()).get("task_id") == "task-lost" and e.get("event") == "task_retried"
                    ):
                        pass
            assert all(second.hub.queue.tasks[t.id].status is TaskStatus.WORKING for t in held)
            assert second.hub.failed is None
            assert (await second.http.get("/health")).status_code == 200
            stored = strict_json((await second.http.get("/api/tasks/task-held-0")).content)
            assert stored["metadata"] == {"timeout_ms": None}, "Infinity is read back as null"
        finally:
            await sim.close()


GARBAGE: list[tuple[str, bytes | str]] = [
    ("task-garbage", "{not json"),
    ("task-array", "[1, 2]"),
    (
        "task-wrong-type",
        json.dumps(
            {
                "id": "task-wrong-type",
                "description": "d",
                "created_at": 1,
                "updated_at": 1,
                "status": "queued",
                "priority": "high",
            }
        ),
    ),
    (
        "task-unknown-status",
        json.dumps(
            {"id": "task-unknown-status", "description": "d", "created_at": 1, "updated_at": 1, "status": "exploded"}
        ),
    ),
    (
        "task-priority",
        json.dumps(
            {
                "id": "task-priority",
                "description": "d",
                "created_at": 1,
                "updated_at": 1,
                "status": "queued",
                "priority": 9,
            }
        ),
    ),
    ("task-missing", json.dumps({"id": "task-missing", "description": "d", "status": "queued"})),
    (
        "task-huge-int",
        json.dumps(
            {"id": "task-huge-int", "description": "d", "created_at": 10**30, "updated_at": 1, "status": "queued"}
        ),
    ),
    (
        "task-bad-deps",
        json.dumps(
            {
                "id": "task-bad-deps",
                "description": "d",
                "created_at": 1,
                "updated_at": 1,
                "status": "queued",
                "depends_on": [1, {"x": 2}],
            }
        ),
    ),
    (
        "task-other-id",
        json.dumps(
            {"id": "task-someone-else", "description": "d", "created_at": 1, "updated_at": 1, "status": "queued"}
        ),
    ),
    (
        "task-bad-utf8",
        b'{"id": "task-bad-utf8", "description": "\xff\xfe", "created_at": 1, "updated_at": 1, "status": "queued"}',
    ),
    (
        "task-deep",
        '{"id": "task-deep", "description": "d", "created_at": 1, "updated_at": 1, "status": "queued", '
        '"metadata": {"x": ' + nested(DEEP) + "}}",
    ),
]


async def test_unreadable_rows_are_quarantined_and_the_rest_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows that cannot be read back are skipped at start, left untouched on disk, counted in /health and named in
    one warning each; the other tasks are intact and the hub serves."""
    data_dir = tmp_path / "hub"
    async with running(data_dir) as first:
        good = {await first.submit(description=f"good {n}", metadata={"n": n}): n for n in range(3)}
    with database(data_dir) as db:
        db.executemany(
            "INSERT INTO tasks (id, status, priority, created_at, updated_at, body) VALUES (?, 'queued', 2, 1, 1,"
            " CAST(? AS TEXT))",
            GARBAGE,
        )
        db.execute(
            "INSERT INTO trajectory (task_id, seq, ts, kind, payload) VALUES (?, 1, 1, 'x', ?)",
            (next(iter(good)), '{"text": "\\ud800", "n": NaN}'),
        )
        on_disk = db.execute("SELECT id, CAST(body AS BLOB) FROM tasks ORDER BY id").fetchall()
    caplog.set_level(logging.WARNING, logger="hub.queue")
    async with running(data_dir) as second:
        health = strict_json((await second.http.get("/health")).content)
        assert health["tasks"]["quarantined"] == len(GARBAGE) == second.hub.queue.n_quarantined
        for tid, n in good.items():
            task = strict_json((await second.http.get(f"/api/tasks/{tid}")).content)
            assert (task["description"], task["metadata"], task["status"]) == (f"good {n}", {"n": n}, "queued")
        for bad_id, _ in GARBAGE:
            assert (await second.http.get(f"/api/tasks/{bad_id}")).status_code == 404
        r = await second.http.get(f"/api/tasks/{next(iter(good))}/trajectory")
        assert r.status_code == 200 and strict_json(r.content)["events"][0]["event"]["event_type"] == "unreadable"
        await serves_a_task(second)
    warnings = [r.getMessage() for r in caplog.records if r.name == "hub.queue" and r.levelno == logging.WARNING]
    for bad_id, _ in GARBAGE:
        assert sum(f"'{bad_id}'" in w for w in warnings) == 1, bad_id
    with database(data_dir) as db:
        after = dict(db.execute("SELECT id, CAST(body AS BLOB) FROM tasks").fetchall())
    assert all(after[row_id] == row_body for row_id, row_body in on_disk if row_id in dict(GARBAGE))


CORRUPT: list[tuple[str, str]] = [
    ("not JSON", "{"),
    ("not an object", "[]"),
    ("status unknown", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"lost"}'),
    ("status missing", '{"id":"t","description":"d","created_at":1,"updated_at":1}'),
    ("priority a bool", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","priority":true}'),
    ("priority negative", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","priority":-1}'),
    ("metadata a list", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","metadata":[]}'),
    ("metadata null", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","metadata":null}'),
    ("created_at a float", '{"id":"t","description":"d","created_at":1.5,"updated_at":1,"status":"queued"}'),
    ("created_at NaN", '{"id":"t","description":"d","created_at":NaN,"updated_at":1,"status":"queued"}'),
    (
        "generation past 64 bits",
        '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","generation":' + "9" * 25 + "}",
    ),
    (
        "history of strings",
        '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","history":["x"]}',
    ),
    ("lone surrogate", r'{"id":"t\ud800","description":"d","created_at":1,"updated_at":1,"status":"queued"}'),
]


@pytest.mark.parametrize(("case", "text"), CORRUPT, ids=[c for c, _ in CORRUPT])
def test_task_from_json_refuses_corrupt_bodies(case: str, text: str) -> None:
    """Task.from_json raises CorruptTask (never anything else) for a body that is not a usable task."""
    with pytest.raises(CorruptTask):
        Task.from_json(text)
    with pytest.raises(CorruptTask):
        Task.from_json(text.encode())


def test_task_from_json_reads_non_finite_numbers_as_null() -> None:
    """NaN and Infinity stored by earlier versions in free-form fields are read back as null."""
    task = Task.from_json(
        '{"id":"t","description":"NaN Infinity","created_at":1,"updated_at":1,"status":"queued",'
        '"metadata":{"a":NaN,"b":[Infinity,1.5],"c":"NaN"}}'
    )
    assert task.metadata == {"a": None, "b": [None, 1.5], "c": "NaN"} and task.description == "NaN Infinity"


async def test_hostile_strings_survive_a_restart_unchanged(tmp_path: Path) -> None:
    """NUL, escape sequences and astral characters are stored escaped and read back the same after a restart."""
    data_dir = tmp_path / "hub"
    sent = {"description": "nul\x00 esc\x1b[1m 😀", "metadata": {"k\x00": "v\x00\x01", "deep": [[{"x": "\x7f"}]]}}
    async with running(data_dir) as first:
        tid = await first.submit(**sent)
    async with running(data_dir) as second:
        assert second.hub.queue.n_quarantined == 0
        task = strict_json((await second.http.get(f"/api/tasks/{tid}")).content)
        assert {k: task[k] for k in sent} == sent
