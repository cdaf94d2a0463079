"""Admin endpoints: per-agent tokens (admin role only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.auth import Principal, Role
from hub.http import ApiError, admin, parse_body

router = APIRouter()


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    agent_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    role: Literal["agent", "viewer"] = "agent"


@router.post("/admin/tokens", status_code=201)
async def mint_token(request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    body = await parse_body(request, TokenRequest)
    token = await request.app.state.hub.auth.mint(body.agent_id, Role(body.role))
    return {"agent_id": body.agent_id, "token": token, "role": body.role}


@router.get("/admin/tokens")
async def list_tokens(request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    return {"tokens": request.app.state.hub.auth.list()}


@router.delete("/admin/tokens/{agent_id}")
async def revoke_tokens(agent_id: str, request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    n = await request.app.state.hub.auth.revoke(agent_id)
    if n == 0:
        raise ApiError(404, "token_not_found", agent_id=agent_id)
    return {"agent_id": agent_id, "revoked": n}
