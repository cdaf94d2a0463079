"""Merge-aware scheduling: two tasks on one repository whose predicted files overlap never run at the same time.

A task's predicted files (:func:`predicted_files`) are, simply and explainably: the paths of its ``file_hints``;
for a task without hints, the files its own earlier attempts touched (the ``change`` they reported). A task with no
prediction conflicts with nothing. :class:`ConflictGate` is built for one scheduling round from the tasks in flight;
the scheduler asks it before matching a queued task and tells it each task it matched, so two queued tasks that
overlap are not both started in one round either. A task held back waits with reason ``file_conflict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hub.tasks import Task, WaitingReason, set_waiting

SHOWN_FILES = 5


def predicted_files(task: Task) -> frozenset[str]:
    """The files ``task`` is expected to touch (see the module docstring)."""
    hinted = {h["path"] for h in task.file_hints if isinstance(h.get("path"), str)}
    if hinted:
        return frozenset(hinted)
    change: Any = task.change or {}
    files = change.get("files") if isinstance(change, dict) else None
    if not isinstance(files, list):
        return frozenset()
    return frozenset(f["path"] for f in files[:5000] if isinstance(f, dict) and isinstance(f.get("path"), str))


def listed(names: list[str], shown: int = SHOWN_FILES) -> str:
    """``a, b, c (+4 more)``."""
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def conflict_reason(other_id: str, overlap: Iterable[str]) -> WaitingReason:
    files = sorted(overlap)
    shown = listed(files, SHOWN_FILES)
    return {"code": "file_conflict", "detail": f"file_conflict with {other_id}: both touch {shown}"[:1000]}


def first_conflict(
    task: Task, files: frozenset[str], running: Iterable[tuple[str, frozenset[str]]]
) -> tuple[str, frozenset[str]] | None:
    """The first running task (id, files) whose files overlap ``files``, with the overlap; None if none does."""
    if not files:
        return None
    for other_id, other_files in running:
        if other_id != task.id and (overlap := files & other_files):
            return other_id, overlap
    return None


class ConflictGate:
    """The files in flight per repository, for one round of :func:`hub.scheduler.plan`."""

    def __init__(self, in_flight: Iterable[Task], on_wait: Callable[[Task], None]) -> None:
        self._running: dict[str, list[tuple[str, frozenset[str]]]] = {}
        self._on_wait = on_wait
        for task in in_flight:
            self.started(task)

    def blocked(self, task: Task) -> bool:
        """True when ``task`` would touch files a task in flight on its repository touches (it then says so)."""
        if task.repo is None:
            return False
        found = first_conflict(task, predicted_files(task), self._running.get(task.repo, ()))
        if found is None:
            if task.waiting_reason is not None and task.waiting_reason.get("code") == "file_conflict":
                set_waiting(task, None)
                self._on_wait(task)
            return False
        if set_waiting(task, conflict_reason(*found)):
            self._on_wait(task)
        return True

    def started(self, task: Task) -> None:
        if task.repo is not None and (files := predicted_files(task)):
            self._running.setdefault(task.repo, []).append((task.id, files))
