"""The seam to publication (push, pull request, fast-forward merge): called by the runner for a verified change.

The publication itself lives in ``sidecar/git/publish.py``; the sidecar's wiring hands the runner a
:class:`Publisher` (e.g. ``functools.partial(publish, settings=settings)``). Without one a change stays in the
mirror, on its branch. A publisher that raises does not fail the task: the report says ``published="failed"``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from shared.payloads import VerificationReport
from shared.protocol import TaskAssign
from shared.repos import ChangeReport, RepoCheckout

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
