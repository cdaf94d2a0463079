"""The loop that drives goals when nothing else does: woken by a submit and by the end of a goal's task (read from
the lossless lifecycle feed), it works until there is nothing left to do, then sleeps; it never polls."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hub import lifecycle as L

if TYPE_CHECKING:
    from hub.hub import Hub

ENDINGS = (L.TaskEnded, L.TaskDeadLettered, L.TaskCancelled)


async def _watch_tasks(hub: Hub) -> None:
    """Wake the goals when a task of a goal ends (completed, dead-lettered or cancelled)."""
    feed = hub.queue.feed
    async with feed.subscribe_lossless("goals", from_seq=feed.delivered_seq) as events:
        async for event in events:
            if isinstance(event, ENDINGS) and (not isinstance(event, L.TaskEnded) or event.then != "retried"):
                task = hub.queue.tasks.get(event.task_id)
                if task is not None and task.goal_id is not None:
                    hub.goals.wake()


async def run_goals(hub: Hub) -> None:
    """Advance goals whenever there is work; sleep until woken (or a model retry falls due) when there is none."""
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_watch_tasks(hub))
        while True:
            while await hub.goals.advance_one():
                pass
            await hub.goals.wait_for_work()
