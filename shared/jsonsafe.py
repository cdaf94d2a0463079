"""Safe JSON: the limits every free-form JSON value from outside must keep, and the parser that applies them.

Whatever the hub accepts it must be able to store, reload and show again; JSON can spell values that break one of
those (a lone surrogate ``"\\ud800"`` cannot be encoded as UTF-8, ``NaN`` and ``Infinity`` are not JSON to a
browser, a 5,000-digit integer cannot be read back by Python, 100,000 nested lists exhaust the stack). A value is
*safe* when:

- it nests at most :data:`MAX_DEPTH` arrays/objects deep;
- every number is finite (no ``NaN``, ``Infinity``, or ``1e400``, which parses as infinity) and every integer fits
  in a signed 64-bit integer (``|n| <= 2**63 - 1``: SQLite's integer range, and what typed consumers hold);
- every string and key is encodable as UTF-8 (no lone surrogates); NUL and other control characters are allowed in
  values (they are stored escaped); identifiers are stricter (see ``shared.protocol``);
- every object has at most :data:`MAX_KEYS` keys of at most :data:`MAX_KEY_CHARS` characters.

:func:`check` tests a parsed value and raises :class:`UnsafeJson` naming where and why; :func:`parse` reads JSON
text strictly (lone surrogates are refused by the parser) and, for text it refuses, says precisely what is wrong
when it can; :func:`loads` is both. :data:`SafeJson` is the pydantic type for a free-form object field.
Values of other Python types (a sidecar building a message) are left to the serialiser.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError, from_json

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects in one value."""
MAX_INT = 2**63 - 1
"""Largest integer magnitude (signed 64 bits)."""
MAX_KEYS = 10_000
"""Most keys in one object."""
MAX_KEY_CHARS = 1024
"""Longest object key."""

TOO_DEEP = "too_deep"
NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"
INVALID_UNICODE = "invalid_unicode"
TOO_LARGE = "too_large"
CODES = frozenset({TOO_DEEP, NOT_FINITE, OUT_OF_RANGE, INVALID_UNICODE, TOO_LARGE})
"""The error codes :class:`UnsafeJson` carries (also the pydantic error types :data:`SafeJson` raises)."""


class UnsafeJson(ValueError):
    """A value outside the limits: ``code`` says why, ``path`` (keys and indexes from the top) where."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.path: list[str | int] = []
        """Built innermost first while the check unwinds; read :attr:`where`."""

    @property
    def where(self) -> str:
        """The path as a field name, ``a.b.0`` (empty for the value itself)."""
        return ".".join(printable(str(p), 64) for p in reversed(self.path))

    def as_error(self, field: str = "") -> dict[str, str]:
        """The error in the hub's per-field shape ``{field, error, detail}``; ``field`` prefixes the path."""
        name = ".".join(p for p in (field, self.where) if p) or "(body)"
        return {"field": name, "error": self.code, "detail": self.detail}


def printable(text: str, limit: int = 200) -> str:
    """``text`` cut at ``limit`` characters, with anything not encodable as UTF-8 escaped (safe to echo back)."""
    text = text[:limit]
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Oversized:
    """An integer literal too long for Python to read (over 4,300 digits), as :func:`parse` reports it."""


_OVERSIZED = _Oversized()


def _text(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeJson(
            INVALID_UNICODE, f"a lone surrogate (U+{ord(s[exc.start]):04X}) is not valid Unicode text"
        ) from None


def _key(k: Any) -> None:
    if not isinstance(k, str):
        return  # not JSON; the serialiser decides
    if len(k) > MAX_KEY_CHARS:
        raise UnsafeJson(TOO_LARGE, f"an object key is longer than {MAX_KEY_CHARS} characters")
    _text(k)


def _scalar(v: Any) -> None:
    """Everything but the exact JSON container, string and integer types, which the walk handles inline."""
    if isinstance(v, float):
        if not math.isfinite(v):
            raise UnsafeJson(NOT_FINITE, f"{v!r} is not a finite number (NaN, Infinity or beyond 1.8e308)")
    elif isinstance(v, bool) or v is None:
        pass
    elif isinstance(v, int):
        if not -MAX_INT <= v <= MAX_INT:
            raise UnsafeJson(OUT_OF_RANGE, f"integer beyond +-{MAX_INT} (64 bits)")
    elif isinstance(v, str):
        _text(v)
    elif v is _OVERSIZED:
        raise UnsafeJson(OUT_OF_RANGE, f"integer beyond +-{MAX_INT} (64 bits)")
    elif isinstance(v, dict | list | tuple):
        raise AssertionError("containers are walked")  # pragma: no cover


def _keys(value: dict[Any, Any]) -> None:
    """Check the keys of ``value``: all at once in the common case (short ASCII strings), else one by one."""
    try:
        joined = "".join(value)
    except TypeError:  # a key that is not a string: not from JSON, left to the serialiser
        joined = None
    if joined is not None and joined.isascii() and len(joined) <= MAX_KEY_CHARS:
        return
    for k in value:
        try:
            _key(k)
        except UnsafeJson as exc:
            exc.path.append(k)
            raise


def _uniform_ok(items: list[Any], kind: type, room: bool) -> bool:
    """For an array whose items share one type: True when all are certainly fine, checked at C speed (a long
    array would otherwise cost a Python step per item). False means: look one by one. ``room``: whether the
    items may still be containers (the array is above the depth limit)."""
    if kind is int:
        return bool(-MAX_INT <= min(items) and max(items) <= MAX_INT)
    if kind is str:
        joined = "".join(items)  # lone surrogates stay lone when joined: Python never pairs them up
        if joined.isascii():
            return True
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if kind is float:
        return math.isfinite(sum(items))  # NaN or an infinity makes the sum non-finite (so can an overflow)
    if kind is dict or kind is list:
        return room and not any(items)  # all empty
    return kind is bool or kind is type(None)


def _walk(value: Any, depth: int) -> None:
    """Check ``value``, a non-empty container at nesting level ``depth`` (1 for the outermost)."""
    if depth > MAX_DEPTH:
        raise UnsafeJson(TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        if len(value) > MAX_KEYS:
            raise UnsafeJson(TOO_LARGE, f"an object with more than {MAX_KEYS} keys")
        _keys(value)
        items: Any = value.items()
    elif len(kinds := set(map(type, value))) == 1 and _uniform_ok(value, kinds.pop(), depth < MAX_DEPTH):
        return
    else:
        items = enumerate(value)
    inner = depth + 1
    for k, x in items:
        t = type(x)
        if t is str:
            if x.isascii():
                continue
        elif t is int:
            if -MAX_INT <= x <= MAX_INT:
                continue
        elif t is bool or x is None or ((t is dict or t is list) and not x and inner <= MAX_DEPTH):
            continue
        try:
            if t is str:
                _text(x)
            elif t is dict or t is list or isinstance(x, dict | list | tuple):
                _walk(x, inner)
            else:
                _scalar(x)
        except UnsafeJson as exc:
            exc.path.append(k)
            raise


def check(value: Any) -> None:
    """Raise :class:`UnsafeJson` unless ``value`` (as parsed from JSON) keeps every limit."""
    if isinstance(value, dict | list | tuple):
        _walk(value, 1)
    elif type(value) is not str or not value.isascii():
        _scalar(value)


def _parse_int(digits: str) -> int | _Oversized:
    return int(digits) if len(digits) <= 4000 else _OVERSIZED


def diagnose(text: str | bytes) -> UnsafeJson | None:
    """For text the strict parser refused: the limit it breaks, with its path, if it is otherwise JSON."""
    try:
        value = json.loads(text, parse_int=_parse_int)
    except RecursionError:  # the C scanner's guard: deeper than the interpreter's recursion limit
        return UnsafeJson(TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels")
    except ValueError:  # not JSON at all (UnicodeDecodeError is a ValueError)
        return None
    try:
        check(value)
    except UnsafeJson as exc:
        return exc
    return None


def parse(text: str | bytes) -> Any:
    """Parse JSON text, refusing lone surrogates, invalid UTF-8, over 4,300-digit integers and nesting over 200.

    Raises :class:`UnsafeJson` (with its path) when the text is JSON that breaks a limit, else ``ValueError`` with
    the parser's message (line and column) for text that is not JSON. ``NaN``, ``Infinity`` and large numbers are
    parsed, for :func:`check` (or a :data:`SafeJson` field) to name where they are.
    """
    try:
        return from_json(text)
    except ValueError:
        problem = diagnose(text)
        if problem is not None:
            raise problem from None
        raise


def loads(text: str | bytes) -> Any:
    """:func:`parse` and :func:`check`: a safe value, or :class:`UnsafeJson` / ``ValueError``."""
    value = parse(text)
    check(value)
    return value


def _validate(value: dict[str, Any]) -> dict[str, Any]:
    try:
        _walk(value, 1)
    except UnsafeJson as exc:
        raise PydanticCustomError(exc.code, "{detail}", {"detail": exc.detail, "json_path": exc.where}) from None
    return value


SafeJson = Annotated[dict[str, Any], AfterValidator(_validate)]
"""A free-form JSON object field. Errors have the type of the broken limit (:data:`CODES`) and ``ctx.json_path``,
the path inside the field."""
