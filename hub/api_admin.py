"""Admin endpoints: per-agent tokens (admin role only).

Tokens are listed and revoked by their non-secret ``token_id``; the token itself is shown once, when minted, and
never logged. Each action writes one ``audit`` line (who, what, which token id) on the ``hub.audit`` logger.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from hub.auth import AmbiguousPrefix, Principal, Role
from hub.http import ApiError, admin, hub_of, parse_body

router = APIRouter()
audit = logging.getLogger("hub.audit")

PREFIX_LENGTH = 8
"""Characters of a token kept in clear (as listed); revoking by prefix takes exactly these."""


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    agent_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    role: Literal["agent", "viewer"] = "agent"


def _audit(who: Principal, action: str, **details: Any) -> None:
    audit.info("audit by=%s action=%s %s", who.token_id, action, " ".join(f"{k}={v!r}" for k, v in details.items()))


@router.post("/admin/tokens", status_code=201)
async def mint_token(request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    body = await parse_body(request, TokenRequest)
    token, token_id = await hub_of(request).auth.mint(body.agent_id, Role(body.role))
    _audit(who, "mint_token", token_id=token_id, agent_id=body.agent_id, role=body.role)
    return {"agent_id": body.agent_id, "token": token, "token_id": token_id, "role": body.role}


@router.get("/admin/tokens")
async def list_tokens(request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    return {"tokens": hub_of(request).auth.list()}


@router.delete("/admin/tokens")
async def revoke_by_prefix(request: Request, prefix: str = "", who: Principal = Depends(admin)) -> dict[str, Any]:
    """Revoke the one token starting with ``prefix`` (the 8 characters listed); 409 if several share it."""
    if len(prefix) != PREFIX_LENGTH or not prefix.isascii() or not prefix.isalnum():
        raise ApiError(
            422,
            "validation_failed",
            errors=[
                {
                    "field": "prefix",
                    "error": "invalid_value",
                    "detail": f"the {PREFIX_LENGTH} characters listed by GET /admin/tokens",
                }
            ],
        )
    try:
        revoked = await hub_of(request).auth.revoke_prefix(prefix)
    except AmbiguousPrefix as exc:
        _audit(who, "revoke_refused", prefix=prefix, matches=len(exc.token_ids))
        raise ApiError(
            409,
            "ambiguous_prefix",
            detail=f"{len(exc.token_ids)} tokens start with this prefix; revoke by token id",
            token_ids=exc.token_ids,
        ) from None
    if not revoked:
        raise ApiError(404, "token_not_found", prefix=prefix)
    _audit(who, "revoke_token", token_id=revoked[0], prefix=prefix)
    return {"token_id": revoked[0], "revoked": 1}


@router.delete("/admin/tokens/id/{token_id}")
async def revoke_by_id(token_id: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    revoked = await hub_of(request).auth.revoke_id(token_id)
    if not revoked:
        raise ApiError(404, "token_not_found", token_id=token_id[:64])
    _audit(who, "revoke_token", token_id=token_id[:64])
    return {"token_id": token_id, "revoked": 1}


@router.delete("/admin/tokens/{agent_id}")
async def revoke_tokens(agent_id: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    """Revoke every token of one agent."""
    revoked = await hub_of(request).auth.revoke(agent_id)
    if not revoked:
        raise ApiError(404, "token_not_found", agent_id=agent_id)
    _audit(who, "revoke_agent_tokens", agent_id=agent_id[:128], token_ids=",".join(revoked))
    return {"agent_id": agent_id, "revoked": len(revoked)}
