"""The base of every typed payload inside a frame (:mod:`shared.payloads`, :mod:`shared.repos`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from shared import jsonsafe


class Payload(BaseModel):
    """An object of known shape inside a frame: typed fields, unknown ones ignored (so older and newer peers keep
    working), immutable."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class SafePayload(Payload):
    """A payload a sidecar sends as a whole: all of it, the fields ignored included, must keep the limits of
    :mod:`shared.jsonsafe`, like a free-form object (a frame carrying ``NaN`` anywhere is refused, never stored)."""

    @model_validator(mode="before")
    @classmethod
    def _safe_json(cls, data: Any) -> Any:
        if isinstance(data, dict):
            try:
                jsonsafe.check(data)
            except jsonsafe.UnsafeJson as exc:
                raise PydanticCustomError(
                    exc.code, "{detail}", {"detail": exc.detail, "json_path": exc.where}
                ) from None
        return data
