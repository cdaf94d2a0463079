"""The GitHub forge client against the fake forge: pull requests opened and found, each error a clear message,
and the token in no message, log line or repr."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from shared.fakes.forge_server import FakeForgeServer
from sidecar.git.forge import API_VERSION, ForgeError, GitHubForge

TOKEN = "tok-" + "9c1f4e2b7a6d"


@pytest.fixture
async def fake() -> AsyncIterator[FakeForgeServer]:
    async with FakeForgeServer(token=TOKEN, read_token="read-only-" + "77aa", repos=["acme/demo"]) as server:
        yield server


async def test_opens_a_pull_request_with_the_rest_headers(fake: FakeForgeServer) -> None:
    """A pull request is opened with Bearer auth, the GitHub media type and API version; its web URL comes back."""
    forge = GitHubForge(TOKEN, base_url=fake.url)
    url = await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "Fix it", "## Task\nt1")
    assert url == f"{fake.url}/acme/demo/pull/1"
    request = next(r for r in fake.requests if r.method == "POST")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == API_VERSION
    assert request.body == {"title": "Fix it", "head": "agentcom/t1", "base": "main", "body": "## Task\nt1"}


async def test_an_existing_pull_request_is_found_not_duplicated(fake: FakeForgeServer) -> None:
    """Opening a pull request twice for the same branch answers the first one's URL (422 already exists -> find)."""
    forge = GitHubForge(TOKEN, base_url=fake.url)
    first = await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "Fix it", "body")
    second = await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "Fix it again", "body")
    assert first == second and len(fake.pulls()) == 1
    listing = [r for r in fake.requests if r.method == "GET"][-1]
    assert listing.path == "/repos/acme/demo/pulls"


async def test_find_pull_request(fake: FakeForgeServer) -> None:
    """Finding answers the open pull request of a branch, or None when there is none."""
    forge = GitHubForge(TOKEN, base_url=fake.url)
    assert await forge.find_pull_request("acme/demo", "agentcom/t1") is None
    url = await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "Fix it", "body")
    assert await forge.find_pull_request("acme/demo", "agentcom/t1") == url
    assert await forge.find_pull_request("acme/demo", "acme:agentcom/t1", "main") == url
    assert await forge.find_pull_request("acme/demo", "agentcom/t1", "dev") is None


async def test_labels_are_put_on_the_pull_request(fake: FakeForgeServer) -> None:
    """Labels given with a new pull request end up on it."""
    forge = GitHubForge(TOKEN, base_url=fake.url)
    await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "t", "b", labels=["needs-human-review"])
    assert [label["name"] for label in fake.pulls()[0]["labels"]] == ["needs-human-review"]


@pytest.mark.parametrize(
    ("token", "repo", "status", "words"),
    [
        ("wrong-token-" + "5e5e", "acme/demo", 401, "refused the token (401 Unauthorized)"),
        ("read-only-" + "77aa", "acme/demo", 403, "may not do this on acme/demo (403 Forbidden)"),
        (TOKEN, "acme/other", 404, "repository acme/other not found"),
    ],
)
async def test_errors_are_clear_and_never_carry_the_token(
    fake: FakeForgeServer, caplog: pytest.LogCaptureFixture, token: str, repo: str, status: int, words: str
) -> None:
    """401, 403 and 404 become ForgeErrors saying what to check; neither the message nor a log line has the token."""
    caplog.set_level(logging.DEBUG)
    forge = GitHubForge(token, base_url=fake.url)
    with pytest.raises(ForgeError) as raised:
        await forge.open_pull_request(repo, "agentcom/t1", "main", "t", "b")
    assert raised.value.status == status and words in str(raised.value)
    assert token not in str(raised.value) and token not in caplog.text and token not in repr(forge)


async def test_a_refused_request_says_what_the_forge_said(fake: FakeForgeServer) -> None:
    """A 422 other than 'already exists' is an error quoting the forge's reasons."""
    forge = GitHubForge(TOKEN, base_url=fake.url)
    with pytest.raises(ForgeError, match="body is too long"):
        await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "t", "x" * 70_000)


async def test_an_unreachable_forge_is_a_clear_error() -> None:
    """A forge that does not answer (its port closed) is a ForgeError naming the base URL."""
    async with FakeForgeServer() as gone:
        url = gone.url
    with pytest.raises(ForgeError, match="cannot reach the forge at http://127.0.0.1"):
        await GitHubForge(TOKEN, base_url=url).open_pull_request("acme/demo", "b", "main", "t", "b")


def test_bad_repository_names_and_empty_tokens_are_refused() -> None:
    """A repository that is not owner/name, and an empty token, are refused before any request."""
    with pytest.raises(ValueError):
        GitHubForge("")
    with pytest.raises(ForgeError, match="not an owner/name"):
        GitHubForge._split("justaname")


async def test_labels_reach_an_existing_pull_request(fake: FakeForgeServer) -> None:
    """A retried task whose change now needs review labels the pull request that was already open."""
    forge = GitHubForge(TOKEN, base_url=fake.url)
    first = await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "t", "b")
    again = await forge.open_pull_request("acme/demo", "agentcom/t1", "main", "t", "b", labels=["needs-human-review"])
    assert first == again
    assert [label["name"] for label in fake.pulls()[0]["labels"]] == ["needs-human-review"]


async def test_credentials_in_the_base_url_are_never_shown() -> None:
    """A base URL carrying user:password shows without it in errors and the repr."""
    async with FakeForgeServer() as gone:
        url = gone.url
    forge = GitHubForge(TOKEN, base_url=url.replace("http://", "http://admin:hunter2pass@"))
    with pytest.raises(ForgeError) as raised:
        await forge.find_pull_request("acme/demo", "b")
    assert "hunter2pass" not in str(raised.value) and "hunter2pass" not in repr(forge)
    assert url in str(raised.value)
