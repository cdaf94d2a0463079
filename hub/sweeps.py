"""Timeout sweeps: acceptance timeout, lost agents, stuck tasks and silent sockets.

:func:`due_reclaims` is the decision (pure, over tasks, agents and ``now``); :func:`run_sweeps` applies it on a
steady cadence. Every reclaim ends an attempt, so it counts toward ``max_retries``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.agents import Agent
from hub.settings import HubSettings
from hub.tasks import EndReason, Task, TaskStatus, TransitionError
from shared.protocol import MAX_TASK_TIMEOUT_MS

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)


def ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(frozen=True)
class Reclaim:
    task_id: str
    generation: int
    reason: EndReason
    error: str


def task_timeout_ms(task: Task) -> float | None:
    """The task's ``metadata.timeout_ms`` if it is a positive finite number, at most 7 days (a longer one, stored
    before submissions were checked, counts as 7 days); anything else (Infinity, NaN, a string) counts as absent."""
    metadata = task.metadata if isinstance(task.metadata, dict) else {}
    value = metadata.get("timeout_ms")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return min(value, MAX_TASK_TIMEOUT_MS)
    return None


def due_reclaims(
    in_flight: Iterable[Task],
    connected: dict[str, Agent],
    departed_at: dict[str, int],
    started_at: int,
    now: int,
    settings: HubSettings,
) -> list[Reclaim]:
    """Which in-flight attempts have run out of time, and why."""
    out: list[Reclaim] = []
    for task in in_flight:
        agent = connected.get(task.assigned_to or "")
        if agent is None:
            # An agent not seen since the hub started gets the longer restart grace: its sidecar may be backing
            # off (up to a minute) and holds results in its outbox that must not be fenced out.
            left_at = departed_at.get(task.assigned_to or "")
            gone_since, grace_s = (
                (left_at, settings.reconnect_grace_s) if left_at is not None else (started_at, settings.restart_grace_s)
            )
            if now - gone_since >= ms(grace_s):
                out.append(Reclaim(task.id, task.generation, EndReason.AGENT_LOST, "agent disconnected"))
        elif agent.awaiting_report_since is not None and now - agent.awaiting_report_since >= ms(
            settings.state_report_timeout_s
        ):
            out.append(Reclaim(task.id, task.generation, EndReason.AGENT_LOST, "no state_report after reconnect"))
        elif task.status is TaskStatus.ASSIGNED and (
            now - (task.assigned_at or now) >= ms(settings.acceptance_timeout_s)
        ):
            out.append(Reclaim(task.id, task.generation, EndReason.TIMEOUT, "not accepted in time"))
        else:
            limit = settings.stuck_working_after_s if task.status is TaskStatus.WORKING else settings.stuck_after_s
            if (timeout_ms := task_timeout_ms(task)) is not None:  # a task allowed to run quietly for longer
                limit = max(limit, timeout_ms / 1000 + settings.stuck_after_timeout_grace_s)
            if now - task.updated_at >= ms(limit):
                out.append(Reclaim(task.id, task.generation, EndReason.STUCK, f"no update for {limit:.0f}s"))
    return out


async def sweep_once(hub: Hub) -> int:
    now = hub.clock.now_ms()
    departed = {aid: int(v.get("disconnected_at", now)) for aid, v in hub.agents.departed.items()}
    reclaims = due_reclaims(hub.queue.in_flight(), hub.agents.connected, departed, hub.started_at, now, hub.settings)
    for r in reclaims:
        task = hub.queue.tasks[r.task_id]
        agent_id = task.assigned_to
        # Earlier reclaims awaited their commits: a report may have arrived since. Decide again on the state now.
        departed = {aid: int(v.get("disconnected_at", now)) for aid, v in hub.agents.departed.items()}
        still = due_reclaims(
            [task] if task.status in (TaskStatus.ASSIGNED, TaskStatus.WORKING) else [],
            hub.agents.connected,
            departed,
            hub.started_at,
            hub.clock.now_ms(),
            hub.settings,
        )
        if not still or still[0].reason is not r.reason or task.generation != r.generation:
            continue
        try:
            ack = await hub.queue.reclaim(r.task_id, r.reason, r.error, generation=r.generation)
        except TransitionError:
            continue  # it changed meanwhile (a report arrived): nothing to reclaim
        logger.warning("reclaimed task_id=%s agent_id=%s reason=%s -> %s", r.task_id, agent_id, r.reason, ack)
        agent = hub.agents.get(agent_id or "")
        if agent is not None and r.reason is EndReason.TIMEOUT:
            agent.flags.add("unresponsive")
        await hub.fleet.cancel_on_agent(agent_id, r.task_id)
    for agent in list(hub.agents.connected.values()):
        if now - agent.last_seen >= int(hub.settings.presence_ttl_s * 1000) and agent.sender is not None:
            logger.warning("evicting silent agent %s", agent.agent_id)
            await agent.sender.close(1001, "stale connection")  # only asks: the socket's writer closes it, bounded
            await hub.fleet.disconnect(agent)
    return len(reclaims)


async def run_sweeps(hub: Hub) -> None:
    """Sweep every ``sweep_interval_s`` forever (owned by the hub's TaskGroup)."""
    while True:
        await asyncio.sleep(hub.settings.sweep_interval_s)
        await sweep_once(hub)
