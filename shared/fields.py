"""Constrained field types of the wire protocol, shared by its frames (``shared.protocol``) and the typed payloads
inside them (``shared.payloads``). Strings that identify things refuse control characters; numbers are bounded to
what SQLite and JSON consumers hold."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from shared import jsonsafe

MAX_TIMESTAMP_MS = 253_402_300_799_999
"""Latest time in milliseconds since the epoch that a timestamp may give (the end of the year 9999)."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _no_control(value: str) -> str:
    if (found := _CONTROL.search(value)) is not None:
        raise PydanticCustomError(
            "invalid_characters",
            "control characters and lone surrogates are not allowed (U+{code} at {at})",
            {"code": f"{ord(found.group()):04X}", "at": found.start()},
        )
    return value


NoControl = AfterValidator(_no_control)
"""For identifier-like strings (ids, names, capabilities): no control characters, no lone surrogates."""
AgentId = Annotated[str, Field(min_length=1, max_length=128), NoControl]
TaskId = Annotated[str, Field(min_length=1, max_length=128), NoControl]
ShortText = Annotated[str, Field(max_length=256), NoControl]
ErrorText = Annotated[str, Field(max_length=2000)]
Count = Annotated[int, Field(ge=0, le=jsonsafe.MAX_INT)]
TimestampMs = Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS)]
CpuPercent = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] | Annotated[int, Field(ge=0, le=10**6)]
Json = jsonsafe.SafeJson
"""A free-form object from a sidecar: checked against the limits of :mod:`shared.jsonsafe`."""
JsonObject = dict[str, Any]
"""A free-form object the hub builds itself (already checked where it came in)."""
