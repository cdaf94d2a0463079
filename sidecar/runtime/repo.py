"""The runner's seam to repository work (``sidecar/git`` implements it; the runtime does not import it).

For a task with ``checkout``, the runner opens a :class:`RepoSession` before the executor (the workspace becomes the
task's tree), calls :meth:`RepoSession.finish` after a successful execution (commit, rebase; the change report) and
:meth:`RepoSession.publish` after verification passed. A :class:`RepoStop` ends the task with its ``task_failed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shared.payloads import VerificationReport
from shared.protocol import TaskAssign, TaskFailed
from shared.repos import ChangeReport


class RepoStop(Exception):
    """The repository stops the task (unreachable, conflict...): ``failure`` is what the hub is told."""

    def __init__(self, failure: TaskFailed) -> None:
        super().__init__(failure.error or failure.reason or "repository failure")
        self.failure = failure


class RepoSession(Protocol):
    task: TaskAssign
    """The task as the executor and the verification see it (the repository's test command added as a step)."""

    async def finish(self, workspace: Path) -> ChangeReport:
        """Record the work; the workspace then holds exactly the committed tree. Raises :class:`RepoStop`."""
        ...

    async def publish(self, change: ChangeReport, report: VerificationReport | None) -> ChangeReport:
        """Publish a verified change (when a publisher is wired); never raises."""
        ...


class RepoWork(Protocol):
    async def open(self, task: TaskAssign, workspace: Path) -> RepoSession:
        """Make ``workspace`` the task's tree. Raises :class:`RepoStop`."""
        ...

    async def ended(self, task: TaskAssign) -> None:
        """The task's attempt ended, its result recorded (housekeeping: the mirror's task branches). Never raises."""
        ...

    def abandoned(self, task: TaskAssign) -> None:
        """The task's attempt was stopped (an abort, the sidecar stopping): its branch is no longer in use."""
        ...


async def open_repo(repos: RepoWork | None, task: TaskAssign, workspace: Path) -> RepoSession | None:
    """The task's repository session, or None for a task without a repository (or a runner without git)."""
    return None if task.checkout is None or repos is None else await repos.open(task, workspace)


async def end_repo(repos: RepoWork | None, task: TaskAssign) -> None:
    """Tell the repository work that ``task``'s attempt ended (nothing for a task without a repository)."""
    if task.checkout is not None and repos is not None:
        await repos.ended(task)


def abandon_repo(repos: RepoWork | None, task: TaskAssign) -> None:
    """Tell the repository work that ``task``'s attempt was stopped before it ended (synchronous: it runs while the
    attempt is being cancelled)."""
    if task.checkout is not None and repos is not None:
        repos.abandoned(task)
