"""The seam to publication (push, pull request, fast-forward merge): called by the runner for a verified change.

The publication itself lives in ``sidecar/git/publish.py``; the sidecar's wiring hands the runner
:func:`wired_publisher` (the forge and credentials of its settings). Without one a change stays in the mirror, on
its branch. A publisher that raises does not fail the task: the report says ``published="failed"``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from shared.payloads import VerificationReport
from shared.protocol import TaskAssign
from shared.repos import ChangeReport, RepoCheckout
from sidecar.git.credentials import credential_env
from sidecar.git.forge import Forge, GitHubForge
from sidecar.git.publish import publish
from sidecar.settings import GitSettings

logger = logging.getLogger(__name__)


class Publisher(Protocol):
    async def __call__(
        self, repo_dir: Path, checkout: RepoCheckout, change: ChangeReport, *, task_id: str, summary_md: str
    ) -> ChangeReport:
        """Publish ``change`` (its branch is ``refs/heads/<change.branch>`` in the bare mirror ``repo_dir``)."""
        ...


def summary_markdown(task: TaskAssign, change: ChangeReport, report: VerificationReport | None) -> str:
    """The pull request's body: the task, the change's stats and the verification checks."""
    lines = [f"**Task** `{task.task_id}`", "", task.description.strip()[:4000], ""]
    lines.append(f"**Change**: {len(change.files)} file(s), +{change.added} -{change.removed}")
    if report is not None:
        lines += ["", f"**Verification**: {report.verdict()}"]
        lines += [f"- {check.status}: {check.name}" for check in report.checks]
    return "\n".join(lines)


async def publish_safely(
    publisher: Publisher | None,
    mirror: Path,
    checkout: RepoCheckout,
    change: ChangeReport,
    task: TaskAssign,
    report: VerificationReport | None,
) -> ChangeReport:
    """Publish a verified change when a publisher is wired and the repository wants it; never raises."""
    if publisher is None or change.commit is None or checkout.publish == "none":
        return change
    try:
        return await publisher(
            mirror,
            checkout,
            change,
            task_id=task.task_id,
            summary_md=summary_markdown(task, change, report),
        )
    except Exception as exc:
        logger.exception("task %s: publication failed", task.task_id)
        return change.model_copy(update={"published": "failed", "publish_error": f"{type(exc).__name__}: {exc}"[:2000]})


def wired_publisher(settings: GitSettings, mirror_root: Path) -> Publisher:
    """The sidecar's publisher: :func:`sidecar.git.publish.publish` with the forge and the git credentials of
    ``settings``. It is called for verified changes only (see :class:`~sidecar.git.task.GitWork`)."""

    async def publish_change(
        repo_dir: Path, checkout: RepoCheckout, change: ChangeReport, *, task_id: str, summary_md: str
    ) -> ChangeReport:
        forge: Forge | None = None
        if checkout.forge == "github" and settings.forge_token is not None:
            forge = GitHubForge(settings.forge_token.get_secret_value(), base_url=settings.forge_url)
        return await publish(
            repo_dir, checkout, change, "verified", task_id=task_id, summary_md=summary_md, forge=forge,
            git_env=credential_env(settings, mirror_root),
        )  # fmt: skip

    return publish_change
