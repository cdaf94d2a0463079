"""Before verification and publication: bring a task's commit up to date with the default branch.

After a fresh fetch, if the default branch moved past the task's base, the change is replayed on its new head in
the mirror (``git merge-tree --write-tree`` then ``commit-tree``: no work tree, no hooks, the sidecar's own config).
The branch then holds one commit on the new head, with the original message. When the replay conflicts nothing is
changed and the conflicting files are returned; the task fails with reason ``merge_conflict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sidecar.git.run import GitError, GitTimer, git


@dataclass(frozen=True)
class RebaseResult:
    commit: str
    """The branch's commit afterwards (unchanged when up to date or in conflict)."""
    onto: str | None = None
    """The new base when the change was replayed."""
    conflict: list[str] = field(default_factory=list)


async def rebase_onto(mirror: Path, branch: str, commit: str, head: str, timer: GitTimer | None = None) -> RebaseResult:
    """Replay ``commit`` (on ``refs/heads/<branch>``) onto ``head`` unless ``head`` is already in its history."""
    ancestor = await git(["merge-base", "--is-ancestor", head, commit], cwd=mirror, check=False, timer=timer)
    if ancestor.returncode == 0:
        return RebaseResult(commit=commit)
    if ancestor.returncode != 1:
        raise GitError(ancestor)
    merged = await git(
        ["merge-tree", "--write-tree", "--name-only", "--no-messages", head, commit],
        cwd=mirror,
        check=False,
        timer=timer,
    )
    lines = merged.stdout.splitlines()
    if merged.returncode == 1:
        return RebaseResult(commit=commit, conflict=sorted({line for line in lines[1:] if line}))
    if not merged.ok or not lines:
        raise GitError(merged)
    tree = lines[0].strip()
    info = await git(["log", "-1", "--format=%an%x00%ae%x00%ad%x00%B", commit], cwd=mirror, timer=timer)
    name, email, date, message = info.stdout.split("\0", 3)
    author = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
    author |= {"GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
    new = await git(["commit-tree", tree, "-p", head, "-m", message.rstrip("\n")], cwd=mirror, env=author, timer=timer)
    rebased = new.stdout.strip()
    await git(["update-ref", f"refs/heads/{branch}", rebased, commit], cwd=mirror, timer=timer)
    return RebaseResult(commit=rebased, onto=head)
