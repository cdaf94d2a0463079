"""The sweep of task branches out of a mirror, on real repositories: merged, expired and over-the-cap branches go
(the oldest first, a bounded number per sweep), a running task's branch and every ref outside agentcom/ stay."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from websockets.asyncio.server import serve

from shared.protocol import TaskAssign
from shared.repos import RepoCheckout
from sidecar.git.mirror import Mirrors
from sidecar.git.prune import recovered_branch, sweep, sweep_all, sweep_mirror
from sidecar.git.publisher import wired_publisher
from sidecar.git.task import GitWork
from sidecar.main import run_sidecar
from sidecar.runtime.state import LocalState
from sidecar.sandbox.probe import probe_sandbox
from sidecar.settings import GitSettings, load_settings
from tests.conftest import wait_tasks
from tests.sidecar.conftest import searchable
from tests.sidecar.git.gitrepo import ENV, FIX, make_remote, run_git
from tests.sidecar.git.test_task_e2e import GitSidecar, checkout
from tests.sidecar.runtime.test_runner import submit_shell, wait_until
from tests.sidecar.test_main import GoodbyeHub

DAY = 86400
NOW = int(time.time())


def task_commit(mirror: Path, parent: str, age_days: float = 0, message: str = "task work") -> str:
    """A new commit on ``parent`` in the mirror (same tree), committed ``age_days`` ago."""
    when = f"{int(NOW - age_days * DAY)} +0000"
    env = {**ENV, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when}
    out = subprocess.run(["git", "commit-tree", "-p", parent, "-m", message, f"{parent}^{{tree}}"], cwd=mirror,
                         env=env, check=True, capture_output=True, text=True, timeout=60)  # fmt: skip
    return out.stdout.strip()


def set_ref(mirror: Path, ref: str, commit: str) -> None:
    run_git("update-ref", ref, commit, cwd=mirror)


def refs(mirror: Path, prefix: str = "refs/") -> dict[str, str]:
    out = run_git("for-each-ref", "--format=%(refname) %(objectname)", prefix, cwd=mirror)
    return dict(line.split(" ", 1) for line in out.splitlines())


def task_refs(mirror: Path) -> set[str]:
    return {name.removeprefix("refs/heads/") for name in refs(mirror, "refs/heads/agentcom/")}


async def make_mirror(tmp_path: Path, settings: GitSettings | None = None) -> tuple[Mirrors, Path, Path, Path]:
    """A real mirror of a bare remote: (mirrors, mirror, remote, upstream work clone)."""
    remote, work = make_remote(tmp_path)
    mirrors = Mirrors(tmp_path / "mirrors", settings or GitSettings())
    co = RepoCheckout(name="calc", url=str(remote), branch="agentcom/setup")
    return mirrors, await mirrors.sync(co), remote, work


def main_of(mirror: Path) -> str:
    return run_git("rev-parse", "refs/remotes/origin/main", cwd=mirror).strip()


async def test_a_merged_branch_goes_and_an_unmerged_recent_one_stays(tmp_path: Path) -> None:
    """A task branch fast-forwarded upstream is pruned once fetched; a recent unmerged one is kept; again: no-op."""
    mirrors, mirror, remote, _ = await make_mirror(tmp_path)
    base = main_of(mirror)
    merged, open_ = task_commit(mirror, base, message="merged"), task_commit(mirror, base, message="open")
    set_ref(mirror, "refs/heads/agentcom/merged", merged)
    set_ref(mirror, "refs/heads/agentcom/open", open_)
    run_git("push", "-q", str(remote), f"{merged}:refs/heads/main", cwd=mirror)  # the fast-forward upstream
    await mirrors.sync(RepoCheckout(name="calc", url=str(remote), branch="agentcom/x"))
    first = await sweep(mirror, mirrors.settings)
    assert (first.merged, first.expired, first.over_cap, first.kept, first.error) == (1, 0, 0, 1, None)
    assert task_refs(mirror) == {"agentcom/open"}
    before = refs(mirror)
    second = await sweep(mirror, mirrors.settings)
    assert second.pruned == 0 and second.kept == 1 and refs(mirror) == before
    assert run_git("cat-file", "-t", merged, cwd=mirror).strip() == "commit"  # the commit itself stays


async def test_a_commit_merged_before_any_fetch_saw_it_goes(tmp_path: Path) -> None:
    """A commit the caller says was merged (its own fast-forward) prunes its branch and the branches below it."""
    mirrors, mirror, _, _ = await make_mirror(tmp_path)
    first = task_commit(mirror, main_of(mirror), message="first")
    second = task_commit(mirror, first, message="second")
    other = task_commit(mirror, main_of(mirror), message="other")
    for name, commit in (("a", first), ("b", second), ("c", other)):
        set_ref(mirror, f"refs/heads/agentcom/{name}", commit)
    result = await sweep(mirror, mirrors.settings, merged_into=[second, "f" * 40])
    assert result.merged == 2 and task_refs(mirror) == {"agentcom/c"}


async def test_an_expired_branch_goes(tmp_path: Path) -> None:
    """A branch whose tip was committed more than branch_keep_days ago is pruned; a younger one stays."""
    mirrors, mirror, _, _ = await make_mirror(tmp_path, GitSettings(branch_keep_days=14))
    base = main_of(mirror)
    set_ref(mirror, "refs/heads/agentcom/old", task_commit(mirror, base, age_days=15))
    set_ref(mirror, "refs/heads/agentcom/young", task_commit(mirror, base, age_days=13))
    result = await sweep(mirror, mirrors.settings)
    assert (result.merged, result.expired, result.over_cap) == (0, 1, 0)
    assert task_refs(mirror) == {"agentcom/young"}


async def test_the_cap_keeps_the_newest_branches(tmp_path: Path) -> None:
    """Beyond branch_keep_max, the oldest task branches go and the newest stay."""
    mirrors, mirror, _, _ = await make_mirror(tmp_path, GitSettings(branch_keep_max=3))
    base = main_of(mirror)
    for age in range(6):
        set_ref(mirror, f"refs/heads/agentcom/age{age}", task_commit(mirror, base, age_days=age + 0.5))
    result = await sweep(mirror, mirrors.settings)
    assert (result.over_cap, result.kept) == (3, 3)
    assert task_refs(mirror) == {"agentcom/age0", "agentcom/age1", "agentcom/age2"}


async def test_one_sweep_deletes_at_most_a_batch_the_oldest_first(tmp_path: Path) -> None:
    """With more doomed branches than branch_prune_batch, a sweep deletes the oldest batch; the next goes on."""
    mirrors, mirror, _, _ = await make_mirror(tmp_path, GitSettings(branch_keep_days=1, branch_prune_batch=2))
    base = main_of(mirror)
    for age in (2, 3, 4, 5):
        set_ref(mirror, f"refs/heads/agentcom/age{age}", task_commit(mirror, base, age_days=age))
    assert (await sweep(mirror, mirrors.settings)).expired == 2
    assert task_refs(mirror) == {"agentcom/age2", "agentcom/age3"}
    assert (await sweep(mirror, mirrors.settings)).expired == 2 and task_refs(mirror) == set()


async def test_a_running_tasks_branch_is_never_deleted(tmp_path: Path) -> None:
    """A branch held by a running task stays although merged, expired and over the cap; released, it goes."""
    mirrors, mirror, _, _ = await make_mirror(tmp_path, GitSettings(branch_keep_max=0))
    base = main_of(mirror)
    set_ref(mirror, "refs/heads/agentcom/busy", base)  # merged (it is main's head)
    set_ref(mirror, "refs/heads/agentcom/old", task_commit(mirror, base, age_days=30))
    mirrors.hold("calc", "agentcom/busy")
    mirrors.hold("calc", "agentcom/old")
    result = await sweep_mirror(mirrors, mirror)
    assert result.pruned == 0 and task_refs(mirror) == {"agentcom/busy", "agentcom/old"}
    mirrors.release("calc", "agentcom/busy")
    mirrors.release("calc", "agentcom/old")
    result = await sweep_mirror(mirrors, mirror)
    assert (result.merged, result.expired) == (1, 1) and task_refs(mirror) == set()


async def test_refs_outside_the_task_branches_are_untouched(tmp_path: Path) -> None:
    """Old, merged or many: branches outside agentcom/, look-alike names, tags and remote refs all stay."""
    mirrors, mirror, _, _ = await make_mirror(tmp_path, GitSettings(branch_keep_max=0, branch_keep_days=1))
    base = main_of(mirror)
    old = task_commit(mirror, base, age_days=100)
    for ref in ("refs/heads/feature", "refs/heads/agentcom-old", "refs/heads/x/agentcom/y", "refs/tags/v1",
                "refs/remotes/origin/stale", "refs/agentcom/t9"):  # fmt: skip
        set_ref(mirror, ref, old)
    set_ref(mirror, "refs/heads/merged-feature", base)
    set_ref(mirror, "refs/heads/agentcom/t1", old)
    outside = {name: sha for name, sha in refs(mirror).items() if not name.startswith("refs/heads/agentcom/")}
    result = await sweep(mirror, mirrors.settings)
    assert result.pruned == 1 and task_refs(mirror) == set()
    assert refs(mirror) == outside


async def test_the_log_line_names_the_mirror_not_the_remote(tmp_path: Path, caplog) -> None:
    """One line per sweep with the counts, naming the mirror directory, never the remote's URL."""
    mirrors, mirror, remote, _ = await make_mirror(tmp_path, GitSettings(branch_keep_days=1))
    set_ref(mirror, "refs/heads/agentcom/old", task_commit(mirror, main_of(mirror), age_days=2))
    set_ref(mirror, "refs/heads/agentcom/done", main_of(mirror))
    with caplog.at_level(logging.INFO, logger="sidecar.git.prune"):
        await sweep(mirror, mirrors.settings)
    lines = [r.getMessage() for r in caplog.records if r.name == "sidecar.git.prune"]
    assert lines == ["pruned 2 task branches from calc.git (merged 1, expired 1, over cap 0)"]
    assert str(remote) not in caplog.text


async def test_a_broken_mirror_is_reported_not_raised(tmp_path: Path, caplog) -> None:
    """A directory that is not a repository gives a sweep with an error and one warning; nothing raises."""
    broken = tmp_path / "mirrors" / "broken.git"
    broken.mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="sidecar.git.prune"):
        result = await sweep(broken, GitSettings())
    assert result.pruned == 0 and result.error and "could not prune task branches from broken.git" in caplog.text


async def test_at_start_every_mirror_is_swept_sparing_the_recovered_task(tmp_path: Path) -> None:
    """sweep_all prunes each mirror under root, except the branch of the task the local state holds as active."""
    mirrors, mirror, remote, _ = await make_mirror(tmp_path, GitSettings(branch_keep_days=1))
    other = await mirrors.sync(RepoCheckout(name="calc2", url=str(remote), branch="agentcom/x"))
    for m in (mirror, other):
        old = task_commit(m, main_of(m), age_days=5)
        set_ref(m, "refs/heads/agentcom/t1", old)
        set_ref(m, "refs/heads/agentcom/t2", old)
    state = LocalState.load(tmp_path / "state")
    co = RepoCheckout(name="calc", url=str(remote), branch="agentcom/t1")
    state.record_active(TaskAssign(task_id="t1", description="d", generation=1, assigned_at=0, checkout=co))
    sweeps = await sweep_all(mirrors, recovered_branch(LocalState.load(tmp_path / "state")))
    assert sorted((s.mirror, s.expired) for s in sweeps) == [("calc.git", 1), ("calc2.git", 2)]
    assert task_refs(mirror) == {"agentcom/t1"} and task_refs(other) == set()


async def test_a_merged_task_leaves_no_branch_in_the_mirror(hub, tmp_path: Path, sandbox) -> None:
    """Through the real task path: a verified change merged fast-forward upstream is pruned from the mirror when the
    task ends, while an unmerged recent branch of an earlier task stays."""
    searchable(tmp_path)
    sc = GitSidecar(hub, "sc-prune", await hub.mint_token("sc-prune"), tmp_path / "sc-prune", sandbox)
    remote, _ = make_remote(tmp_path)
    mirror = await Mirrors(sc.mirror.parent, GitSettings()).sync(RepoCheckout(name="calc", url=str(remote), branch="x"))
    assert mirror == sc.mirror
    set_ref(mirror, "refs/heads/agentcom/earlier", task_commit(mirror, main_of(mirror), age_days=1))
    sc.publisher = wired_publisher(GitSettings(), tmp_path / "publish")
    co = checkout(remote, test_command="python3 test_calc.py", review={"auto_merge": True}, publish="push")
    async with sc.running():
        work = sc.runner.repos
        assert isinstance(work, GitWork)
        tid = await submit_shell(hub, FIX, metadata={"checkout": co}, max_retries=1)
        await wait_tasks(hub, [tid], {"completed", "failed", "dead_letter"})
        await wait_until(lambda: work.swept >= 1, timeout_s=30)
    task = await hub.task(tid)
    change = task["result"]["change"]
    assert change["published"] == "merged", change
    assert run_git("rev-parse", "refs/heads/main", cwd=remote).strip() == change["commit"]
    assert task_refs(mirror) == {"agentcom/earlier"}
    assert work.last_sweep is not None and (work.last_sweep.merged, work.last_sweep.kept) == (1, 1)


async def test_the_sidecar_sweeps_its_mirrors_at_start(tmp_path: Path) -> None:
    """A sidecar started over a mirror holding an expired task branch deletes it without any task being run."""
    mirrors, mirror, _, _ = await make_mirror(tmp_path)
    set_ref(mirror, "refs/heads/agentcom/stale", task_commit(mirror, main_of(mirror), age_days=20))
    set_ref(mirror, "refs/heads/agentcom/fresh", task_commit(mirror, main_of(mirror), age_days=1))
    hub = GoodbyeHub(send_restart=False)
    async with asyncio.timeout(30), serve(hub.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        settings = load_settings(None, agent_id="prune-test", token="t", hub_url=f"ws://127.0.0.1:{port}/ws",
                                 state_dir=tmp_path / "state", workspace_root=tmp_path / "w")  # fmt: skip
        assert settings.mirror_root == mirrors.root
        sandbox = await probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000))
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(run_sidecar(settings, sandbox))
            await hub.identified.wait()
            await wait_until(lambda: task_refs(mirror) == {"agentcom/fresh"}, timeout_s=20)
            os.kill(os.getpid(), signal.SIGTERM)
    assert run.result() == 0


async def test_a_cancelled_tasks_branch_is_released(hub, tmp_path: Path, sandbox) -> None:
    """A repository task cancelled while it runs no longer holds its branch: the next sweep may take it."""
    searchable(tmp_path)
    sc = GitSidecar(hub, "sc-cancel", await hub.mint_token("sc-cancel"), tmp_path / "sc-cancel", sandbox)
    remote, _ = make_remote(tmp_path)
    co = checkout(remote)
    async with sc.running():
        work = sc.runner.repos
        assert isinstance(work, GitWork)
        tid = await submit_shell(hub, "echo x > started; sleep 30", metadata={"checkout": co})
        await wait_until(lambda: bool(work.mirrors.held(sc.mirror)), timeout_s=30)
        assert (await hub.http.post(f"/api/tasks/{tid}/cancel")).status_code == 200
        await wait_until(lambda: sc.runner.state.active is None, timeout_s=10)
        assert work.mirrors.held(sc.mirror) == frozenset()
    assert (await hub.task(tid))["status"] == "cancelled"
