"""A task that failed with ``merge_conflict`` becomes a visible follow-up task, never a silent failure.

When an attempt ends with reason ``merge_conflict`` (the sidecar could not rebase the task's change onto the moved
head of its repository; ``result.change.conflict`` lists the files), the hub queues one follow-up task: "Resolve
merge conflict of <task> in <files>", on the same repository, at high priority, with the files as ``file_hints``
(so merge-aware scheduling keeps it apart from tasks touching them) and ``metadata.follow_up_of`` naming the task.
The original shows its follow-ups under ``follow_ups`` in ``GET /api/tasks/{id}``.

Exactly one follow-up per task, whatever its retries and the hub's restarts: the follow-ups are found again at start
from their own ``metadata.follow_up_of``, and the listener (lossless, hub/listeners.py) keeps its cursor in a record
(kind ``repo_followups``), so an event committed just before a crash is handled after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from hub.tasks import Task

logger = logging.getLogger(__name__)

KIND = "repo_followups"
CURSOR_KEY = "cursor"
SAVE_EVERY = 1000
"""Events read between two saves of the cursor when none needed a follow-up (a restart rereads at most these)."""
SHOWN_FILES = 10


class FollowUps:
    """Original task id -> its follow-up's id, rebuilt at start from the follow-ups' ``metadata.follow_up_of``."""

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self.of: dict[str, str] = {}
        for task in tasks:
            original = task.metadata.get("follow_up_of")
            if isinstance(original, str):
                self.of.setdefault(original, task.id)
        self.n_created = 0
        self.seq = 0
        """The ``seq`` of the last lifecycle event the follow-up loop has handled."""
        self._moved: asyncio.Condition | None = None

    async def handled(self, seq: int) -> None:
        """The loop has handled every event up to ``seq``."""
        self.seq = seq
        if self._moved is not None:
            async with self._moved:
                self._moved.notify_all()

    async def wait_handled(self, seq: int) -> None:
        """Wait until the loop has handled the event ``seq`` (for tests and tools; bound it with a timeout)."""
        self._moved = self._moved or asyncio.Condition()
        async with self._moved:
            await self._moved.wait_for(lambda: self.seq >= seq)

    def links(self, task: Task) -> dict[str, Any]:
        """The fields linking ``task`` to its follow-up (or to the task it follows up), for the API."""
        out: dict[str, Any] = {}
        if (follow_up := self.of.get(task.id)) is not None:
            out["follow_ups"] = [follow_up]
        if isinstance(original := task.metadata.get("follow_up_of"), str):
            out["follow_up_of"] = original
        return out


def conflict_files(task: Task) -> list[str]:
    change = task.change if isinstance(task.change, dict) else {}
    files = change.get("conflict")
    return [f for f in files[:1000] if isinstance(f, str)] if isinstance(files, list) else []
