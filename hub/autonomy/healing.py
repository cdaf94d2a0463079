"""Healing: actions that repair what made the hub heal, each written to the audit journal (kind ``healing``,
``{action, target, result, ts}``).

In order: stuck work is ended through the queue's own reclaim (it is requeued, or dead-lettered once its attempts are
spent, exactly as any ended attempt); when every model endpoint is down they are probed again with backoff and, if
none recovers, routing switches to the fallback; a broken main becomes an urgent fix goal, unless an open goal's
result decides it, its main moved since (then it is scanned again), or a verified fix awaits review in a pull request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from hub.autonomy.improving import head_of
from hub.autonomy.signals import (
    endpoint_health,
    repos_being_fixed,
    reprobe_endpoint,
    scan_targets,
    stuck_tasks,
    submit_goal,
)
from hub.tasks import EndReason, TaskStatus, TransitionError

if TYPE_CHECKING:
    from hub.autonomy.runtime import Runtime
    from hub.hub import Hub

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


def fix_awaiting_review(hub: Hub, repo: str, since_ms: int, scan_last: int = 1000) -> str | None:
    """The pull request of a verified change to ``repo`` published since ``since_ms``: a fix a person has yet to
    merge (a second one would only duplicate it)."""
    for task in hub.queue.latest(TaskStatus.COMPLETED, scan_last):
        if task.repo != repo or task.outcome != "verified" or (task.completed_at or 0) < since_ms:
            continue
        change = task.result.get("change") if isinstance(task.result, dict) else None
        if isinstance(change, dict) and change.get("published") == "pull_request":
            return str(change.get("pr_url") or change.get("branch") or task.id)
    return None


async def main_moved(auto: Runtime, name: str) -> bool:
    """Whether the HEAD of scan target ``name`` is no longer the one its last scan saw."""
    target = next((t for t in scan_targets(auto.hub) if t.name == name), None)
    if target is None:
        return False
    head = await head_of(target, auto.hub.settings.autonomy_scan_timeout_s)
    return head is not None and head != auto.scanned.get(name, {}).get("head")


async def fix_broken_main(auto: Runtime) -> None:
    hub = auto.hub
    being_fixed = repos_being_fixed(hub)
    for name, why in sorted(auto.broken_main.items()):
        if name in auto.broken_handled or name in being_fixed:  # an open goal's result decides: healed after it
            continue
        if await main_moved(auto, name):  # found broken at an older HEAD: check the new one before any fix
            auto.broken_main.pop(name, None)
            auto.forced_scans.add(name)
            await auto.journal_healing("rescan", name, "main moved since it was found broken")
            continue
        since = hub.clock.now_ms() - int(hub.settings.autonomy_review_wait_s * 1000)
        if waiting := fix_awaiting_review(hub, name, since):
            auto.broken_handled.add(name)
            await auto.journal_healing("fix_goal", name, f"skipped: a verified fix awaits review ({waiting})")
            continue
        result = await submit_goal(hub, f"Fix main of {name}: {why}", name, "urgent", "healing")
        auto.broken_handled.add(name)
        await auto.journal_healing("fix_goal", name, result)


async def run_cycle(auto: Runtime) -> None:
    await requeue_stuck(auto)
    await recover_endpoints(auto)
    await fix_broken_main(auto)
