"""Free-form JSON and numbers in HTTP bodies and queries: hostile values are refused with a precise error naming the
field, awkward but safe ones are stored as sent, and the hub keeps serving.

The tables run against one hub shared by the module (every hostile body lands on the same hub, which must keep
serving).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import jsonsafe
from shared.protocol import MAX_TASK_TIMEOUT_MS
from tests.conftest import HubHandle
from tests.hub.hostile_json_hub import (  # noqa: F401 (fixture "shared")
    DEEP,
    module_loop,
    nested,
    serves_a_task,
    shared_hub,
    strict_json,
)


def body(meta: str = "{}", **fields: str) -> bytes:
    """A raw submission: ``metadata`` and extra fields spliced in as JSON text, unparsed."""
    extra = "".join(f',"{k}":{v}' for k, v in fields.items())
    return ('{"description":"hostile","metadata":' + meta + extra + "}").encode()


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
