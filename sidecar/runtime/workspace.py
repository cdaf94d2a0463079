"""Task workspaces: one directory per task attempt under ``workspace_root``, pruned by the cleanup policy.

A directory is named ``<task id>-g<generation>``: a retried attempt starts clean, while a re-run of the same attempt
(recovery after a restart) finds its own earlier files.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from shared.protocol import TaskAssign
from sidecar.settings import WorkspaceSettings

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def workspace_name(task_id: str, generation: int) -> str:
    """A directory name for one attempt that is safe whatever the task id contains."""
    safe = _UNSAFE.sub("_", task_id)[:100].lstrip(".") or "task"
    return f"{safe}-g{generation}"


class Workspaces:
    """Makes and prunes task directories."""

    def __init__(self, root: Path, policy: WorkspaceSettings) -> None:
        self.root = root
        self.policy = policy
        self.removed = 0

    def __repr__(self) -> str:
        return f"<Workspaces root={self.root} cleanup={self.policy.cleanup} removed={self.removed}>"

    def path_for(self, task: TaskAssign) -> Path:
        """The directory of ``task``'s current attempt (not created)."""
        return self.root / workspace_name(task.task_id, task.generation)

    def create(self, task: TaskAssign) -> Path:
        """Create (or reuse) the directory of ``task``'s current attempt and return its resolved path."""
        path = self.path_for(task)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path.resolve()

    def finished(self, workspace: Path, *, succeeded: bool, keep: frozenset[Path] = frozenset()) -> list[Path]:
        """Apply the cleanup policy after a task ended; returns the directories removed.

        Args:
            workspace: The directory of the attempt that just ended.
            succeeded: Whether it ended in success (``on_success`` removes it at once).
            keep: Directories in use that must survive (the active task's).
        """
        if self.policy.cleanup == "never":
            return []
        _touch(workspace)  # "newest" means most recently finished
        doomed: list[Path] = []
        if self.policy.cleanup == "on_success" and succeeded:
            doomed.append(workspace)
        survivors = [path for path in self._dirs() if path not in doomed]
        survivors.sort(key=_mtime, reverse=True)
        doomed += survivors[self.policy.keep_last_n :]
        keep = frozenset(path.resolve() for path in keep)
        removed = [path for path in doomed if path.resolve() not in keep and _remove(path)]
        self.removed += len(removed)
        return removed

    def _dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [path.resolve() for path in self.root.iterdir() if path.is_dir() and not path.is_symlink()]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _remove(path: Path) -> bool:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        logger.warning("could not remove workspace %s: %s", path, exc)
        return False
    return True
