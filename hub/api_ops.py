"""What operators and their tools read: ``/metrics`` (Prometheus), ``/ready`` (can it take work?), the alert
conditions and their acknowledgement, and an on-demand backup of the database."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from hub.auth import Principal
from hub.backups import back_up_now
from hub.http import ApiError, admin, any_role, hub_of
from hub.metrics import CONTENT_TYPE
from hub.store import StoreError
from hub.store.backup import backups

router = APIRouter()


@router.get("/metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    """Prometheus exposition. Needs a token (any role; Prometheus sends it with ``authorization``) unless
    ``AGENTCOM_METRICS_PUBLIC`` is set."""
    hub = hub_of(request)
    if not hub.settings.metrics_public:
        await any_role(request)
    return Response(hub.metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/ready")
async def ready(request: Request) -> Response:
    """200 when the hub can take work now (opened, its store writing); 503 with the reason otherwise. ``/health``
    stays 200 while the process lives: use this one for load balancers and orchestration."""
    hub = hub_of(request)
    reason = hub.failed or hub.store.degraded or (None if hub.opened else "starting")
    return JSONResponse({"ready": reason is None, "reason": reason}, status_code=200 if reason is None else 503)


@router.get("/api/alerts")
async def alerts(request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    return hub_of(request).alerts.current()


@router.post("/api/alerts/{condition_id}/ack")
async def acknowledge(condition_id: str, request: Request, who: Principal = Depends(admin)) -> dict[str, Any]:
    hub = hub_of(request)
    if not hub.alerts.acknowledge(condition_id, who.agent_id):
        raise ApiError(404, "no_such_alert", detail=f"no active alert condition {condition_id[:64]!r}")
    return hub.alerts.current()


@router.post("/admin/backup")
async def make_backup(request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    """Back up the database now (online); the newest ``backup_keep`` are kept."""
    try:
        info = await back_up_now(hub_of(request))
    except StoreError as exc:
        raise ApiError(500, "backup_failed", detail=str(exc)) from None
    return info.as_dict()


@router.get("/admin/backups")
async def list_backups(request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    hub = hub_of(request)
    found = backups(hub.settings.data_dir)
    return {
        "backups": [{"path": str(p), "bytes": p.stat().st_size} for p in reversed(found)],
        "last": hub.last_backup.as_dict() if hub.last_backup else None,
        "interval_s": hub.settings.backup_interval_s,
    }
