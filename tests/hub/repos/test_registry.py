"""The repository registry over HTTP (/api/repos) against a real hub and real git repositories."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.repos.base import RepoSpec, credentials_in
from hub.repos.heads import Heads
from hub.repos.registry import RegistryFull, RepoRegistry
from hub.store.sqlite import SqliteStore
from tests.conftest import HubHandle
from tests.hub.repos.conftest import Remote

MakeHub = Callable[..., Awaitable[HubHandle]]


def repo(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, **extra}


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("/srv/git/app.git", False),
        ("file:///srv/git/app.git", False),
        ("ssh://git@example.com/o/app.git", False),
        ("git@github.com:o/app.git", False),
        ("https://github.com/o/app.git", False),
        ("https://user:secret@github.com/o/app.git", True),
        ("https://ghp_abcdef0123456789@github.com/o/app.git", True),
        ("http://token@internal/o/app", True),
        ("ssh://git:pw@example.com/o/app.git", True),
        ("user:pw@example.com:o/app.git", True),
    ],
)
def test_credentials_in_url_table(url: str, refused: bool) -> None:
    """A URL carrying a password or token is recognised; plain paths, file://, ssh logins and https are not."""
    assert credentials_in(url) is refused


async def test_crud_sorted_by_priority_and_survives_restart(make_hub: MakeHub, make_remote: Any) -> None:
    """Create, list (by priority), read, patch, replace and delete repositories; the registry survives a restart."""
    handle = await make_hub()
    a: Remote = make_remote("a")
    b: Remote = make_remote("b")
    r = await handle.http.post("/api/repos", json=repo("app", a.url, priority=20, test_command="pytest -q"))
    assert r.status_code == 201, r.text
    assert r.json()["head"] == a.head(), "the hub resolves the default branch's head at once"
    r = await handle.http.post("/api/repos", json=repo("lib", b.url, priority=10, settings={"lang": "py"}))
    assert r.status_code == 201, r.text
    listed = (await handle.http.get("/api/repos")).json()
    assert [x["name"] for x in listed["repos"]] == ["lib", "app"] and listed["count"] == 2
    r = await handle.http.patch("/api/repos/app", json={"priority": 5, "review": {"auto_merge": True}})
    assert r.status_code == 200, r.text
    assert r.json()["review"]["auto_merge"] is True and r.json()["test_command"] == "pytest -q"
    assert [x["name"] for x in (await handle.http.get("/api/repos")).json()["repos"]] == ["app", "lib"]
    r = await handle.http.put("/api/repos/lib", json={"url": b.url, "default_branch": "main", "priority": 1})
    assert r.status_code == 200, r.text
    assert r.json()["settings"] == {}, "PUT replaces the whole repository"
    r = await handle.http.post("/api/repos", json=repo("gone", a.url))
    assert (await handle.http.delete("/api/repos/gone")).json() == {"name": "gone", "deleted": True}
    assert (await handle.http.get("/api/repos/gone")).status_code == 404
    assert (await handle.http.delete("/api/repos/gone")).json()["error"] == "repo_not_found"

    data_dir = handle.data_dir
    await handle.http.aclose()
    await handle.server.stop()
    again = await make_hub(data_dir)
    shown = (await again.http.get("/api/repos")).json()["repos"]
    assert [(x["name"], x["priority"]) for x in shown] == [("lib", 1), ("app", 5)]
    assert shown[1]["review"]["auto_merge"] is True and shown[1]["test_command"] == "pytest -q"


@pytest.mark.parametrize(
    ("body", "status", "error", "fields"),
    [
        (repo("app", "https://u:p@github.com/o/app.git"), 422, "credentials_in_url", None),
        (repo("bad name", "/x"), 422, "validation_failed", [("name", "invalid_value")]),
        (repo("app", ""), 422, "validation_failed", [("url", "invalid_value")]),
        (repo("app", "--upload-pack=evil"), 422, "validation_failed", [("url", "invalid_value")]),
        (repo("app", "/x", default_branch="a..b"), 422, "validation_failed", [("default_branch", "invalid_value")]),
        (repo("app", "/x", priority="high"), 422, "validation_failed", [("priority", "wrong_type")]),
        (repo("app", "/x", colour="red"), 422, "validation_failed", [("colour", "unknown_field")]),
        (repo("app", "/x", settings={"v": float("inf")}), 422, "validation_failed", None),
        ({"url": "/x"}, 422, "validation_failed", [("name", "required")]),
    ],
)
async def test_invalid_repositories_are_refused_precisely(
    hub: HubHandle, body: dict[str, Any], status: int, error: str, fields: list[tuple[str, str]] | None
) -> None:
    """Bad bodies get a precise 422 naming the field; nothing is stored."""
    import json

    text = json.dumps(body) if "settings" not in body else json.dumps(body).replace("Infinity", "1e999")
    r = await hub.http.post("/api/repos", content=text.encode())
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert "secret" not in r.text and "u:p@" not in r.text, "a credential is never echoed back"
    if fields is not None:
        assert [(e["field"], e["error"]) for e in r.json()["errors"]] == fields
    assert (await hub.http.get("/api/repos")).json()["count"] == 0


async def test_roles_admin_writes_others_read(hub: HubHandle, make_remote: Any) -> None:
    """Viewers and agents read the registry; only an admin writes it (403 otherwise, 401 without a token)."""
    remote: Remote = make_remote("app")
    assert (await hub.http.post("/api/repos", json=repo("app", remote.url))).status_code == 201
    assert (await hub.http.post("/api/repos", json=repo("app", remote.url))).json()["error"] == "repo_exists"
    racing = [hub.http.post("/api/repos", json=repo("twin", remote.url, priority=p)) for p in (201, 202)]
    assert sorted(r.status_code for r in await asyncio.gather(*racing)) == [201, 409], "one create, one refusal"
    for role in ("viewer", "agent"):
        token = await hub.mint_token(f"who-{role}", role)
        async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}) as client:
            assert (await client.get("/api/repos")).json()["repos"][0]["name"] == "app"
            assert (await client.get("/api/repos/app")).status_code == 200
            assert (await client.post("/api/repos", json=repo("x", remote.url))).status_code == 403
            assert (await client.patch("/api/repos/app", json={"priority": 1})).status_code == 403
            assert (await client.delete("/api/repos/app")).status_code == 403
    r = await hub.http.patch("/api/repos/app", json={"url": "https://me:pw@example.com/o/app.git"})
    assert r.status_code == 422 and r.json()["error"] == "credentials_in_url" and "pw@" not in r.text
    r = await hub.http.put("/api/repos/app", json={"url": "https://ghp_tok@example.com/o/app.git"})
    assert r.status_code == 422 and r.json()["error"] == "credentials_in_url" and "ghp_tok" not in r.text
    assert (await hub.http.get("/api/repos/app")).json()["url"] == remote.url, "a refused change changes nothing"
    async with httpx.AsyncClient(base_url=hub.url) as anonymous:
        assert (await anonymous.get("/api/repos")).status_code == 401


async def test_unreachable_repository_has_no_head(hub: HubHandle, tmp_path: Any) -> None:
    """A repository the hub cannot reach is registered all the same, with no head (the sidecar uses its own)."""
    r = await hub.http.post("/api/repos", json=repo("ghost", str(tmp_path / "no-such-repo.git")))
    assert r.status_code == 201, r.text
    assert r.json()["head"] is None
    assert hub.hub.repos.heads.n_unreachable == 1


async def test_oversized_repositories_are_refused(hub: HubHandle) -> None:
    """A review policy that would swell every task_assign, or huge settings, is refused (422 too_large)."""
    review = {"sensitive_paths": [f"path/{i:05d}/**" for i in range(3000)]}
    r = await hub.http.post("/api/repos", json=repo("app", "/srv/app.git", review=review))
    assert r.status_code == 422 and r.json()["errors"][0]["error"] == "too_large"
    r = await hub.http.post("/api/repos", json=repo("app", "/srv/app.git", settings={"blob": "x" * 70_000}))
    assert r.status_code == 422 and r.json()["errors"] == [
        {"field": "settings", "error": "too_large", "detail": "70011 bytes, over 65536"}
    ]


async def test_registry_is_bounded(tmp_path: Path) -> None:
    """Past its limit the registry refuses a new repository (replacing one still works); nothing is half-written."""
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    writer = asyncio.create_task(store.run_writer())
    try:
        registry = RepoRegistry(store, Heads(30, 5, 1, time.monotonic), max_repos=2)
        assert await registry.put(RepoSpec(name="a", url="/a"), 1) is True
        assert await registry.put(RepoSpec(name="b", url="/b"), 1) is True
        with pytest.raises(RegistryFull):
            await registry.put(RepoSpec(name="c", url="/c"), 1)
        assert await registry.put(RepoSpec(name="b", url="/b2", priority=0), 2) is False
        again = RepoRegistry(store, Heads(30, 5, 1, time.monotonic))
        await again.load()
        assert [(s.name, s.url) for s in again.list()] == [("b", "/b2"), ("a", "/a")]
    finally:
        await store.close()
        await asyncio.gather(writer, return_exceptions=True)
