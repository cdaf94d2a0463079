"""A task's tree: a local clone of the mirror in the task's workspace, checked out at the base on the task's branch.

Why a clone and not ``git worktree add``: a worktree's git data (index, HEAD, config) lives in the mirror, which the
sandbox must then be able to write; a clone keeps all of it inside the workspace, the only place the sandbox may
write, and the mirror stays out of the sandbox's reach. With ``hardlinks`` the clone shares the mirror's (read-only)
object files, so it costs about what a worktree costs (``bench/bench_git.py``); the sandbox runs commands as another
uid, which cannot write them. Two tasks never share a tree: each has its own workspace directory.

The tree's own ``.git`` is written by the sandboxed commands, so the sidecar never runs git in it with its own
rights after the sandbox ran (a crafted config or hook would run outside the sandbox); it only fetches from it
(``upload-pack`` reads no such config) and, after a commit, replaces the tree with a fresh clone
(:func:`fresh_tree`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sidecar.git.run import GitTimer, git


class BadBranch(Exception):
    """The branch name is not a valid git branch name."""


async def check_branch(branch: str) -> None:
    """Raise :class:`BadBranch` unless ``branch`` is a valid branch name."""
    result = await git(["check-ref-format", "--branch", branch], check=False)
    if not result.ok or branch.startswith("-"):
        raise BadBranch(f"invalid branch name {branch!r}")


def empty_dir(path: Path) -> None:
    """Remove everything inside ``path`` (a task directory being reused), keeping the directory."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_uid != os.geteuid():  # a sandboxed uid had it: git would not trust a tree it owns
        os.chown(path, os.geteuid(), os.getegid(), follow_symlinks=False)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


async def fresh_tree(
    mirror: Path, workspace: Path, branch: str, commit: str, *, hardlinks: bool = True, timer: GitTimer | None = None
) -> None:
    """Make ``workspace`` a clean clone of ``mirror`` with ``branch`` checked out at ``commit``.

    Raises:
        GitError: a git command failed.
    """
    await check_branch(branch)
    empty_dir(workspace)
    links = [] if hardlinks else ["--no-hardlinks"]
    await git(["clone", "--quiet", "--local", "--no-checkout", *links, "--", str(mirror), str(workspace)], timer=timer)
    await git(["checkout", "--quiet", "-B", branch, commit], cwd=workspace, timer=timer)
