"""Which repository a task works on: nil-repo inheritance (pure table) and the submit endpoint (real hub)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.repos.base import RepoSpec
from hub.repos.registry import UnknownRepo, placement
from hub.task_submit import TaskSubmit
from tests.conftest import HubHandle
from tests.hub.repos.conftest import Remote

REPOS = [
    RepoSpec(name="top", url="/srv/top.git", priority=1),
    RepoSpec(name="other", url="https://example.com/o/other.git", priority=5),
]


def task(**body: Any) -> Any:
    return TaskSubmit.model_validate({"description": "change something", **body}).to_task("t", 1)


GOALS = {"goal-1": "other", "goal-2": None, "goal-3": "deleted"}


@pytest.mark.parametrize(
    ("body", "repos", "expected"),
    [
        ({}, REPOS, "top"),  # routed to a model (tier chain): works with files
        ({"executor": "ollama"}, REPOS, "top"),
        ({"executor": "claude"}, REPOS, "top"),
        ({"executor": "shell"}, REPOS, None),  # shell tasks without a repository stay without one
        ({"metadata": {"shell_command": "ls"}}, REPOS, None),
        ({"executor": "shell", "file_hints": [{"path": "a.py"}]}, REPOS, "top"),  # names files: inherits
        ({"goal_id": "goal-1", "executor": "shell"}, REPOS, "other"),  # the goal's repository first
        ({"goal_id": "goal-2"}, REPOS, "top"),  # a goal without a repository: the top one
        ({"goal_id": "goal-3"}, REPOS, "top"),  # a goal's repository no longer registered
        ({"repo": "other"}, REPOS, "other"),
        ({"repo": "https://example.com/o/other"}, REPOS, "other"),  # named by URL (normalised)
        ({"repo": "/srv/top.git/"}, REPOS, "top"),
        ({"repo": "free-label"}, [], "free-label"),  # empty registry: a label, as before
        ({}, [], None),
    ],
)
def test_placement_table(body: dict[str, Any], repos: list[RepoSpec], expected: str | None) -> None:
    """A task keeps a registered repository, or inherits its goal's, or the top one when it works with files."""
    assert placement(task(**body), repos, GOALS.get) == expected


def test_unknown_repository_is_refused() -> None:
    """A task naming a repository the registry does not know (by name or URL) is refused."""
    with pytest.raises(UnknownRepo):
        placement(task(repo="nope"), REPOS, GOALS.get)


async def test_submit_inherits_and_refuses_unknown(hub: HubHandle, make_remote: Any) -> None:
    """Over HTTP: model tasks inherit the top-priority repository, shell tasks stay without, unknown ones get 422."""
    low: Remote = make_remote("low")
    top: Remote = make_remote("top")
    assert (await hub.http.post("/api/repos", json={"name": "low", "url": low.url, "priority": 9})).status_code == 201
    assert (await hub.http.post("/api/repos", json={"name": "top", "url": top.url, "priority": 0})).status_code == 201
    pinned = {"assign_to": "nobody"}  # kept queued: this is about placement only
    model_task = await hub.submit(executor="ollama", **pinned)
    shell_task = await hub.submit(executor="shell", **pinned)
    named = await hub.submit(repo=low.url + "/", **pinned)
    assert (await hub.task(model_task))["repo"] == "top"
    assert (await hub.task(shell_task))["repo"] is None
    assert (await hub.task(named))["repo"] == "low"
    r = await hub.http.post("/api/tasks", json={"description": "x", "repo": "nope"})
    assert r.status_code == 422 and r.json()["error"] == "unknown_repo" and r.json()["field"] == "repo"
    r = await hub.http.post(
        "/api/tasks/batch", json={"tasks": [{"description": "x"}, {"description": "y", "repo": "no"}]}
    )
    assert r.status_code == 422 and r.json()["field"] == "tasks.1.repo"
    assert len(hub.hub.queue.tasks) == 3, "a refused submission queues nothing"
