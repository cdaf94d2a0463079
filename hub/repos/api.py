"""``/api/repos``: the repository registry over HTTP. Admins write; every role (viewer, agent) reads.

URLs never carry credentials (refused 422 ``credentials_in_url`` at the edge), so reading the registry shows
nothing secret. Each write is durable before the answer and sends ``repo_registry`` to the connected agents.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from hub.auth import Principal
from hub.http import ApiError, admin, any_role, hub_of, parse_body
from hub.repos.base import CREDENTIALS_DETAIL, RepoPatch, RepoSpec
from hub.repos.registry import RegistryFull, RepoExists, RepoRegistry
from shared.field_errors import field_errors

router = APIRouter()
M = TypeVar("M", bound=BaseModel)
audit = logging.getLogger("hub.audit")


def _registry(request: Request) -> RepoRegistry:
    registry: RepoRegistry = hub_of(request).repos
    return registry


def shown(registry: RepoRegistry, spec: RepoSpec) -> dict[str, Any]:
    return {**spec.model_dump(mode="json"), "head": registry.base_commit(spec.name)}


def _found(registry: RepoRegistry, name: str) -> RepoSpec:
    spec = registry.get(name)
    if spec is None:
        raise ApiError(404, "repo_not_found", name=name[:100])
    return spec


async def _store(request: Request, spec: RepoSpec, who: Principal, action: str, create_only: bool = False) -> bool:
    registry = _registry(request)
    try:
        new = await registry.put(spec, hub_of(request).clock.now_ms(), create_only)
    except RegistryFull as exc:
        raise ApiError(409, "too_many_repos", detail=str(exc)) from None
    except RepoExists:
        raise ApiError(409, "repo_exists", name=spec.name, detail="update it with PUT or PATCH") from None
    audit.info("audit by=%s action=%s repo=%r", who.token_id, action, spec.name)
    await registry.resolve([spec.name])  # the first tasks on it get a base commit (bounded by the git timeout)
    return new


@router.post("/api/repos", status_code=201)
async def create_repo(request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    spec = await _parsed(request, RepoSpec)
    registry = _registry(request)
    await _store(request, spec, who, "create_repo", create_only=True)
    return shown(registry, spec)


@router.get("/api/repos")
async def list_repos(request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    registry = _registry(request)
    repos = [shown(registry, s) for s in registry.list()]
    return {"repos": repos, "count": len(repos)}


@router.get("/api/repos/{name}")
async def get_repo(name: str, request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    registry = _registry(request)
    return shown(registry, _found(registry, name))


@router.put("/api/repos/{name}")
async def replace_repo(name: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    """Replace a repository whole (create it if new); the body's ``name``, if given, must be the path's."""
    raw = await parse_body(request, _Body)
    body = {"name": name, **(raw.model_extra or {})}
    if body["name"] != name:
        raise ApiError(
            422,
            "validation_failed",
            errors=[{"field": "name", "error": "conflict", "detail": "differs from the name in the path"}],
        )
    spec = _validated(request, body)
    await _store(request, spec, who, "replace_repo")
    return shown(_registry(request), spec)


@router.patch("/api/repos/{name}")
async def patch_repo(name: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    registry = _registry(request)
    current = _found(registry, name)
    patch = await _parsed(request, RepoPatch)
    spec = _validated(request, patch.applied_to(current))
    await _store(request, spec, who, "patch_repo")
    return shown(registry, spec)


@router.delete("/api/repos/{name}")
async def delete_repo(name: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    if not await _registry(request).delete(name):
        raise ApiError(404, "repo_not_found", name=name[:100])
    audit.info("audit by=%s action=delete_repo repo=%r", who.token_id, name)
    return {"name": name, "deleted": True}


class _Body(BaseModel):
    """Any JSON object (checked as a :class:`RepoSpec` once the path's name is in it)."""

    model_config = ConfigDict(extra="allow")


def _validated(request: Request, body: dict[str, Any]) -> RepoSpec:
    try:
        return RepoSpec.model_validate(body)
    except ValidationError as exc:
        hub_of(request).n_http_rejections += 1
        raise _refusal(ApiError(422, "validation_failed", errors=field_errors(exc))) from None


def _refusal(exc: ApiError) -> ApiError:
    """A URL with a credential is its own error, ``credentials_in_url``, and the URL is never echoed back."""
    errors = exc.extra.get("errors") or []
    if any(e.get("field") == "url" and e.get("detail") == CREDENTIALS_DETAIL for e in errors):
        return ApiError(422, "credentials_in_url", field="url", detail=CREDENTIALS_DETAIL)
    return exc


async def _parsed(request: Request, model: type[M]) -> M:
    try:
        return await parse_body(request, model)
    except ApiError as exc:
        raise _refusal(exc) from None
