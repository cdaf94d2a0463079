"""Admin endpoints for rate limits: the tiers in force, and overrides per agent id or client address.

``GET /admin/rate-limits`` shows tiers, overrides and counters; a put to (or a delete of)
``/admin/rate-limits/agents/{agent_id}`` or ``/admin/rate-limits/addresses/{address}`` sets (or drops) an override
(body ``{"capacity": N, "refill_per_s": R}`` or ``{"unlimited": true}``). Overrides are persisted in the data
directory and apply at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub import rate_limit as RL
from hub.auth import Principal
from hub.http import ApiError, admin, parse_body
from hub.limits import RateLimiter, normalise_address

router = APIRouter()
ADMIN = Depends(admin)

AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    capacity: Annotated[float, Field(ge=1, le=1_000_000, allow_inf_nan=False)] | None = None
    refill_per_s: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)] | None = None
    unlimited: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> OverrideRequest:
        if self.unlimited == (self.capacity is not None or self.refill_per_s is not None):
            raise ValueError("give either capacity and refill_per_s, or unlimited: true")
        if not self.unlimited and (self.capacity is None or self.refill_per_s is None):
            raise ValueError("capacity and refill_per_s go together")
        return self

    def limit(self) -> RL.Limit:
        return RL.UNLIMITED if self.unlimited else RL.Limit(float(self.capacity or 0), float(self.refill_per_s or 0))


def _limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter  # type: ignore[no-any-return]


def _agent_key(agent_id: str) -> str:
    if not AGENT_ID.match(agent_id):
        raise ApiError(
            422,
            "validation_failed",
            errors=[
                {"field": "agent_id", "error": "invalid_value", "detail": "letters, digits, '.', '_', '-' (max 128)"}
            ],
        )
    return f"agent:{agent_id}"


def _address_key(address: str) -> str:
    try:
        return f"address:{normalise_address(address)}"
    except ValueError:
        raise ApiError(
            422,
            "validation_failed",
            errors=[{"field": "address", "error": "invalid_value", "detail": "an IPv4 or IPv6 address"}],
        ) from None


@router.get("/admin/rate-limits")
async def rate_limits(request: Request, _: Principal = ADMIN) -> dict[str, Any]:
    return _limiter(request).view()


async def _put(request: Request, key: str) -> dict[str, Any]:
    body = await parse_body(request, OverrideRequest)
    limit = body.limit()
    _limiter(request).set_override(key, limit)
    return {"key": key, **limit.view()}


def _delete(request: Request, key: str) -> dict[str, Any]:
    if not _limiter(request).delete_override(key):
        raise ApiError(404, "override_not_found", key=key)
    return {"key": key, "deleted": True}


@router.put("/admin/rate-limits/agents/{agent_id}")
async def put_agent_override(agent_id: str, request: Request, _: Principal = ADMIN) -> dict[str, Any]:
    return await _put(request, _agent_key(agent_id))


@router.delete("/admin/rate-limits/agents/{agent_id}")
async def delete_agent_override(agent_id: str, request: Request, _: Principal = ADMIN) -> dict[str, Any]:
    return _delete(request, _agent_key(agent_id))


@router.put("/admin/rate-limits/addresses/{address}")
async def put_address_override(address: str, request: Request, _: Principal = ADMIN) -> dict[str, Any]:
    return await _put(request, _address_key(address))


@router.delete("/admin/rate-limits/addresses/{address}")
async def delete_address_override(address: str, request: Request, _: Principal = ADMIN) -> dict[str, Any]:
    return _delete(request, _address_key(address))
