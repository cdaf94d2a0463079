"""The fake forge, driven over raw HTTP: the GitHub REST v3 pull request shape, its tokens, errors and listing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.fakes.forge_server import MAX_BODY_CHARS, FakeForgeServer

REPO = Path(__file__).resolve().parents[3]
TOKEN = "forge-token-for-tests"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json",
           "X-GitHub-Api-Version": "2022-11-28"}  # fmt: skip


@pytest.fixture
async def forge() -> AsyncIterator[FakeForgeServer]:
    async with FakeForgeServer(token=TOKEN, read_token="read-only", repos=["acme/demo"]) as server:
        yield server


@pytest.fixture
async def client(forge: FakeForgeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=forge.url, headers=HEADERS, timeout=10) as http:
        yield http


def pull_body(head: str = "agentcom/t1", **extra: object) -> dict[str, object]:
    return {"title": "Fix the bug", "head": head, "base": "main", "body": "## Task\nt1", **extra}


async def test_create_and_read_a_pull_request(forge: FakeForgeServer, client: httpx.AsyncClient) -> None:
    """A created pull request answers 201 with its number and html_url, and reads back by number."""
    created = await client.post("/repos/acme/demo/pulls", json=pull_body())
    assert created.status_code == 201
    pull = created.json()
    assert pull["number"] == 1 and pull["state"] == "open" and pull["body"] == "## Task\nt1"
    assert pull["html_url"] == f"{forge.url}/acme/demo/pull/1"
    assert pull["head"]["label"] == "acme:agentcom/t1" and pull["base"]["ref"] == "main"
    again = await client.get("/repos/acme/demo/pulls/1")
    assert again.status_code == 200 and again.json()["title"] == "Fix the bug"
    assert (await client.get("/repos/acme/demo/pulls/2")).status_code == 404
    assert forge.pulls("acme/demo")[0]["number"] == 1


async def test_duplicate_head_is_422_already_exists(client: httpx.AsyncClient) -> None:
    """A second open pull request from the same head to the same base is refused as GitHub does."""
    assert (await client.post("/repos/acme/demo/pulls", json=pull_body())).status_code == 201
    duplicate = await client.post("/repos/acme/demo/pulls", json=pull_body(head="acme:agentcom/t1"))
    assert duplicate.status_code == 422
    assert duplicate.json()["message"] == "Validation Failed"
    assert duplicate.json()["errors"][0]["message"] == "A pull request already exists for acme:agentcom/t1."
    other = await client.post("/repos/acme/demo/pulls", json=pull_body(head="agentcom/t2"))
    assert other.status_code == 201 and other.json()["number"] == 2


async def test_listing_filters_by_head_base_and_state(client: httpx.AsyncClient) -> None:
    """The listing is newest first and filters by head=owner:branch, base and state."""
    for n in range(3):
        await client.post("/repos/acme/demo/pulls", json=pull_body(head=f"agentcom/t{n}"))
    everything = (await client.get("/repos/acme/demo/pulls")).json()
    assert [p["number"] for p in everything] == [3, 2, 1]
    one = await client.get("/repos/acme/demo/pulls", params={"head": "acme:agentcom/t1", "state": "open"})
    assert [p["number"] for p in one.json()] == [2]
    assert (await client.get("/repos/acme/demo/pulls", params={"base": "dev"})).json() == []
    assert (await client.get("/repos/acme/demo/pulls", params={"state": "closed"})).json() == []
    page = await client.get("/repos/acme/demo/pulls", params={"per_page": 1, "page": 2})
    assert [p["number"] for p in page.json()] == [2]
    assert (await client.get("/repos/acme/demo/pulls", params={"state": "weird"})).status_code == 422


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "Bad credentials"),
        ({"Authorization": "Bearer wrong"}, 401, "Bad credentials"),
        ({"Authorization": "Basic Zm9vOmJhcg=="}, 401, "Bad credentials"),
        ({"Authorization": "Bearer read-only"}, 403, "Resource not accessible by personal access token"),
    ],
)
async def test_tokens_are_checked(forge: FakeForgeServer, headers: dict[str, str], status: int, message: str) -> None:
    """No token or a wrong one is 401; a read-only token may not open a pull request (403)."""
    async with httpx.AsyncClient(base_url=forge.url, timeout=10) as http:
        response = await http.post("/repos/acme/demo/pulls", json=pull_body(), headers=headers)
    assert (response.status_code, response.json()["message"]) == (status, message)
    assert forge.pulls() == []


async def test_read_only_token_reads_and_token_scheme_works(forge: FakeForgeServer) -> None:
    """A read-only token may list; the older ``token`` scheme is accepted like ``Bearer``."""
    async with httpx.AsyncClient(base_url=forge.url, timeout=10) as http:
        listed = await http.get("/repos/acme/demo/pulls", headers={"Authorization": "Bearer read-only"})
        created = await http.post(
            "/repos/acme/demo/pulls", json=pull_body(), headers={"Authorization": f"token {TOKEN}"}
        )
    assert listed.status_code == 200 and created.status_code == 201


async def test_unknown_repository_is_404(client: httpx.AsyncClient) -> None:
    """A repository the forge does not hold is 404 Not Found, for reads and writes."""
    assert (await client.post("/repos/acme/other/pulls", json=pull_body())).json()["message"] == "Not Found"
    assert (await client.get("/repos/nobody/demo/pulls")).status_code == 404
    assert (await client.get("/repos/acme/demo")).json()["default_branch"] == "main"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"head": "b", "base": "main"}, 422),
        ({"title": "", "head": "b", "base": "main"}, 422),
        ({"title": "t", "head": "b", "base": "main", "body": "x" * (MAX_BODY_CHARS + 1)}, 422),
        ({"title": "t", "head": "b", "base": "main", "body": 5}, 422),
        ([1, 2], 400),
    ],
)
async def test_bad_pull_request_bodies(forge: FakeForgeServer, client: httpx.AsyncClient, body: object,
                                       status: int) -> None:  # fmt: skip
    """Missing fields, a body above GitHub's limit and a non-object are refused, nothing stored."""
    response = await client.post("/repos/acme/demo/pulls", json=body)
    assert response.status_code == status
    assert forge.pulls() == []


async def test_labels_are_added_once(client: httpx.AsyncClient) -> None:
    """Labels added to a pull request (through its issue) are listed on it, each once."""
    await client.post("/repos/acme/demo/pulls", json=pull_body())
    first = await client.post("/repos/acme/demo/issues/1/labels", json={"labels": ["needs-human-review"]})
    again = await client.post("/repos/acme/demo/issues/1/labels", json={"labels": ["needs-human-review", "x"]})
    assert [label["name"] for label in first.json()] == ["needs-human-review"]
    assert [label["name"] for label in again.json()] == ["needs-human-review", "x"]
    pull = (await client.get("/repos/acme/demo/pulls/1")).json()
    assert [label["name"] for label in pull["labels"]] == ["needs-human-review", "x"]
    assert (await client.post("/repos/acme/demo/issues/9/labels", json={"labels": ["x"]})).status_code == 404
    assert (await client.post("/repos/acme/demo/issues/1/labels", json={"labels": "x"})).status_code == 422


def test_repr_never_shows_the_tokens() -> None:
    """The server's repr names its URL and counts, not its tokens."""
    text = repr(FakeForgeServer(token=TOKEN, read_token="read-only", repos=["acme/demo"]))
    assert TOKEN not in text and "read-only" not in text and "repos=1" in text


def test_runs_as_a_module() -> None:
    """``python -m shared.fakes.forge_server --port 0`` prints a URL that answers the REST shape."""
    command = [sys.executable, "-m", "shared.fakes.forge_server", "--port", "0", "--token", "t", "--repo", "a/b"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            response = httpx.get(f"{url}/repos/a/b/pulls", headers={"Authorization": "Bearer t"}, timeout=10)
            assert response.status_code == 200 and response.json() == []
        finally:
            proc.terminate()
            proc.wait(timeout=30)
