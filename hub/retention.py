"""Retention: finished tasks are kept by number and age, then pruned from memory and disk.

:func:`due_for_pruning` is the decision (pure, over one status's tasks oldest first); :func:`run_retention` applies
it on a steady cadence through :meth:`TaskQueue.prune`, which never drops a task that a task still able to run
depends on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.settings import HubSettings
from hub.tasks import Task, TaskStatus

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    max_kept: dict[TaskStatus, int]
    """Finished tasks kept per status."""
    max_age_ms: int
    batch: int

    @classmethod
    def from_settings(cls, settings: HubSettings) -> RetentionPolicy:
        return cls(
            max_kept={
                TaskStatus.COMPLETED: settings.retention_completed_max,
                TaskStatus.DEAD_LETTER: settings.retention_dead_letter_max,
                TaskStatus.CANCELLED: settings.retention_cancelled_max,
            },
            max_age_ms=int(settings.retention_max_age_s * 1000),
            batch=settings.retention_batch,
        )


def due_for_pruning(
    oldest_first: Iterable[Task], held: int, max_kept: int, cutoff_ms: int, kept: Callable[[Task], bool], limit: int
) -> list[Task]:
    """The tasks to prune among ``held`` tasks of one status, given oldest first: those beyond ``max_kept`` and
    those last changed before ``cutoff_ms``, except those ``kept`` says must stay (they still count as held).

    Stops at the first task that is neither (every later one is newer) or once ``limit`` are chosen.
    """
    out: list[Task] = []
    excess = held - max_kept
    for task in oldest_first:
        if len(out) >= limit or (excess <= 0 and task.updated_at >= cutoff_ms):
            break
        if kept(task):
            continue
        out.append(task)
        excess -= 1
    return out


async def prune_once(hub: Hub, policy: RetentionPolicy) -> int:
    """Prune everything the policy allows, one batch per commit; returns how many tasks were pruned."""
    queue = hub.queue
    total = 0
    for status, max_kept in policy.max_kept.items():
        while True:
            cutoff = hub.clock.now_ms() - policy.max_age_ms
            doomed = due_for_pruning(
                queue.oldest(status), queue.count(status), max_kept, cutoff, queue.depended_on, policy.batch
            )
            if not doomed:
                break
            pruned = await queue.prune(doomed)
            total += pruned
            if pruned == 0:
                break  # all changed meanwhile; look again next time
    return total


async def run_retention(hub: Hub) -> None:
    """Prune at start and then every ``retention_interval_s`` forever (owned by the hub's TaskGroup)."""
    policy = RetentionPolicy.from_settings(hub.settings)
    while True:
        pruned = await prune_once(hub, policy)
        if pruned:
            logger.info("retention pruned %d finished tasks (%d stored)", pruned, len(hub.queue.tasks))
        await asyncio.sleep(hub.settings.retention_interval_s)
