"""Repository tasks end to end: a real hub, the in-process sidecar with the real sandbox, a real bare remote.

The hub does not send ``checkout`` yet, so the harness adds it to each ``task_assign`` from ``metadata.checkout``
(with the branch ``agentcom/<task id>``), exactly as the hub's registry will.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shared.protocol import HubMessage, TaskAssign, TaskComplete, TaskFailed
from shared.repos import DIFF_CHARS, ChangeReport, RepoCheckout
from sidecar.git.mirror import Mirrors
from sidecar.git.task import GitWork
from sidecar.runtime.runner import Runner
from sidecar.settings import GitSettings
from tests.conftest import wait_tasks
from tests.sidecar.conftest import searchable
from tests.sidecar.git.gitrepo import FIX, make_remote, push_change, run_git
from tests.sidecar.runtime.test_runner import Sidecar, submit_shell

TOKEN = "ghp_TESTSECRETvalue0123456789abcdef"


class CheckoutRunner(Runner):
    """The runner, with ``task_assign.checkout`` filled from the task's metadata (the hub's future job)."""

    async def handle(self, message: HubMessage) -> None:
        if isinstance(message, TaskAssign) and isinstance(message.metadata.get("checkout"), dict):
            fields = {**message.metadata["checkout"], "branch": f"agentcom/{message.task_id}"}
            message = message.model_copy(update={"checkout": RepoCheckout.model_validate(fields)})
        await super().handle(message)


class GitSidecar(Sidecar):
    git_settings = GitSettings()
    publisher: Any = None

    def _runner(self) -> Runner:
        base = super()._runner()
        mirrors = Mirrors(self.home / "mirrors", self.git_settings)
        return CheckoutRunner(
            state=base.state,
            registry=base.registry,
            workspaces=base.workspaces,
            sandbox=base.sandbox,
            link=base.link,
            limits=base.limits,
            repos=GitWork(mirrors, self.sandbox, self.agent_id, publisher=self.publisher),
        )

    @property
    def mirror(self) -> Path:
        return self.home / "mirrors" / "calc.git"


@pytest.fixture
async def sidecar(hub, tmp_path: Path, sandbox) -> GitSidecar:
    searchable(tmp_path)
    agent_id = "sc-git"
    return GitSidecar(hub, agent_id, await hub.mint_token(agent_id), tmp_path / agent_id, sandbox)


def checkout(remote: Path, **fields: Any) -> dict[str, Any]:
    return {"name": "calc", "url": str(remote), "default_branch": "main", **fields}


def result_of(sc: Sidecar, tid: str) -> TaskComplete | TaskFailed:
    return next(m for m in sc.link.sent if isinstance(m, TaskComplete | TaskFailed) and m.task_id == tid)


async def run_task(hub, sc: GitSidecar, command: str, co: dict[str, Any], **body: Any) -> tuple[str, dict[str, Any]]:
    async with sc.running():
        tid = await submit_shell(hub, command, metadata={"checkout": co}, max_retries=1, **body)
        await wait_tasks(hub, [tid], {"completed", "failed", "dead_letter"})
    return tid, await hub.task(tid)


async def test_a_task_fixes_a_failing_test_on_its_own_branch(hub, sidecar, tmp_path) -> None:
    """A shell task fixes the project: one commit on agentcom/<id> naming the task, the diff and stats in the
    result, and the repository's test command verified on the committed tree."""
    remote, _ = make_remote(tmp_path)
    base = run_git("rev-parse", "main", cwd=remote).strip()
    tid, task = await run_task(hub, sidecar, FIX, checkout(remote, test_command="python3 test_calc.py"))
    assert task["status"] == "completed" and task["outcome"] == "verified", task["result"].get("error")
    change = task["result"]["change"]
    assert (
        change["base_commit"] == base and change["branch"] == f"agentcom/{tid}" and change.get("rebased_onto") is None
    )
    assert change["files"] == [{"path": "calc.py", "added": 1, "removed": 1, "status": "modified"}]
    assert (change["added"], change["removed"]) == (1, 1)
    assert "-    return a - b\n+    return a + b" in change["diff"] and not change["diff_truncated"]
    assert change["git_ms"] > 0
    mirror = sidecar.mirror
    log = run_git("log", "--format=%H %ae %s%n%b", f"{base}..agentcom/{tid}", cwd=mirror)
    assert log.count(" sc-git@agentcom ") == 1 and change["commit"] in log and f"Task: {tid}" in log, log
    check = task["verification_report"]["checks"][-1]
    assert check["type"] == "command_succeeds" and check["target"] == "python3 test_calc.py"
    assert check["status"] == "pass" and "ok" in check["output"]
    workspace = sidecar.runner.workspaces.path_for(TaskAssign(task_id=tid, description="", generation=1,
                                                                assigned_at=0))  # fmt: skip
    assert run_git("-c", "safe.directory=*", "rev-parse", "HEAD", cwd=workspace).strip() == change["commit"]


async def test_a_task_that_changes_nothing_has_no_commit(hub, sidecar, tmp_path) -> None:
    """A task that changes nothing reports commit None and no files, and the failing test command fails it."""
    remote, _ = make_remote(tmp_path)
    tid, task = await run_task(hub, sidecar, "true", checkout(remote, test_command="python3 test_calc.py"))
    change = task["result"]["change"]
    assert change.get("commit") is None and change.get("files", []) == [] and change.get("diff", "") == ""
    assert task["verification_report"]["checks"][-1]["status"] == "fail"
    assert task["result"]["outcome"] == "failed"


async def test_a_stale_base_is_rebased_onto_the_moved_default_branch(hub, sidecar, tmp_path) -> None:
    """When main moved past the task's base, the change is replayed onto main's head and verified there."""
    remote, work = make_remote(tmp_path)
    base = run_git("rev-parse", "main", cwd=remote).strip()
    head = push_change(work, "NOTES", "upstream moved on\n", "upstream: notes")
    co = checkout(remote, base_commit=base, test_command="python3 test_calc.py && test -f NOTES")
    tid, task = await run_task(hub, sidecar, FIX, co)
    change = task["result"]["change"]
    assert task["outcome"] == "verified", task["verification_report"]
    assert change["base_commit"] == base and change["rebased_onto"] == head
    assert run_git("rev-parse", f"{change['commit']}^", cwd=sidecar.mirror).strip() == head
    assert [f["path"] for f in change["files"]] == ["calc.py"]
    assert f"Task: {tid}" in run_git("log", "-1", "--format=%B", change["commit"], cwd=sidecar.mirror)


async def test_a_conflicting_rebase_fails_the_task_with_merge_conflict(hub, sidecar, tmp_path) -> None:
    """When main changed the same lines since the base, the task fails with reason merge_conflict naming the file,
    and its branch keeps the unrebased commit."""
    remote, work = make_remote(tmp_path)
    base = run_git("rev-parse", "main", cwd=remote).strip()
    push_change(work, "calc.py", "def add(a, b):\n    return sum((a, b))\n", "upstream: add differently")
    tid, task = await run_task(hub, sidecar, FIX, checkout(remote, base_commit=base))
    failed = result_of(sidecar, tid)
    assert isinstance(failed, TaskFailed) and failed.reason == "merge_conflict", failed
    assert failed.result is not None and failed.result.change is not None
    assert failed.result.change.conflict == ["calc.py"] and failed.result.change.commit is not None
    assert "calc.py" in (failed.error or "")
    assert run_git("rev-parse", f"agentcom/{tid}^", cwd=sidecar.mirror).strip() == base
    assert task["status"] in ("failed", "dead_letter")


async def test_an_unreachable_repository_fails_the_task_with_repo_unreachable(hub, sidecar, tmp_path) -> None:
    """A repository that cannot be fetched fails the task with reason repo_unreachable before anything runs."""
    missing = tmp_path / "nowhere.git"
    tid, task = await run_task(hub, sidecar, "touch ran", checkout(missing))
    failed = result_of(sidecar, tid)
    assert isinstance(failed, TaskFailed) and failed.reason == "repo_unreachable", failed
    assert "nowhere.git" in (failed.error or "")
    assert not (sidecar.home / "mirrors" / "calc.git").exists()
    assert not any(m.type == "task_progress" and m.task_id == tid for m in sidecar.link.sent)


async def test_credentials_never_reach_the_sandbox_or_the_logs(hub, sidecar, tmp_path, caplog) -> None:
    """With an https token configured, a task's environment and every log record are free of it."""
    caplog.set_level(logging.DEBUG)
    sidecar.git_settings = GitSettings(https_token=SecretStr(TOKEN), ssh_key_path=tmp_path / "id_key")
    remote, _ = make_remote(tmp_path)
    command = "env > env.txt; ps -eo args > ps.txt; cat env.txt; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'"
    tid, task = await run_task(hub, sidecar, command, checkout(remote))
    assert task["status"] == "completed", task
    diff = task["result"]["change"]["diff"]
    assert "PATH=" in diff and "env.txt" in diff  # the environment really was captured and committed
    assert TOKEN not in diff and "AGENTCOM_GIT" not in diff and "id_key" not in diff
    assert TOKEN not in (task["result"]["output"] or "")
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]


async def test_a_large_diff_is_cut_and_binary_files_are_marked(hub, sidecar, tmp_path) -> None:
    """A diff longer than DIFF_CHARS is cut (diff_truncated) while the stats cover all of it; a binary file is
    listed as binary."""
    remote, _ = make_remote(tmp_path)
    command = "seq 1 40000 > big.txt; printf 'a\\000b' > blob.bin"
    _, task = await run_task(hub, sidecar, command, checkout(remote))
    change = task["result"]["change"]
    assert change["diff_truncated"] is True and len(change["diff"]) == DIFF_CHARS
    assert {f["path"]: f["status"] for f in change["files"]} == {"big.txt": "added", "blob.bin": "binary"}
    assert change["added"] == 40000 and change["removed"] == 0


class RecordingPublisher:
    """Stands in for the publication package at its seam: records each call, answers as a push would."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    async def __call__(
        self, repo_dir: Path, checkout: RepoCheckout, change: ChangeReport, *, task_id: str, summary_md: str
    ) -> ChangeReport:
        head = run_git("rev-parse", f"refs/heads/{change.branch}", cwd=repo_dir).strip()
        self.calls.append({"head": head, "checkout": checkout, "change": change, "task_id": task_id, "md": summary_md})
        if self.fail:
            raise ConnectionError("forge is down")
        return change.model_copy(update={"published": "pushed"})


async def test_a_verified_change_is_handed_to_the_publisher(hub, sidecar, tmp_path) -> None:
    """After verification passed, the publisher gets the bare mirror holding the branch at the commit, the
    checkout, the change and a summary; what it returns is the result's change."""
    sidecar.publisher = publisher = RecordingPublisher()
    remote, _ = make_remote(tmp_path)
    tid, task = await run_task(hub, sidecar, FIX, checkout(remote, test_command="python3 test_calc.py"))
    assert task["result"]["change"]["published"] == "pushed"
    [call] = publisher.calls
    assert call["task_id"] == tid and call["head"] == call["change"].commit == task["result"]["change"]["commit"]
    assert call["checkout"].name == "calc" and tid in call["md"] and "verified" in call["md"]


async def test_a_failing_publisher_does_not_fail_the_task(hub, sidecar, tmp_path) -> None:
    """A publisher that raises leaves the task completed and verified, its change marked published=failed."""
    sidecar.publisher = RecordingPublisher(fail=True)
    remote, _ = make_remote(tmp_path)
    _, task = await run_task(hub, sidecar, FIX, checkout(remote, test_command="python3 test_calc.py"))
    change = task["result"]["change"]
    assert task["status"] == "completed" and task["outcome"] == "verified"
    assert change["published"] == "failed" and "forge is down" in change["publish_error"]


async def test_an_unverified_change_is_not_published(hub, sidecar, tmp_path) -> None:
    """A change whose test command fails never reaches the publisher."""
    sidecar.publisher = publisher = RecordingPublisher()
    remote, _ = make_remote(tmp_path)
    _, task = await run_task(hub, sidecar, "echo more >> README", checkout(remote, test_command="python3 test_calc.py"))
    assert task["result"]["change"]["commit"] and task["result"]["outcome"] == "failed"
    assert publisher.calls == []


async def test_hooks_and_config_planted_by_a_task_never_run_outside_the_sandbox(hub, sidecar, tmp_path) -> None:
    """A task that plants git hooks and an upload-pack hook in its tree's .git gets its change recorded, and none
    of them ran with the sidecar's rights (they would have written a file only the sidecar can write)."""
    remote, _ = make_remote(tmp_path)
    mark = tmp_path / "ran-outside"
    hook = f"#!/bin/sh\\ntouch {mark}\\n"
    command = (
        f"for h in post-checkout reference-transaction post-merge pre-auto-gc; do printf '{hook}' > .git/hooks/$h;"
        f" chmod +x .git/hooks/$h; done; git config uploadpack.packObjectsHook 'touch {mark}'; echo x > new.txt"
    )
    _, task = await run_task(hub, sidecar, command, checkout(remote))
    assert task["status"] == "completed", task["result"].get("error")
    assert [f["path"] for f in task["result"]["change"]["files"]] == ["new.txt"]
    assert not mark.exists()
