"""``/api/endpoints``: list and show endpoints (any token), add, remove and re-probe them (admin)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub.auth import Principal
from hub.endpoints.registry import EndpointRegistry, RegistryFull
from hub.endpoints.urls import BadUrl, normalise_url
from hub.http import ApiError, admin, any_role, hub_of, parse_body
from shared.fields import NoControl

router = APIRouter()

ModelName = Annotated[str, Field(min_length=1, max_length=256), NoControl]


class EndpointAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    """Checked by hand (:func:`normalise_url`): a refused URL is never echoed back, it may hold credentials."""
    kind: Literal["ollama", "openai"] = "ollama"
    name: Annotated[str, Field(min_length=1, max_length=64), NoControl] | None = None
    models: Annotated[list[ModelName], Field(max_length=64)] = []


def registry_of(request: Request) -> EndpointRegistry:
    registry: EndpointRegistry = hub_of(request).endpoints
    return registry


def _view(request: Request, ep_id: str) -> dict[str, Any]:
    hub = hub_of(request)
    ep = registry_of(request).endpoints.get(ep_id)
    if ep is None:
        raise ApiError(404, "endpoint_not_found", endpoint_id=ep_id[:64])
    return registry_of(request).summary(ep, lambda agent_id: agent_id in hub.agents.connected)


@router.get("/api/endpoints")
async def list_endpoints(request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    registry = registry_of(request)
    ids = sorted(registry.endpoints, key=lambda i: registry.endpoints[i].created_at)
    return {"endpoints": [_view(request, i) for i in ids], "stats": registry.stats()}


@router.get("/api/endpoints/{ep_id}")
async def get_endpoint(ep_id: str, request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    view = _view(request, ep_id)
    registry = registry_of(request)
    view["probe_results"] = {m: registry.probes[(ep_id, m)] for m in [p[1] for p in registry.probes if p[0] == ep_id]}
    return view


@router.post("/api/endpoints")
async def add_endpoint(request: Request, _: Principal = Depends(admin)) -> JSONResponse:
    body = await parse_body(request, EndpointAdd)
    try:
        url = normalise_url(body.url, body.kind)
    except BadUrl as exc:
        hub_of(request).n_http_rejections += 1
        raise ApiError(
            422, "validation_failed", errors=[{"field": "url", "error": "invalid_value", "detail": f"the URL {exc}"}]
        ) from None
    try:
        ep, new = await registry_of(request).add(url, body.kind, name=body.name, models=body.models)
    except RegistryFull as exc:
        raise ApiError(409, "endpoint_limit", limit=exc.limit, detail=str(exc)) from None
    return JSONResponse(_view(request, ep.id), status_code=201 if new else 200)


@router.delete("/api/endpoints/{ep_id}")
async def delete_endpoint(ep_id: str, request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    if await registry_of(request).remove(ep_id) is None:
        raise ApiError(404, "endpoint_not_found", endpoint_id=ep_id[:64])
    return {"deleted": ep_id}


@router.post("/api/endpoints/{ep_id}/probe")
async def probe_endpoint(ep_id: str, request: Request, _: Principal = Depends(admin)) -> JSONResponse:
    registry = registry_of(request)
    ep = registry.endpoints.get(ep_id)
    if ep is None:
        raise ApiError(404, "endpoint_not_found", endpoint_id=ep_id[:64])
    models = ep.all_models()
    for model in models:
        registry.want_probe(ep_id, model, force=True)
    return JSONResponse({"endpoint_id": ep_id, "probing": models}, status_code=202)
