"""Control endpoints of the hub's state machine (the original's paths) and the GitHub webhook.

``GET /api/hub/state``, ``/api/hub/history``, ``/api/hub/healing-history`` and ``/api/hub/proposals`` are open
(they show no secret); ``POST /api/hub/pause`` and ``/resume`` need the admin role. ``POST /api/webhooks/github``
carries no token: it is verified by the HMAC-SHA256 of its raw body (``X-Hub-Signature-256``, constant-time
compare) with the secret of ``AGENTCOM_GITHUB_WEBHOOK_SECRET``; unset, missing or wrong -> 401 ``invalid_signature``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from hub.auth import Principal
from hub.autonomy.contemplating import PROPOSAL_KIND
from hub.autonomy.fsm import readable
from hub.autonomy.loop import Autonomy
from hub.autonomy.signals import scan_targets
from hub.http import ApiError, admin, hub_of
from shared import jsonsafe

router = APIRouter()
logger = logging.getLogger(__name__)

Limit = Annotated[int, Query(ge=1, le=200)]


def autonomy_of(request: Request) -> Autonomy:
    auto: Autonomy | None = getattr(hub_of(request), "autonomy", None)
    if auto is None:
        raise ApiError(503, "autonomy_disabled", detail="the hub runs without its state machine")
    return auto


@router.get("/api/hub/state")
async def state(request: Request) -> dict[str, Any]:
    auto = autonomy_of(request)
    snap = auto.fsm.snapshot()
    now = auto.hub.clock.now_ms()
    return {
        **snap,
        "in_state_ms": now - auto.fsm.entered_at,
        "routing_fallback": auto.routing_fallback,
        "broken_main": sorted(auto.broken_main),
        "ticks": auto.n_ticks,
        "cycles": auto.n_cycles,
        "stranded_tasks": auto.stranded_tasks,
    }


@router.post("/api/hub/pause")
async def pause(request: Request, _: Principal = Depends(admin)) -> dict[str, str]:
    auto = autonomy_of(request)
    changed = await auto.fsm.set_paused(True)
    return {"status": "paused" if changed else "already_paused"}


@router.post("/api/hub/resume")
async def resume(request: Request, _: Principal = Depends(admin)) -> dict[str, str]:
    auto = autonomy_of(request)
    changed = await auto.fsm.set_paused(False)
    auto.wake()
    return {"status": "resumed" if changed else "not_paused"}


@router.get("/api/hub/history")
async def history(request: Request, limit: Limit = 50) -> dict[str, Any]:
    rows = list(autonomy_of(request).fsm.history)[::-1][:limit]
    return {"transitions": rows, "count": len(rows)}


@router.get("/api/hub/healing-history")
async def healing_history(request: Request, limit: Limit = 50) -> dict[str, Any]:
    rows = list(autonomy_of(request).healing_log)[::-1][:limit]
    return {"history": rows, "count": len(rows)}


@router.get("/api/hub/proposals")
async def list_proposals(request: Request, limit: Limit = 50) -> dict[str, Any]:
    rows = await hub_of(request).store.load_records(PROPOSAL_KIND)
    newest = sorted(rows, key=lambda r: (r.updated_at, r.key), reverse=True)[:limit]
    shown = [body for r in newest if isinstance(body := readable(r.body), dict)]
    return {"proposals": shown, "count": len(shown)}


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "replace"))


@router.post("/api/webhooks/github")
async def github_webhook(request: Request) -> dict[str, Any]:
    auto = autonomy_of(request)
    hub = auto.hub
    limit = hub.settings.webhook_max_bytes
    declared = request.headers.get("content-length") or "0"
    if not declared.isdigit() or int(declared) > limit:
        raise ApiError(413, "body_too_large", limit=limit)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise ApiError(413, "body_too_large", limit=limit)
    body = bytes(buf)
    secret = hub.settings.github_webhook_secret
    if not signature_ok(
        secret.get_secret_value().encode() if secret else b"", body, request.headers.get("x-hub-signature-256")
    ):
        hub.n_http_rejections += 1
        raise ApiError(401, "invalid_signature")
    event = request.headers.get("x-github-event", "")
    try:
        payload = jsonsafe.loads(body)
    except (jsonsafe.UnsafeJson, ValueError):
        raise ApiError(400, "invalid_json", detail="the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", detail="the body must be a JSON object")
    if event not in ("push", "pull_request"):
        return {"status": "ignored", "reason": f"event {event or '(none)'} not handled"}
    repo: dict[str, Any] = payload["repository"] if isinstance(payload.get("repository"), dict) else {}
    full_name = str(repo.get("full_name") or "")
    names = {t.name for t in scan_targets(hub)}
    name = next((n for n in (full_name, full_name.rpartition("/")[2]) if n in names), None)
    default_ref = f"refs/heads/{repo.get('default_branch') or 'main'}"
    if name is not None and event == "push" and payload.get("ref") == default_ref:
        auto.forced_scans.add(name)  # a check of main on the next resting tick
    auto.wake()
    logger.info("webhook %s on %s (registered: %s)", event, full_name[:200], name is not None)
    return {"status": "accepted", "event": event, "repo": name, "scan_scheduled": name in auto.forced_scans}
