"""Safe JSON: the checker, the strict parser and the pydantic field type name what breaks a limit, and where."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from shared import jsonsafe as J
from shared import protocol as P

DEEP = 100_000

FINE: list[tuple[str, Any]] = [
    ("scalars", {"s": "text", "i": 1, "f": 1.5, "b": True, "n": None}),
    ("NUL and control characters in values", {"s": "a\x00b\x01\n\t"}),
    ("non-ASCII and astral text", {"s": "é 漢字 😀", "ключ": "значение"}),
    ("the 64-bit integer bounds", {"max": J.MAX_INT, "min": -J.MAX_INT}),
    ("the largest finite float", {"f": 1.7976931348623157e308}),
    ("64 levels", json.loads("[" * J.MAX_DEPTH + "]" * J.MAX_DEPTH)),
    ("as many keys as allowed", {str(i): i for i in range(J.MAX_KEYS)}),
    ("a key of the longest length", {"k" * J.MAX_KEY_CHARS: 1}),
    ("empty containers", {"a": {}, "b": [], "c": [[], {}]}),
    (
        "long uniform arrays",
        {
            "i": list(range(1000)),
            "f": [1.5] * 100,
            "s": ["é", "漢"] * 100,
            "n": [None] * 9,
            "e": [{}] * 50,
            "b": [True] * 5,
        },
    ),
    ("floats whose sum overflows", {"f": [1e308] * 10}),
    ("a top-level scalar", "plain"),
]


@pytest.mark.parametrize(("case", "value"), FINE, ids=[c for c, _ in FINE])
def test_safe_values_pass(case: str, value: Any) -> None:
    """Values inside every limit pass the check unchanged."""
    J.check(value)


def nest(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


UNSAFE: list[tuple[str, Any, str, str]] = [
    ("lone surrogate in a value", {"a": {"b": "x\ud800"}}, "invalid_unicode", "a.b"),
    ("lone surrogate in a key", {"a": {"k\udc00": 1}}, "invalid_unicode", "a.k\\udc00"),
    ("NaN", {"a": [1, float("nan")]}, "not_finite", "a.1"),
    ("Infinity", {"x": float("inf")}, "not_finite", "x"),
    ("-Infinity", {"x": {"y": float("-inf")}}, "not_finite", "x.y"),
    ("an integer past 64 bits", {"n": 2**63}, "out_of_range", "n"),
    ("a negative integer past 64 bits", {"n": [-(2**63)]}, "out_of_range", "n.0"),
    ("a 5,000-digit integer", {"n": int("9" * 4000) * 10**1000}, "out_of_range", "n"),
    ("one level too deep", {"a": nest(J.MAX_DEPTH)}, "too_deep", "a" + ".0" * (J.MAX_DEPTH - 1)),
    ("too many keys", {"a": {str(i): i for i in range(J.MAX_KEYS + 1)}}, "too_large", "a"),
    ("a key too long", {"a": {"k" * (J.MAX_KEY_CHARS + 1): 1}}, "too_large", "a.k" + "k" * 63),
    ("a long integer array with one past 64 bits", {"a": [1] * 1000 + [2**63]}, "out_of_range", "a.1000"),
    ("a float array with one NaN", {"a": [1.5] * 100 + [float("nan")]}, "not_finite", "a.100"),
    ("a string array with one lone surrogate", {"a": ["é"] * 50 + ["\ud800"]}, "invalid_unicode", "a.50"),
    ("empty objects one level too deep", {"a": nest(J.MAX_DEPTH - 1, {})}, "too_deep", "a" + ".0" * (J.MAX_DEPTH - 1)),
    ("a lone surrogate at the top", "\ud800", "invalid_unicode", ""),
    ("NaN at the top", float("nan"), "not_finite", ""),
]


@pytest.mark.parametrize(("case", "value", "code", "where"), UNSAFE, ids=[c for c, *_ in UNSAFE])
def test_unsafe_values_are_named(case: str, value: Any, code: str, where: str) -> None:
    """Each broken limit raises UnsafeJson with its code and the path to the value (keys escaped, clipped)."""
    with pytest.raises(J.UnsafeJson) as info:
        J.check(value)
    assert (info.value.code, info.value.where) == (code, where)
    assert info.value.as_error("metadata")["field"] == ".".join(p for p in ("metadata", where) if p)
    json.dumps(info.value.as_error(), allow_nan=False).encode("utf-8")  # the error itself can always be sent


TEXTS: list[tuple[str, str | bytes, str, str]] = [
    ("lone surrogate escape in a value", r'{"a": {"b": "\ud800"}}', "invalid_unicode", "a.b"),
    ("lone low surrogate escape in a key", r'{"\udc00x": 1}', "invalid_unicode", "\\udc00x"),
    ("NaN literal", '{"a": [NaN]}', "not_finite", "a.0"),
    ("Infinity literal", '{"a": Infinity}', "not_finite", "a"),
    ("-Infinity literal", '{"a": -Infinity}', "not_finite", "a"),
    ("1e400", '{"a": {"b": 1e400}}', "not_finite", "a.b"),
    ("a 5,000-digit integer", '{"n": ' + "9" * 5000 + "}", "out_of_range", "n"),
    ("a 30-digit integer", '{"n": ' + "9" * 30 + "}", "out_of_range", "n"),
    (
        "300 levels (past the parser's own limit)",
        '{"a": ' + "[" * 300 + "]" * 300 + "}",
        "too_deep",
        "a" + ".0" * (J.MAX_DEPTH - 1),
    ),
    ("100,000 levels", '{"a": ' + "[" * DEEP + "]" * DEEP + "}", "too_deep", ""),
    ("100,000 levels of objects", '{"a":' * DEEP + "1" + "}" * DEEP, "too_deep", ""),
]


@pytest.mark.parametrize(("case", "text", "code", "where"), TEXTS, ids=[c for c, *_ in TEXTS])
def test_loads_names_what_breaks_a_limit(case: str, text: str, code: str, where: str) -> None:
    """loads refuses JSON text outside the limits with UnsafeJson naming the path, for text and bytes alike."""
    for form in (text, text.encode()):
        with pytest.raises(J.UnsafeJson) as info:
            J.loads(form)
        assert (info.value.code, info.value.where) == (code, where)


@pytest.mark.parametrize(
    "text", ["{nope", "", b"\xff\xfe{}", '{"a": 1,}', '{"a": "x\x01"}', '{"a": 1} 2', '"\\ud800'], ids=repr
)
def test_loads_refuses_what_is_not_json_with_a_value_error(text: str | bytes) -> None:
    """Text that is not JSON at all is a ValueError that is not UnsafeJson (an invalid_json answer)."""
    with pytest.raises(ValueError) as info:
        J.loads(text)
    assert not isinstance(info.value, J.UnsafeJson)


def test_loads_returns_safe_values_as_parsed() -> None:
    """A safe document comes back as the standard parser reads it (NUL, astral characters, big floats)."""
    text = '{"a": "x\\u0000y", "b": "\\ud83d\\ude00", "c": [1.5e308, -9223372036854775807], "d": {"": null}}'
    assert J.loads(text) == json.loads(text)


class Holder(BaseModel):
    data: J.SafeJson
    items: list[J.SafeJson] = []


def test_safe_json_field_errors_carry_the_inner_path() -> None:
    """A SafeJson field refuses unsafe content with the limit's code, and field_errors names the inner path."""
    with pytest.raises(ValidationError) as info:
        Holder.model_validate({"data": {"x": [1, {"y": float("inf")}]}, "items": [{}, {"z": 2**64}]})
    errors = P.field_errors(info.value)
    assert [(e["field"], e["error"]) for e in errors] == [("data.x.1.y", "not_finite"), ("items.1.z", "out_of_range")]


def test_printable_escapes_what_utf8_cannot_carry() -> None:
    """printable cuts long text and escapes lone surrogates, leaving other text as it is."""
    assert J.printable("a\ud800b") == "a\\ud800b"
    assert J.printable("é" * 300, 5) == "ééééé"
    assert J.printable("plain") == "plain"


FRAMES: list[tuple[str, str, str | None, list[tuple[str, str]]]] = [
    (
        "lone surrogate in a result value",
        r'{"type":"task_complete","task_id":"t","generation":1,'
        r'"result":{"a":"\ud800"}}',
        None,
        [("result.a", "invalid_unicode")],
    ),
    (
        "lone surrogate in an event key",
        r'{"type":"task_progress","task_id":"t","execution_event":{"\udfff":1}}',
        None,
        [("execution_event.\\udfff", "invalid_unicode")],
    ),
    (
        "lone surrogate in task_id",
        r'{"type":"task_accepted","task_id":"\ud800"}',
        None,
        [("task_id", "invalid_unicode")],
    ),
    ("lone surrogate as the type", r'{"type":"\ud800"}', None, [("type", "invalid_unicode")]),
    (
        "NaN in a verification report",
        '{"type":"task_complete","task_id":"t","generation":1,"verification_report":{"score":NaN}}',
        "task_complete",
        [("verification_report.score", "not_finite")],
    ),
    (
        "Infinity in the verification history",
        '{"type":"task_complete","task_id":"t","generation":1,"verification_history":[{},{"t":Infinity}]}',
        "task_complete",
        [("verification_history.1.t", "not_finite")],
    ),
    (
        "1e400 in pm2_info",
        '{"type":"identify","agent_id":"a","token":"t","pm2_info":{"mem":1e400}}',
        "identify",
        [("pm2_info.mem", "not_finite")],
    ),
    (
        "5,000-digit integer in a result",
        '{"type":"task_complete","task_id":"t","generation":1,"result":{"n":' + "9" * 5000 + "}}",
        None,
        [("result.n", "out_of_range")],
    ),
    (
        "100,000 levels in an event",
        '{"type":"task_progress","task_id":"t","execution_event":{"a":' + "[" * DEEP + "]" * DEEP + "}}",
        None,
        [("(body)", "too_deep")],
    ),
    (
        "generation past 64 bits",
        '{"type":"task_complete","task_id":"t","generation":' + "9" * 30 + "}",
        "task_complete",
        [("generation", "invalid_value")],
    ),
    (
        "negative tokens_used",
        '{"type":"task_complete","task_id":"t","generation":1,"tokens_used":-1}',
        "task_complete",
        [("tokens_used", "invalid_value")],
    ),
    (
        "NaN progress",
        '{"type":"task_progress","task_id":"t","progress":NaN}',
        "task_progress",
        [("progress", "wrong_type")],
    ),
    (
        "a timestamp past the year 9999",
        '{"type":"resource_report","timestamp":' + "9" * 18 + "}",
        "resource_report",
        [("timestamp", "invalid_value")],
    ),
    (
        "negative memory",
        '{"type":"resource_report","ram_used_bytes":-5}',
        "resource_report",
        [("ram_used_bytes", "invalid_value")],
    ),
    (
        "NUL in agent_id",
        '{"type":"identify","agent_id":"a\\u0000b","token":"t"}',
        "identify",
        [("agent_id", "invalid_characters")],
    ),
    (
        "a control character in a capability",
        '{"type":"identify","agent_id":"a","token":"t","capabilities":["ok","x\\u001b[31m"]}',
        "identify",
        [("capabilities.1", "invalid_characters")],
    ),
    (
        "NUL in task_id",
        '{"type":"task_accepted","task_id":"t\\u0000"}',
        "task_accepted",
        [("task_id", "invalid_characters")],
    ),
]


@pytest.mark.parametrize(("case", "frame", "message_type", "errors"), FRAMES, ids=[c for c, *_ in FRAMES])
def test_hostile_frames_fail_validation_naming_the_field(
    case: str, frame: str, message_type: str | None, errors: list[tuple[str, str]]
) -> None:
    """decode_sidecar answers hostile values with validation_failed naming the field; the reply always encodes."""
    with pytest.raises(P.FrameError) as info:
        P.decode_sidecar(frame)
    reply = info.value.reply
    assert (reply.error, reply.message_type) == ("validation_failed", message_type)
    assert [(e["field"], e["error"]) for e in reply.errors or []] == errors
    json.loads(P.encode(reply).encode("utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in the reply"))


def test_nan_cpu_percent_is_refused() -> None:
    """cpu_percent must be a finite, non-negative number: NaN and Infinity fail on that field."""
    for value in ("NaN", "Infinity", "-1", "1e400"):
        with pytest.raises(P.FrameError) as info:
            P.decode_sidecar('{"type":"resource_report","cpu_percent":' + value + "}")
        fields = {e["field"].split(".")[0] for e in info.value.reply.errors or []}
        assert info.value.reply.error == "validation_failed" and fields == {"cpu_percent"}, value


def test_nul_in_free_text_and_free_form_values_is_kept() -> None:
    """NUL and control characters stay in free text and free-form values: they are stored escaped."""
    msg = P.decode_sidecar(
        '{"type":"task_failed","task_id":"t","generation":1,"error":"bad\\u0000\\n","result":{"output":"a\\u0000b"}}'
    )
    assert isinstance(msg, P.TaskFailed) and msg.error == "bad\x00\n"
    assert msg.result is not None and msg.result.output == "a\x00b"
