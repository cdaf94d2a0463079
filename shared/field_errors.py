"""Pydantic validation errors as AgentCom's per-field error list ``[{field, error, detail, value?}]``: the shape of
every ``validation_failed`` reply, on the agents' socket (:mod:`shared.protocol`) and over HTTP (``hub/http.py``).

Codes follow the original (``required``, ``too_long``, ``wrong_type``, ``invalid_value``, ``unknown_field``...) plus
the hostile-JSON codes of :mod:`shared.jsonsafe`; an echoed value is always printable and finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from shared import jsonsafe
from shared.fields import JsonObject

_ERROR_CODES = {
    "missing": "required",
    "string_too_long": "too_long",
    "too_long": "too_long",
    "string_too_short": "invalid_value",
    "literal_error": "invalid_value",
    "extra_forbidden": "unknown_field",
    "enum": "invalid_value",
    "greater_than_equal": "invalid_value",
    "less_than_equal": "invalid_value",
    "invalid_characters": "invalid_characters",
    **{code: code for code in jsonsafe.CODES},
}


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and (
        part in {"int", "float", "str", "bool", "dict", "list", "none"}
        or "[" in part
        or part.startswith(("constrained-", "function-"))
    )


def field_errors(exc: ValidationError, skip_prefix: int = 0) -> list[JsonObject]:
    """Translate pydantic errors into AgentCom's per-field error list ``[{field, error, detail, value?}]``."""
    return errors_by_field(exc.errors(include_url=False), skip_prefix)


def errors_by_field(
    errors: Sequence[Any], skip_prefix: int = 0, skip_parts: frozenset[str] = frozenset(), clip: int | None = None
) -> list[JsonObject]:
    """The same for already-listed pydantic error dicts (FastAPI hands them over that way); location parts in
    ``skip_parts`` (such as ``body``, ``query``) are left out of the field name, echoed strings cut at ``clip``."""
    out: list[JsonObject] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        # A field accepting several types reports once per member ("cpu_percent.float", "cpu_percent.int"):
        # name the field, once.
        loc = [
            jsonsafe.printable(str(p), 64)
            for p in err["loc"][skip_prefix:]
            if not _is_type_tag(p) and p not in skip_parts
        ]
        if inner := (err.get("ctx") or {}).get("json_path"):  # where inside a free-form field (shared/jsonsafe.py)
            loc.append(inner)
        code = _ERROR_CODES.get(err["type"], "wrong_type" if err["type"].endswith("_type") else "invalid_value")
        field = ".".join(loc) or "(body)"
        if (field, code) in seen:
            continue
        seen.add((field, code))
        item: JsonObject = {"field": field, "error": code, "detail": jsonsafe.printable(err["msg"], 500)}
        value = err.get("input")
        if code != "required" and (shown := echo(value, clip)) is not None:
            item["value"] = shown
        out.append(item)
    return out


def echo(value: Any, clip: int | None) -> Any:
    """``value`` as it may be echoed back in an error (any JSON encoder can write it), or None if it may not."""
    if isinstance(value, str):
        return jsonsafe.printable(value, clip or 10_000)
    if isinstance(value, bool) or (isinstance(value, int) and -jsonsafe.MAX_INT <= value <= jsonsafe.MAX_INT):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None
