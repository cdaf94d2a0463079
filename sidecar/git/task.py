"""The git side of one task, behind the runner's seam (:mod:`sidecar.runtime.repo`): :meth:`GitWork.open` before
the executor (mirror fetch, the task's tree), :meth:`GitSession.finish` after it (commit, import into the mirror,
rebase onto a moved default branch, a fresh tree at the commit for verification), :meth:`GitSession.publish` after
verification. Failures become :class:`~sidecar.runtime.repo.RepoStop` with the task's failure reason.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from shared.payloads import TaskResult, VerificationReport
from shared.protocol import TaskAssign, TaskFailed
from shared.repos import ChangeReport, RepoCheckout
from sidecar.git.commit import CommitFailed, commit_in_sandbox, describe_change, import_head
from sidecar.git.mirror import Mirrors, RepoUnreachable, default_head, resolve_base
from sidecar.git.prune import Sweep, sweep_mirror
from sidecar.git.publisher import Publisher, publish_safely
from sidecar.git.rebase import rebase_onto
from sidecar.git.run import GitError, GitTimer, git
from sidecar.git.worktree import BadBranch, fresh_tree
from sidecar.runtime.repo import RepoStop
from sidecar.sandbox.base import Sandbox

logger = logging.getLogger(__name__)


class TaskGitFailure(Exception):
    """The task cannot go on: ``reason`` is its failure reason (``repo_unreachable``, ``merge_conflict``...)."""

    def __init__(self, reason: str, error: str, change: ChangeReport | None = None) -> None:
        super().__init__(error)
        self.reason, self.error, self.change = reason, error, change


@dataclass
class Prepared:
    checkout: RepoCheckout
    mirror: Path
    base: str
    timer: GitTimer = field(default_factory=GitTimer)


class GitWork:
    """Mirrors and task trees of this sidecar (the runner's :class:`~sidecar.runtime.repo.RepoWork`).

    Args:
        publisher: Publishes verified changes; None keeps them in the mirror, on their branch.
    """

    def __init__(self, mirrors: Mirrors, sandbox: Sandbox, agent_id: str, publisher: Publisher | None = None) -> None:
        self.mirrors, self.sandbox, self.agent_id, self.publisher = mirrors, sandbox, agent_id, publisher
        self._merged: dict[str, str] = {}
        """Task id -> the commit its publication merged into the default branch, until the task ended."""
        self.swept = 0
        """Sweeps of task branches run after tasks (:meth:`ended`)."""
        self.last_sweep: Sweep | None = None

    def __repr__(self) -> str:
        return f"<GitWork {self.mirrors!r} publisher={self.publisher is not None}>"

    @property
    def hardlinks(self) -> bool:
        """Share the mirror's object files with the trees only when the sandbox runs commands as another uid (the
        sidecar is root): a command running as the mirror's owner could change a hard-linked file in place."""
        return self.mirrors.settings.hardlinks and os.geteuid() == 0

    async def open(self, task: TaskAssign, workspace: Path) -> GitSession:
        """Prepare the task's tree in ``workspace``; raises RepoStop when it cannot."""
        try:
            prepared = await self.prepare(task, workspace)
        except TaskGitFailure as exc:
            raise RepoStop(git_failed(task, exc)) from None
        return GitSession(self, task, prepared)

    async def prepare(self, task: TaskAssign, workspace: Path) -> Prepared:
        """Fetch the mirror and make ``workspace`` the task's tree at its base, on its branch."""
        checkout = task.checkout
        assert checkout is not None
        timer = GitTimer()
        self.mirrors.hold(checkout.name, checkout.branch)  # until ended(): no sweep deletes the task's branch
        try:
            async with self.mirrors.lock(checkout.name):
                mirror = await self.mirrors.sync(checkout, timer)
                base = await resolve_base(mirror, checkout, timer)
            await fresh_tree(mirror, workspace, checkout.branch, base, hardlinks=self.hardlinks, timer=timer)
        except RepoUnreachable as exc:
            raise TaskGitFailure("repo_unreachable", str(exc)) from None
        except BadBranch as exc:
            raise TaskGitFailure("bad_checkout", str(exc)) from None
        except GitError as exc:
            raise TaskGitFailure("git_error", f"preparing the task's tree: {exc}") from None
        logger.info("task %s: tree of %s at %s on %s", task.task_id, checkout.name, base[:12], checkout.branch)
        return Prepared(checkout, mirror, base, timer)

    async def finish(self, task: TaskAssign, workspace: Path, prepared: Prepared) -> ChangeReport:
        """Commit the work, import it, rebase it when the default branch moved; returns the change report."""
        checkout, mirror, base, timer = prepared.checkout, prepared.mirror, prepared.base, prepared.timer
        try:
            await commit_in_sandbox(
                self.sandbox,
                workspace,
                task_id=task.task_id,
                description=task.description,
                agent_id=self.agent_id,
                timer=timer,
            )
            async with self.mirrors.lock(checkout.name):
                commit = await import_head(mirror, workspace, checkout.branch, timer)
                if commit != base:
                    ancestor = await git(["merge-base", "--is-ancestor", base, commit], cwd=mirror, check=False)
                    if ancestor.returncode != 0:
                        raise TaskGitFailure("branch_rewritten", f"the task's branch no longer contains {base[:12]}")
                change = await self._rebased(task, prepared, commit)
            if change.commit is not None:
                await fresh_tree(
                    mirror, workspace, checkout.branch, change.commit, hardlinks=self.hardlinks, timer=timer
                )
        except CommitFailed as exc:
            raise TaskGitFailure("git_error", str(exc)) from None
        except GitError as exc:
            raise TaskGitFailure("git_error", f"recording the task's change: {exc}") from None
        return change.model_copy(update={"git_ms": timer.ms})

    def abandoned(self, task: TaskAssign) -> None:
        """The task's attempt was stopped: its branch is free (the next sweep may take it); nothing was merged."""
        if task.checkout is not None:
            self.mirrors.release(task.checkout.name, task.checkout.branch)
            self._merged.pop(task.task_id, None)

    async def ended(self, task: TaskAssign) -> None:
        """The task's attempt ended: its branch is free, and its mirror's task branches are swept. Never raises."""
        checkout = task.checkout
        if checkout is None:
            return
        self.mirrors.release(checkout.name, checkout.branch)
        merged = self._merged.pop(task.task_id, None)
        mirror = self.mirrors.path(checkout.name)
        try:
            if (mirror / "HEAD").exists():  # no mirror when the repository was never reached
                self.last_sweep = await sweep_mirror(self.mirrors, mirror, merged_into=[merged] if merged else ())
        except Exception:  # the sweep is housekeeping: it must not take the task's result down with it
            logger.exception("task %s: sweeping the task branches of %s failed", task.task_id, mirror.name)
        self.swept += 1

    async def _rebased(self, task: TaskAssign, prepared: Prepared, commit: str) -> ChangeReport:
        checkout, mirror, base, timer = prepared.checkout, prepared.mirror, prepared.base, prepared.timer
        if commit == base:
            return await describe_change(mirror, checkout, base, commit, timer)
        try:
            await self.mirrors.sync(checkout, timer)
        except RepoUnreachable as exc:  # keep the work: it is reported on its own base
            logger.warning("task %s: could not fetch before the rebase check: %s", task.task_id, exc)
            return await describe_change(mirror, checkout, base, commit, timer)
        head = await default_head(mirror, checkout, timer)
        result = await rebase_onto(mirror, checkout.branch, commit, head, timer)
        if result.conflict:
            change = await describe_change(mirror, checkout, base, commit, timer)
            change = change.model_copy(update={"conflict": result.conflict[:1000], "git_ms": timer.ms})
            files = ", ".join(result.conflict[:20])
            raise TaskGitFailure(
                "merge_conflict", f"{checkout.default_branch} moved on and conflicts in: {files}", change
            )
        change = await describe_change(mirror, checkout, result.onto or base, result.commit, timer)
        return change.model_copy(update={"base_commit": base, "rebased_onto": result.onto})


def with_test_command(task: TaskAssign) -> TaskAssign:
    """``task`` with its repository's test command added as a ``command_succeeds`` verification step."""
    command = task.checkout.test_command if task.checkout is not None else None
    if not command:
        return task
    step = {"type": "command_succeeds", "target": command, "description": f"test command: {command}"[:500]}
    return task.model_copy(update={"verification_steps": [*task.verification_steps, step]})


def git_failed(task: TaskAssign, failure: TaskGitFailure) -> TaskFailed:
    """The ``task_failed`` of a task stopped by its repository (with the change report when there is one)."""
    result = TaskResult(
        status="failed",
        outcome="failed",
        verification_status="failed",
        reason=failure.reason,
        error=failure.error[:2000],
        change=failure.change,
    )
    return TaskFailed(
        type="task_failed",
        task_id=task.task_id,
        generation=task.generation,
        reason=failure.reason,
        error=failure.error[:2000],
        result=result,
    )


class GitSession:
    """One task's repository work (the runner's :class:`~sidecar.runtime.repo.RepoSession`)."""

    def __init__(self, work: GitWork, task: TaskAssign, prepared: Prepared) -> None:
        self.work, self.original, self.prepared = work, task, prepared
        self.task = with_test_command(task)

    async def finish(self, workspace: Path) -> ChangeReport:
        """Commit, import and rebase the work; raises RepoStop on a conflict or a git failure."""
        try:
            return await self.work.finish(self.original, workspace, self.prepared)
        except TaskGitFailure as exc:
            raise RepoStop(git_failed(self.original, exc)) from None

    async def publish(self, change: ChangeReport, report: VerificationReport | None) -> ChangeReport:
        """Hand a verified change to the publisher, if one is wired."""
        change = await publish_safely(
            self.work.publisher, self.prepared.mirror, self.prepared.checkout, change, self.original, report
        )
        if change.published == "merged" and change.commit is not None:  # its branch goes at the task's end
            self.work._merged[self.original.task_id] = change.commit
        return change
