"""The OpenAPI document: valid, with a request body on every route that reads one and the bearer scheme on every
protected route; and the /api/docs page, which renders it with no route to the internet."""

from __future__ import annotations

import inspect

import httpx
import pytest
from fastapi.routing import APIRoute

from hub import api_admin, api_agents, api_limits, api_ops, api_tasks, dashboard_socket
from hub.autonomy import api as autonomy_api
from hub.costs import api as costs_api
from hub.endpoints import api as endpoints_api
from hub.goals import api as goals_api
from hub.openapi import BODIES, OPEN
from hub.repos import api as repos_api

ROUTERS = [api_admin, api_agents, api_limits, api_ops, api_tasks, dashboard_socket, autonomy_api, costs_api]
ROUTERS += [endpoints_api, goals_api, repos_api]
BODY_READERS = ("parse_body(", "_parsed(", "_put(", "request.json(", "request.body(")


def body_routes() -> set[tuple[str, str]]:
    """(method, path) of every route whose handler reads its body by hand."""
    found = set()
    for module in ROUTERS:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and any(s in inspect.getsource(route.endpoint) for s in BODY_READERS):
                found |= {(m.lower(), route.path) for m in route.methods}
    return found


async def test_document_validates(hub):
    """The served document is a valid OpenAPI 3.1 document."""
    validator = pytest.importorskip("openapi_spec_validator")
    async with httpx.AsyncClient() as client:
        r = await client.get(hub.url + "/openapi.json")
    assert r.status_code == 200
    validator.validate(r.json())


async def test_every_body_route_has_a_request_body(hub):
    """Each route that parses its body by hand documents it with its model's JSON schema."""
    doc = (await hub.http.get("/openapi.json")).json()
    readers = body_routes() - {("post", "/api/webhooks/github")}  # a GitHub payload, verified by signature
    assert {("post", "/api/tasks"), ("post", "/api/goals"), ("put", "/api/costs/budgets")} <= readers
    assert readers <= set(BODIES), f"routes reading a body without a documented model: {readers - set(BODIES)}"
    schemas = doc["components"]["schemas"]
    for method, path in readers:
        body = doc["paths"][path][method]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in schemas, (method, path)
    assert "description" in schemas["TaskSubmit"]["properties"]
    assert "description" in schemas["TaskSubmit"]["required"]


async def test_security_matches_what_the_hub_enforces(make_hub):
    """Every operation marked with the bearer scheme answers 401 without a token; every open one does not."""
    hub = await make_hub(rate_limits_enabled=False)  # dozens of anonymous calls would spend the 401 budget
    doc = (await hub.http.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an admin, agent or viewer token",
    }
    protected = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            url = path.replace("{", "x").replace("}", "x")
            async with httpx.AsyncClient(base_url=hub.url, timeout=10) as anonymous:
                r = await anonymous.request(method.upper(), url)
            if (method, path) in OPEN:
                assert op["security"] == [], (method, path)
                assert r.status_code != 401 or path == "/api/webhooks/github", (method, path, r.text)
            else:
                assert op["security"] == [{"bearer": []}], (method, path)
                assert r.status_code == 401, (method, path, r.status_code)
                protected += 1
    assert protected > 30


async def test_docs_assets_are_local_and_listed(hub):
    """The docs page and its assets are served by the hub; an unknown asset name is a 404, not a file read."""
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as anonymous:
        page = await anonymous.get("/api/docs")
        assert page.status_code == 200
        assert "http://" not in page.text and "https://" not in page.text
        for name in ("swagger-ui.css", "swagger-ui-bundle.js", "init.js"):
            assert (await anonymous.get(f"/api/docs/assets/{name}")).status_code == 200, name
        assert (await anonymous.get("/api/docs/assets/index.html")).status_code == 404
        assert (await anonymous.get("/api/docs/assets/..%2f__init__.py")).status_code == 404
