"""HTTP plumbing shared by the routers: the hub behind a request, JSON errors in one shape, and token authentication
with roles."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from hub.auth import Principal, Role
from hub.hub import Hub
from shared import jsonsafe
from shared.field_errors import errors_by_field, field_errors

_REQUEST_PARTS = frozenset({"body", "query", "path"})

M = TypeVar("M", bound=BaseModel)

AUTH_HINT = "provide Authorization: Bearer <token>"


def hub_of(conn: HTTPConnection) -> Hub:
    """The hub serving a request or a socket (set on the app by :func:`hub.app.create_app`)."""
    hub: Hub = conn.app.state.hub
    return hub


class ApiError(Exception):
    """An error answer: ``status`` code and a JSON body ``{"error": code, ...extra}``."""

    def __init__(self, status: int, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.extra = extra


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate the JSON body against ``model`` whatever the Content-Type (curl -d sends form encoding).

    The body must be safe JSON (shared/jsonsafe.py) as a whole: a value the hub could not store, reload or show
    again (a lone surrogate, NaN, 1e400, a 5,000-digit integer, deep nesting) is a 422 naming where it is.
    """
    raw = await request.body()
    try:
        data = jsonsafe.loads(raw) if raw.strip() else None
    except jsonsafe.UnsafeJson as exc:
        hub_of(request).n_http_rejections += 1
        raise ApiError(422, "validation_failed", errors=[exc.as_error()]) from None
    except ValueError:
        raise ApiError(400, "invalid_json", detail="the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "validation_failed",
            errors=[{"field": "(body)", "error": "wrong_type", "detail": "the body must be a JSON object"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        hub_of(request).n_http_rejections += 1
        raise ApiError(422, "validation_failed", errors=field_errors(exc)) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, **exc.extra}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return JSONResponse({"error": "invalid_json", "detail": "the body is not valid JSON"}, status_code=400)
        hub_of(request).n_http_rejections += 1
        errors = errors_by_field(exc.errors(), skip_parts=_REQUEST_PARTS, clip=200)
        return JSONResponse({"error": "validation_failed", "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def authenticate(request: Request, *roles: Role) -> Principal:
    """The caller's principal; 401 without a valid token, 403 when its role is not among ``roles``."""
    principal = hub_of(request).auth.verify(bearer_token(request))
    if principal is None:
        raise ApiError(401, "unauthorized", hint=AUTH_HINT)
    if roles and principal.role not in roles:
        raise ApiError(403, "forbidden", detail=f"needs role {' or '.join(roles)}, token has {principal.role}")
    return principal


# The role dependencies are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency in its
# thread pool, a thread hand-over (and GIL round trip) on every request.
async def any_role(request: Request) -> Principal:
    return authenticate(request)


async def writer(request: Request) -> Principal:
    return authenticate(request, Role.ADMIN, Role.AGENT)


async def admin(request: Request) -> Principal:
    return authenticate(request, Role.ADMIN)
