"""Restarting a sidecar from the hub (``POST /api/agents/{id}/restart``): never in the middle of a task.

An idle agent is sent ``restart_sidecar`` at once; the sidecar exits with its restart code and its supervisor (pm2)
starts a fresh process, which identifies again. An agent running a task is marked ``restart_pending``: the scheduler
gives it nothing new, and :func:`run_restarts` sends the restart as soon as it is idle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from hub.agents import Agent, AgentState
from hub.fleet import RESTART_PENDING
from shared.protocol import RestartSidecar

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)

RECHECK_S = 5.0
"""Pending restarts are also looked at this often, in case the event that made an agent idle was dropped."""


def _idle(agent: Agent) -> bool:
    return agent.state == AgentState.IDLE and agent.current_task_id is None


async def request_restart(hub: Hub, agent: Agent, by: str) -> dict[str, Any]:
    """Restart ``agent`` now if idle, else once its task is done; what happened, for the API."""
    if _idle(agent):
        await _send(hub, agent, by)
        return {"agent_id": agent.agent_id, "status": "restarting"}
    agent.flags.add(RESTART_PENDING)
    hub.restarts_asked_by[agent.agent_id] = by
    logger.info(
        "restart of %s deferred until its task %s ends (asked by %s)", agent.agent_id, agent.current_task_id, by
    )
    return {"agent_id": agent.agent_id, "status": "deferred", "task_id": agent.current_task_id}


async def _send(hub: Hub, agent: Agent, by: str) -> None:
    agent.flags.discard(RESTART_PENDING)
    agent.flags.add("restarting")
    await hub.fleet.send(agent, RestartSidecar(reason=f"requested by {by}"))
    logger.info("restart_sidecar sent to %s (asked by %s)", agent.agent_id, by)


async def send_due(hub: Hub) -> int:
    """Send the restarts of agents that were waiting and are idle now; how many were sent."""
    due = [a for a in hub.agents.connected.values() if RESTART_PENDING in a.flags and _idle(a)]
    for agent in due:
        await _send(hub, agent, hub.restarts_asked_by.pop(agent.agent_id, "admin"))
    return len(due)


async def run_restarts(hub: Hub) -> None:
    """Watch the bus for agents becoming idle and send their pending restarts (a supervised loop of the hub)."""
    with hub.bus.subscribe() as events:
        while True:
            try:
                await asyncio.wait_for(events.get(), RECHECK_S)
            except TimeoutError:
                pass
            if any(RESTART_PENDING in a.flags for a in hub.agents.connected.values()):
                await send_due(hub)
