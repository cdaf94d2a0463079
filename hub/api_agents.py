"""Health (open) and agent endpoints (any token: admin, agent or viewer)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request

from hub.auth import Principal
from hub.gc_policy import POLICY
from hub.http import ApiError, admin, any_role, hub_of
from hub.restarts import request_restart

logger = logging.getLogger(__name__)
router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    hub = hub_of(request)
    stats = hub.queue.stats()["by_status"]
    return {
        "status": "degraded" if hub.store.degraded else "ok",
        "reason": hub.store.degraded,
        "service": "agent_com",
        "agents_connected": len(hub.agents.connected),
        "uptime_ms": hub.clock.now_ms() - hub.started_at,
        "tasks": {
            "queued": stats["queued"],
            "in_flight": stats["assigned"] + stats["working"],
            "quarantined": hub.queue.n_quarantined,
        },
        "violations": hub.violations.stats(),
        "refused_events": hub.trajectory.n_refused,
        "store": hub.store.stats(),
        "gc": POLICY.stats(),
        "alerts": hub.alerts.current(),
    }


@router.get("/api/agents")
async def list_agents(request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    return {"agents": hub_of(request).agents.views()}


@router.get("/api/agents/{agent_id}")
async def get_agent(agent_id: str, request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    hub = hub_of(request)
    agent = hub.agents.get(agent_id)
    if agent is not None:
        return agent.view()
    if agent_id in hub.agents.departed:
        return hub.agents.departed[agent_id]
    raise ApiError(404, "agent_not_found", agent_id=agent_id)


@router.post("/api/agents/{agent_id}/restart", status_code=202)
async def restart_agent(agent_id: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    """Restart the agent's sidecar (its supervisor starts it again): now if idle, else once its task is done."""
    hub = hub_of(request)
    agent = hub.agents.get(agent_id)
    if agent is None:
        if agent_id in hub.agents.departed:
            raise ApiError(409, "agent_offline", agent_id=agent_id, detail="the agent is not connected")
        raise ApiError(404, "agent_not_found", agent_id=agent_id)
    answer = await request_restart(hub, agent, who.agent_id)
    logger.info("audit: restart_agent agent_id=%s by=%s status=%s", agent_id[:128], who.agent_id, answer["status"])
    return answer


@router.delete("/api/agents/{agent_id}")
async def remove_agent(agent_id: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    """Forget an offline (offboarded) agent and revoke its tokens; a connected agent is refused (409)."""
    hub = hub_of(request)
    if hub.agents.get(agent_id) is not None:
        raise ApiError(
            409, "agent_connected", agent_id=agent_id,
            detail="the agent is connected: offboard it (agentcom offboard) or revoke its tokens first",
        )  # fmt: skip
    known = hub.agents.departed.pop(agent_id, None) is not None
    revoked = await hub.auth.revoke(agent_id)
    if not known and not revoked:
        raise ApiError(404, "agent_not_found", agent_id=agent_id)
    logger.info("audit: remove_agent agent_id=%s by=%s tokens_revoked=%d", agent_id[:128], who.agent_id, len(revoked))
    return {"agent_id": agent_id, "removed": True, "tokens_revoked": len(revoked)}
