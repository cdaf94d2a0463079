"""The hub's OpenAPI document: FastAPI's, completed with what it cannot see.

Routes that read their body by hand (:func:`hub.http.parse_body`, so that any Content-Type is accepted and errors
keep one shape) get a ``requestBody`` with the JSON schema of the pydantic model they validate against
(:data:`BODIES`). Every route that needs a token carries the HTTP bearer security scheme; the few open ones are
listed in :data:`OPEN`. The document is built once, on first request, and cached by FastAPI.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from hub.api_admin import TokenRequest
from hub.api_limits import OverrideRequest
from hub.api_reruns import RerunRequest
from hub.costs.budgets import BudgetConfig
from hub.endpoints.api import EndpointAdd
from hub.goals.api import GoalSubmit
from hub.repos.base import RepoPatch, RepoSpec
from hub.task_submit import TaskBatch, TaskSubmit

SCHEME = "bearer"
REF = "#/components/schemas/{model}"

BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("post", "/api/tasks"): TaskSubmit,
    ("post", "/api/tasks/batch"): TaskBatch,
    ("post", "/api/tasks/{task_id}/rerun"): RerunRequest,
    ("post", "/admin/tokens"): TokenRequest,
    ("put", "/admin/rate-limits/agents/{agent_id}"): OverrideRequest,
    ("put", "/admin/rate-limits/addresses/{address}"): OverrideRequest,
    ("post", "/api/goals"): GoalSubmit,
    ("post", "/api/repos"): RepoSpec,
    ("put", "/api/repos/{name}"): RepoSpec,
    ("patch", "/api/repos/{name}"): RepoPatch,
    ("post", "/api/endpoints"): EndpointAdd,
    ("put", "/api/costs/budgets"): BudgetConfig,
}
"""(method, path) -> the model its body is validated against."""

OPEN: frozenset[tuple[str, str]] = frozenset(
    {
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/api/hub/state"),
        ("get", "/api/hub/history"),
        ("get", "/api/hub/healing-history"),
        ("get", "/api/hub/proposals"),
        ("post", "/api/webhooks/github"),  # verified by its HMAC signature, not a token
    }
)
"""Operations answered without a token; every other one needs ``Authorization: Bearer <token>``."""


def _merge_schema(schemas: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Add ``model`` and the models it uses to ``schemas``; a name already taken by another schema is an error."""
    schema = model.model_json_schema(ref_template=REF, mode="validation")
    for name, sub in schema.pop("$defs", {}).items():
        if schemas.setdefault(name, sub) != sub:
            raise ValueError(f"two request models define different schemas named {name!r}")
    name = model.__name__
    if schemas.setdefault(name, schema) != schema:
        raise ValueError(f"two request models define different schemas named {name!r}")
    return {"$ref": REF.format(model=name)}


def document(app: FastAPI, metrics_public: bool = False) -> dict[str, Any]:
    """The OpenAPI document of ``app``, with request bodies and security filled in."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description="AgentCom hub API. Send `Authorization: Bearer <token>` (admin, agent or viewer) on every "
        'route but the open ones; errors are JSON `{"error": code, ...}`.',
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = {
        SCHEME: {"type": "http", "scheme": "bearer", "description": "an admin, agent or viewer token"}
    }
    open_ops = OPEN | ({("get", "/metrics")} if metrics_public else set())
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            model = BODIES.get((method, path))
            if model is not None and "requestBody" not in op:
                ref = _merge_schema(schemas, model)
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
            if (method, path) in open_ops:
                op["security"] = []
            else:
                op["security"] = [{SCHEME: []}]
                op.setdefault("responses", {}).setdefault("401", {"description": "no valid token"})
    return doc


def install(app: FastAPI, metrics_public: bool = False) -> None:
    """Replace ``app.openapi`` by :func:`document` (built on first use, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, metrics_public)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
