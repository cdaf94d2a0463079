"""Hypothesis strategies for hostile JSON, and valid-shaped bodies and frames built from the pydantic models.

A drawn value is plain Python data plus two markers: :class:`Raw` (JSON text written verbatim, for what Python's
``json`` cannot write: ``1e400``, 5,000-digit integers, 100k-deep nesting) and :class:`Slot` (filled in when the
frame is sent: the task id and generation the hub just assigned). :func:`dumps` writes both.
"""

from __future__ import annotations

import json
import math
import types
import typing
from typing import Any, Literal, Union

import annotated_types
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo


class Raw(str):
    """JSON text written as it is."""


class Slot(str):
    """Replaced, when written, by the value of that name in the context (``task_id``, ``generation``...)."""


def dumps(value: Any, ctx: dict[str, Any] | None = None) -> str:
    """JSON text of ``value``: lone surrogates and NUL as escapes, non-finite floats as NaN/Infinity tokens."""
    if isinstance(value, Slot):
        return dumps((ctx or {}).get(str(value)), ctx)
    if isinstance(value, Raw):
        return str(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return ("Infinity" if value > 0 else "-Infinity") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # ensure_ascii: "\ud800", "\u0000"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v, ctx) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v, ctx)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__}")


NASTY_STRINGS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\ud83dy",
    "\ufeff",
    "\u202e",
    "\uffff",
    "\U0010ffff",
    "<img src=x onerror=window.__pwned=1>",
    '"><svg onload=alert(1)>',
    "</script>",
    "javascript:alert(1)",
    "'; DROP TABLE tasks; --",
    "../../../../etc/passwd",
    "%s%n%x",
    "${jndi:ldap://x/a}",
    "{{7*7}}",
    "\r\nX-Injected: 1",
    "NaN",
    "Infinity",
    "-1",
    "0",
    "1e400",
    "null",
    "true",
    "[]",
    "{}",
    "task-",
    "task-0000000000000000",
    "urgent",
    "queued",
    "__proto__",
    "constructor",
    "token",
    "api_key",
    "timeout_ms",
)
NUMBER_TOKENS = ("1e400", "-1e400", "1e-400", "-0", "0.0", "1E+308", "NaN", "Infinity", "-Infinity", "-0.0e0")


def rarely(unusual: st.SearchStrategy[Any], usual: st.SearchStrategy[Any], one_in: int = 8) -> st.SearchStrategy[Any]:
    """``unusual`` about once in ``one_in`` draws, else ``usual`` (shrinks towards ``usual``)."""
    return st.integers(0, one_in - 1).flatmap(lambda i: unusual if i == one_in - 1 else usual)


lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = rarely(
    st.integers(0, 300_000).map(lambda n: "x" * n),  # huge, still under the body cap
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(NASTY_STRINGS),
        st.text(st.one_of(st.characters(), lone_surrogates, st.sampled_from("\x00<>\"'&\\")), max_size=20),
    ),
)
numbers = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and +-Infinity included
    st.sampled_from(NUMBER_TOKENS).map(Raw),
    st.integers(20, 6000).map(lambda n: Raw("9" * n)),  # past SQLite's 64-bit and Python's str-digit limit
)
depths = st.one_of(st.sampled_from([900, 1_000, 3_000, 10_000, 100_000]), st.integers(1, 150_000))
deep = st.tuples(depths, st.booleans()).map(
    lambda t: Raw("[" * t[0] + "]" * t[0]) if t[1] else Raw('{"a":' * t[0] + "1" + "}" * t[0])
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
keys = st.one_of(st.text(max_size=12), st.sampled_from(NASTY_STRINGS), lone_surrogates)
json_values = rarely(
    deep,
    st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
    ),
)
json_objects = rarely(deep.map(lambda d: Raw('{"k":' + d + "}")), st.dictionaries(keys, json_values, max_size=5))


def _constraints(metadata: typing.Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, FieldInfo):
            out.update(_constraints(m.metadata))
        elif isinstance(m, annotated_types.MinLen):
            out["min_length"] = m.min_length
        elif isinstance(m, annotated_types.MaxLen):
            out["max_length"] = m.max_length
        elif isinstance(m, annotated_types.Ge | annotated_types.Gt | annotated_types.Le | annotated_types.Lt):
            for name in ("ge", "gt", "le", "lt"):
                if hasattr(m, name):
                    out[name] = getattr(m, name)
        elif hasattr(m, "pattern") and m.pattern:
            out["pattern"] = m.pattern
    return out


def plausible(annotation: Any, metadata: typing.Iterable[Any] = ()) -> st.SearchStrategy[Any]:
    """Values of the annotated type within its constraints (what a careless but well-meaning client sends)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return plausible(args[0], [*metadata, *args[1:]])
    c = _constraints(metadata)
    if annotation is typing.Any:
        return json_values
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, types.UnionType):
        return st.one_of(*(plausible(a, metadata) for a in args))
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is str:
        if "pattern" in c:
            return st.from_regex(c["pattern"], fullmatch=True).filter(lambda s: len(s) <= c.get("max_length", 64))
        lo, hi = c.get("min_length", 0), min(c.get("max_length", 64), 64)
        return st.one_of(
            st.text(min_size=lo, max_size=hi), st.sampled_from(NASTY_STRINGS).filter(lambda s: lo <= len(s) <= hi)
        )
    if annotation is int:
        lo = c.get("ge", c["gt"] + 1 if "gt" in c else None)
        hi = c.get("le", c["lt"] - 1 if "lt" in c else None)
        return st.integers(lo, hi)
    if annotation is float:
        return st.floats(
            c.get("ge", c.get("gt")),
            c.get("le", c.get("lt")),
            allow_nan=False,
            allow_infinity=False,
            exclude_min="gt" in c,
            exclude_max="lt" in c,
        )
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        item = plausible(args[0]) if args else json_values
        return st.lists(item, min_size=c.get("min_length", 0), max_size=min(c.get("max_length", 3), 3))
    if origin is dict or annotation is dict:
        return json_objects
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return shaped(annotation)
    return json_values


def _field(name: str, info: FieldInfo, overrides: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    good = overrides[name] if name in overrides else plausible(info.annotation, info.metadata)
    # Mostly well-typed, so the hostile leaves inside reach the hub's logic; sometimes any hostile value.
    return st.integers(0, 4).flatmap(lambda i: json_values if i == 0 else good)


@st.composite
def _shaped(draw: st.DrawFn, model: type[BaseModel], overrides: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    fields = model.model_fields
    required = [n for n, f in fields.items() if f.is_required()]
    optional = sorted(n for n, f in fields.items() if not f.is_required())
    chosen = draw(st.lists(st.sampled_from(optional), max_size=3, unique=True)) if optional else []
    out: dict[str, Any] = {}
    for name in [*required, *chosen]:
        if name in required and draw(st.integers(0, 9)) == 0:
            continue  # a required field missing
        out[name] = draw(_field(name, fields[name], overrides))
    for key, value in draw(st.dictionaries(keys, json_values, max_size=2)).items():
        out.setdefault(key, value)  # unknown fields, hostile names and values
    return out


def shaped(model: type[BaseModel], **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies shaped like ``model``: its required fields and up to three optional ones, with hostile leaves."""
    return _shaped(model, overrides)
