"""Fuzzing the HTTP API: any method, path, query, body and token gets a JSON answer below 500 and the hub holds."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Mount

from hub.api_admin import TokenRequest
from hub.repos.base import RepoPatch, RepoSpec
from hub.task_submit import TaskBatch, TaskSubmit
from tests.fuzz.conftest import COUNTS, FUZZ, QUIET_PRNG_WARNING, FuzzHub
from tests.fuzz.strategies import NASTY_STRINGS, Raw, dumps, json_values, numbers, shaped, texts

# Every route the hub serves, with the body model of the ones that read one. ``{id}`` is any path parameter.
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/health", None),
    ("GET", "/api/agents", None),
    ("GET", "/api/agents/{id}", None),
    ("POST", "/api/tasks", TaskSubmit),
    ("POST", "/api/tasks/batch", TaskBatch),
    ("GET", "/api/tasks", None),
    ("GET", "/api/tasks/dead-letter", None),
    ("GET", "/api/tasks/stats", None),
    ("GET", "/api/tasks/parse-stats", None),
    ("GET", "/api/tasks/{id}", None),
    ("GET", "/api/tasks/{id}/trajectory", None),
    ("POST", "/api/tasks/{id}/cancel", None),
    ("POST", "/api/tasks/{id}/retry", None),
    ("POST", "/admin/tokens", TokenRequest),
    ("GET", "/admin/tokens", None),
    ("DELETE", "/admin/tokens/{id}", None),
    ("GET", "/", None),
    ("GET", "/dashboard", None),
    ("GET", "/dashboard/static/{id}", None),
    ("GET", "/api/dashboard/state", None),
    ("GET", "/openapi.json", None),
    ("GET", "/api/docs", None),
    ("GET", "/docs/oauth2-redirect", None),
    ("GET", "/ws", None),  # plain HTTP on the socket paths
    ("GET", "/ws/dashboard", None),
    # repositories (hub/repos/api.py)
    ("POST", "/api/repos", RepoSpec),
    ("GET", "/api/repos", None),
    ("GET", "/api/repos/{id}", None),
    ("PUT", "/api/repos/{id}", RepoSpec),
    ("PATCH", "/api/repos/{id}", RepoPatch),
    ("DELETE", "/api/repos/{id}", None),
    # the hub's state machine (hub/autonomy/api.py)
    ("GET", "/api/hub/state", None),
    ("POST", "/api/hub/pause", None),
    ("POST", "/api/hub/resume", None),
    ("GET", "/api/hub/history", None),
    ("GET", "/api/hub/healing-history", None),
    ("GET", "/api/hub/proposals", None),
    ("POST", "/api/webhooks/github", None),
]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
QUERY_KEYS = ("status", "priority", "assigned_to", "goal_id", "limit", "after_seq", "task_id", "token")
SECRET = uuid.uuid4().hex[:8]
AGENT_ID, VIEWER_ID = f"fuzz-agent-{SECRET}", f"fuzz-viewer-{SECRET}"  # never drawn, so never revoked by a case
SEEDED: list[str] = []


def _path_id() -> st.SearchStrategy[str]:
    """Ids as they appear in a URL: real ones, text percent-encoded, raw bytes (invalid UTF-8), dots, huge."""
    return st.one_of(
        st.sampled_from(SEEDED or ["task-0"]),
        st.sampled_from(NASTY_STRINGS).map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe="")),
        st.text(max_size=30).map(lambda s: quote(s, safe="")),
        st.binary(max_size=12).map(lambda b: quote_from_bytes(b, safe="")),
        st.sampled_from(["..", ".", "%2e%2e", "%00", "a/b", "%2F", "~", "*", "main.js", "dashboard.css", "x.js"]),
        st.integers(1, 20_000).map(lambda n: "a" * n),
    )


def _query_value() -> st.SearchStrategy[str]:
    return st.one_of(
        numbers.map(lambda v: dumps(v) if isinstance(v, Raw | float) else str(v)),
        texts.filter(lambda s: len(s) < 10_000).map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe="")),
        st.binary(max_size=8).map(lambda b: quote_from_bytes(b, safe="")),
    )


queries = st.lists(
    st.tuples(st.one_of(st.sampled_from(QUERY_KEYS), st.text(max_size=8).map(quote)), _query_value()), max_size=4
)


def _body(model: Any) -> st.SearchStrategy[bytes | None]:
    shapes = [shaped(model).map(dumps)] * 3 if model is not None else []
    return st.one_of(
        st.none(),
        *shapes,
        json_values.map(dumps),
        st.binary(max_size=64),
        shaped(TaskSubmit).map(dumps).map(lambda s: s[: len(s) // 2]),  # cut short
        st.sampled_from(["", " ", "null", "[]", "{}", '{"description": "x"', "\x00", "\ufeff{}"]),
    ).map(lambda b: b if b is None or isinstance(b, bytes) else b.encode("utf-8", "surrogatepass"))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method, template, model = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(METHODS))
    path = template.replace("{id}", draw(_path_id()))
    query = draw(queries)
    if query:
        path += "?" + "&".join(f"{k}={v}" for k, v in query)
    return {
        "method": method,
        "url": path,
        "body": draw(_body(model)) if method not in ("GET", "HEAD") or draw(st.integers(0, 9)) == 0 else None,
        "token": draw(st.sampled_from(["admin", "agent", "viewer", "none", "bad", "malformed"])),
        "content_type": draw(
            st.sampled_from(
                [
                    "application/json",
                    None,
                    "application/x-www-form-urlencoded",
                    "text/plain; charset=latin-1",
                    "application/json; charset=utf-16",
                ]
            )
        ),
    }


def _headers(fuzz: FuzzHub, tokens: dict[str, Any], req: dict[str, Any]) -> dict[str, str]:
    headers = {}
    token = req["token"]
    if token in tokens:
        headers["Authorization"] = f"Bearer {tokens[token]}"
    elif token == "bad":
        headers["Authorization"] = "Bearer " + "x" * 64
    elif token == "malformed":
        headers["Authorization"] = "Basic Og=="
    if req["content_type"]:
        headers["Content-Type"] = req["content_type"]
    return headers


def _tokens(fuzz: FuzzHub) -> dict[str, Any]:
    return {
        "admin": fuzz.hub.admin_token,
        "agent": fuzz.mint(AGENT_ID),
        "viewer": fuzz.mint(VIEWER_ID, "viewer"),
        "started": fuzz.started,
    }


@pytest.fixture(scope="module")
def tokens(fuzz_hub: FuzzHub) -> dict[str, Any]:
    return _tokens(fuzz_hub)


def _seed(fuzz: FuzzHub) -> None:
    """A few real tasks (queued, cancelled) so that real ids are among the drawn path ids."""
    assert fuzz.http is not None
    SEEDED.clear()
    for n in range(3):
        r = fuzz.http.post("/api/tasks", json={"description": f"seeded {n}"}, headers=fuzz.admin)
        assert r.status_code == 201, r.text
        SEEDED.append(r.json()["task_id"])
    assert fuzz.http.post(f"/api/tasks/{SEEDED[0]}/cancel", headers=fuzz.admin).status_code == 200


def test_fuzz_route_table_covers_every_route(fuzz_hub: FuzzHub) -> None:
    """Every HTTP route the hub serves is in the fuzzer's table, so a new route is fuzzed from its first day."""
    served = set()
    for route in fuzz_hub.server.app.routes:  # type: ignore[union-attr]
        if isinstance(route, Mount) or not getattr(route, "methods", None):
            continue
        path = route.path.replace("{agent_id}", "{id}").replace("{task_id}", "{id}").replace("{name}", "{id}")
        served |= {(m, path) for m in route.methods if m != "HEAD"}
    assert served <= {(m, p) for m, p, _ in ROUTES}, served - {(m, p) for m, p, _ in ROUTES}


def _check(response: httpx.Response, req: dict[str, Any]) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400 and req["method"] != "HEAD":
        try:
            body = json.loads(response.content)
        except ValueError:
            raise AssertionError(f"{response.status_code} error body is not JSON: {response.text[:300]}") from None
        assert isinstance(body, dict) and "error" in body, f"{response.status_code} error body: {response.text[:300]}"


@pytest.fixture(scope="module")
def seeded(fuzz_hub: FuzzHub) -> list[str]:
    _seed(fuzz_hub)
    return SEEDED


@pytest.mark.timeout(900)
@QUIET_PRNG_WARNING
@FUZZ
@given(batch=st.lists(requests(), min_size=1, max_size=3))
def test_http_requests_never_5xx_and_the_hub_holds(
    fuzz_hub: FuzzHub, tokens: dict[str, Any], seeded: list[str], batch: list[dict[str, Any]]
) -> None:
    """Any method, path, query, body and token: no 5xx, every error is JSON with "error", and the hub holds."""
    fuzz_hub.ensure()
    if tokens["started"] != fuzz_hub.started:  # a replaced hub: tokens minted again (the seeded ids are gone)
        tokens.update(_tokens(fuzz_hub))
    COUNTS["HTTP examples"] += 1
    assert fuzz_hub.http is not None
    for req in batch:
        COUNTS["HTTP requests"] += 1
        try:
            response = fuzz_hub.http.request(
                req["method"], req["url"], content=req["body"], headers=_headers(fuzz_hub, tokens, req)
            )
        except httpx.HTTPError as exc:
            raise AssertionError(f"no answer: {exc!r}") from None
        _check(response, req)
    problem = fuzz_hub.problem()
    assert problem is None, problem
