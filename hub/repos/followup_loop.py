"""The loop that turns merge-conflict failures into follow-up tasks (see :mod:`hub.repos.followups`)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from hub import lifecycle as L
from hub.repos.conflicts import listed
from hub.repos.followups import CURSOR_KEY, KIND, SAVE_EVERY, SHOWN_FILES, conflict_files
from hub.store import PutRecord, RecordRow
from hub.task_submit import TaskSubmit
from hub.tasks import EndReason, Priority, Task

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)


def follow_up_of(task: Task, now_ms: int) -> Task:
    """The follow-up task for ``task``, which failed with a merge conflict."""
    files = conflict_files(task)
    shown = listed(files, SHOWN_FILES)
    body = TaskSubmit.model_validate(
        {
            "description": (
                f"Resolve merge conflict of {task.id} in {shown or 'its files'}: its change could not be rebased onto "
                f"the current head of {task.repo}. Original task: {task.description}"
            )[:10_000],
            "priority": int(Priority.HIGH),
            "repo": task.repo,
            "file_hints": [{"path": f[:1024], "reason": "in conflict"} for f in files[:100] if f],
            "metadata": {"follow_up_of": task.id, "conflict_files": files[:100]},
            **({"executor": task.executor} if task.executor else {}),
            **({"goal_id": task.goal_id} if task.goal_id else {}),
        }
    )
    return body.to_task("hub", now_ms)


async def handle(hub: Hub, event: L.LifecycleEvent) -> bool:
    """Queue the follow-up of a task whose attempt ended in a merge conflict; True when one was queued."""
    if not isinstance(event, L.TaskEnded) or event.reason != EndReason.MERGE_CONFLICT:
        return False
    index = hub.repos.followups
    if event.task_id in index.of:
        return False  # one follow-up per task: its retries and a restart's replay do not make another
    task = hub.queue.tasks.get(event.task_id)
    if task is None or task.repo is None:
        return False
    follow_up = follow_up_of(task, hub.clock.now_ms())
    index.of[task.id] = follow_up.id  # before the await: nothing else can make a second one meanwhile
    await hub.queue.submit(follow_up)
    index.n_created += 1
    hub.fleet.scheduler.wake()
    logger.info("task %s failed in a merge conflict; follow-up %s queued", task.id, follow_up.id)
    return True


async def run_followups(hub: Hub) -> None:
    """Follow every lifecycle event, from the saved cursor on (owned by the hub's TaskGroup)."""
    rows = await hub.store.load_records(KIND)
    saved = next((json.loads(r.body).get("seq", 0) for r in rows if r.key == CURSOR_KEY), 0)
    unsaved = 0
    async with hub.queue.feed.subscribe_lossless("repo-followups", from_seq=saved) as events:
        async for event in events:
            made = await handle(hub, event)
            await hub.repos.followups.handled(event.seq)
            unsaved += 1
            if made or unsaved >= SAVE_EVERY:
                body = json.dumps({"seq": events.cursor})
                await hub.store.write([PutRecord(RecordRow(KIND, CURSOR_KEY, hub.clock.now_ms(), body))])
                unsaved = 0
