"""Health (open) and agent endpoints (any token: admin, agent or viewer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from hub.auth import Principal
from hub.gc_policy import POLICY
from hub.http import ApiError, any_role, hub_of

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
