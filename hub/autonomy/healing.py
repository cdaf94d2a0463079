"""Healing: actions that repair what made the hub heal, each written to the audit journal (kind ``healing``,
``{action, target, result, ts}``).

In order: stuck work is ended through the queue's own reclaim (it is requeued, or dead-lettered once its attempts are
spent, exactly as any ended attempt); when every model endpoint is down they are probed again with backoff and, if
none recovers, routing switches to the fallback; a broken main becomes an urgent fix goal.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from hub.autonomy.signals import endpoint_health, reprobe_endpoint, stuck_tasks, submit_goal
from hub.tasks import EndReason, TransitionError

if TYPE_CHECKING:
    from hub.autonomy.runtime import Runtime

logger = logging.getLogger(__name__)


async def requeue_stuck(auto: Runtime) -> int:
    hub = auto.hub
    acted = 0
    for task in stuck_tasks(hub.queue.in_flight(), hub.clock.now_ms(), hub.settings.autonomy_stuck_after_s):
        agent_id = task.assigned_to
        try:
            status = await hub.queue.reclaim(task.id, EndReason.STUCK, "healing: stuck", generation=task.generation)
        except TransitionError as exc:  # a report arrived meanwhile: nothing to do
            await auto.journal_healing("requeue", task.id, f"skipped: {exc}")
            continue
        await hub.fleet.cancel_on_agent(agent_id, task.id)
        await auto.journal_healing("dead_letter" if status == "dead_letter" else "requeue", task.id, status)
        acted += 1
    if acted:
        hub.fleet.scheduler.wake()
    return acted


FALLBACK_TARGET = "claude"


def set_fallback(auto: Runtime, on: bool) -> None:
    """Route to the fallback target first (every local endpoint is down) or back to each task's own chain."""
    auto.routing_fallback = on
    auto.hub.fleet.scheduler.prefer_target = FALLBACK_TARGET if on else None
    if on:
        auto.hub.fleet.scheduler.wake()


async def recover_endpoints(auto: Runtime) -> None:
    health = endpoint_health(auto.hub)
    if not health or any(health.values()):
        return
    for wait_s in (0.0, *auto.hub.settings.autonomy_reprobe_backoff_s):
        await asyncio.sleep(wait_s)
        for name in sorted(health):
            if await reprobe_endpoint(auto.hub, name):
                set_fallback(auto, False)
                await auto.journal_healing("reprobe", name, "recovered")
                return
    set_fallback(auto, True)
    await auto.journal_healing("routing_fallback", "endpoints", f"none of {len(health)} recovered; fallback on")


async def fix_broken_main(auto: Runtime) -> None:
    for name, why in sorted(auto.broken_main.items()):
        if name in auto.broken_handled:
            continue
        result = await submit_goal(auto.hub, f"Fix main of {name}: {why}", name, "urgent", "healing")
        auto.broken_handled.add(name)
        await auto.journal_healing("fix_goal", name, result)


async def run_cycle(auto: Runtime) -> None:
    await requeue_stuck(auto)
    await recover_endpoints(auto)
    await fix_broken_main(auto)
