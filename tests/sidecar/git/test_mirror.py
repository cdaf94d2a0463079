"""Mirrors and task trees on real repositories: made once, fetched with prune, task branches kept, one tree per
task at its base."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.protocol import TaskAssign
from shared.repos import RepoCheckout
from sidecar.git.mirror import Mirrors, RepoUnreachable
from sidecar.git.task import GitWork, TaskGitFailure
from sidecar.settings import GitSettings
from tests.sidecar.git.gitrepo import make_remote, push_change, run_git


def checkout(remote: Path, branch: str = "agentcom/t1", **fields: object) -> RepoCheckout:
    return RepoCheckout.model_validate({"name": "calc", "url": str(remote), "branch": branch, **fields})


def assign(task_id: str, remote: Path, **fields: object) -> TaskAssign:
    co = checkout(remote, f"agentcom/{task_id}", **fields)
    return TaskAssign(task_id=task_id, description="d", generation=1, assigned_at=0, checkout=co)


async def test_a_mirror_is_made_once_then_fetched_with_prune(tmp_path: Path) -> None:
    """The first sync clones, a later one fetches the remote's new commits and prunes its deleted branches, and the
    tasks' branches in the mirror survive the prune."""
    remote, work = make_remote(tmp_path)
    run_git("push", "-q", "origin", "main:old-feature", cwd=work)
    mirrors = Mirrors(tmp_path / "mirrors", GitSettings())
    mirror = await mirrors.sync(checkout(remote))
    assert run_git("branch", "-r", cwd=mirror).split() == ["origin/main", "origin/old-feature"]
    run_git("branch", "agentcom/t1", "origin/main", cwd=mirror)
    head = push_change(work, "NOTES", "new\n", "upstream: notes")
    run_git("push", "-q", "origin", ":old-feature", cwd=work)
    assert await mirrors.sync(checkout(remote)) == mirror
    assert run_git("rev-parse", "origin/main", cwd=mirror).strip() == head
    assert run_git("branch", "-r", cwd=mirror).split() == ["origin/main"]
    assert run_git("branch", "--list", "agentcom/*", cwd=mirror).split() == ["agentcom/t1"]
    assert mirrors.fetches == 2


async def test_a_failed_first_fetch_leaves_no_mirror(tmp_path: Path) -> None:
    """A repository that cannot be fetched raises RepoUnreachable and leaves no half-made mirror behind."""
    mirrors = Mirrors(tmp_path / "mirrors", GitSettings())
    with pytest.raises(RepoUnreachable, match="cannot fetch calc"):
        await mirrors.sync(checkout(tmp_path / "missing.git"))
    assert not mirrors.path("calc").exists()


async def test_a_url_that_looks_like_an_option_is_refused(tmp_path: Path) -> None:
    """A URL starting with '-' never reaches git as an argument."""
    with pytest.raises(RepoUnreachable, match="starts with '-'"):
        await Mirrors(tmp_path / "m", GitSettings()).sync(checkout(Path("--upload-pack=touch /tmp/x")))


async def test_two_tasks_get_their_own_trees_at_their_base(tmp_path: Path, sandbox) -> None:
    """Two tasks prepared at once share the mirror (fetched under its lock) but each has its own tree, on its own
    branch, at the base it asked for."""
    remote, work = make_remote(tmp_path)
    first = run_git("rev-parse", "main", cwd=remote).strip()
    second = push_change(work, "NOTES", "new\n", "upstream: notes")
    gitwork = GitWork(Mirrors(tmp_path / "mirrors", GitSettings()), sandbox, "agent")
    tasks = [assign("t1", remote, base_commit=first), assign("t2", remote)]
    trees = [tmp_path / "ws" / "t1", tmp_path / "ws" / "t2"]
    prepared = await asyncio.gather(*(gitwork.prepare(t, tree) for t, tree in zip(tasks, trees, strict=True)))
    assert [p.base for p in prepared] == [first, second]
    for tree, base, branch in zip(trees, [first, second], ["agentcom/t1", "agentcom/t2"], strict=True):
        assert run_git("rev-parse", "HEAD", cwd=tree).strip() == base
        assert run_git("branch", "--show-current", cwd=tree).strip() == branch
    assert (trees[1] / "NOTES").exists() and not (trees[0] / "NOTES").exists()


async def test_a_base_commit_missing_from_the_repository_fails_the_task(tmp_path: Path, sandbox) -> None:
    """A base commit the repository does not have is reported as repo_unreachable, naming the commit."""
    remote, _ = make_remote(tmp_path)
    gitwork = GitWork(Mirrors(tmp_path / "mirrors", GitSettings()), sandbox, "agent")
    with pytest.raises(TaskGitFailure) as caught:
        await gitwork.prepare(assign("t1", remote, base_commit="deadbeef" * 5), tmp_path / "ws")
    assert caught.value.reason == "repo_unreachable" and "deadbeef" in caught.value.error
