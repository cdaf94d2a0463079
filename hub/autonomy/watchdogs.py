"""Watchdogs: a state held too long is forced back to resting, loudly.

:func:`overdue` is the decision (pure); :func:`raise_alert` makes it visible: a stored alert record (kind
``alert``), a critical log line and a dashboard event.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from hub.autonomy.states import Decision, State
from hub.store.records import PutRecord, RecordRow

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)


def overdue(
    state: State, entered_at: int, now: int, paused: bool, global_s: float, healing_s: float
) -> Decision | None:
    """Force resting when healing outlived ``healing_s`` or any other non-resting state outlived ``global_s``."""
    if paused or state is State.RESTING:
        return None
    held_ms = now - entered_at
    if state is State.HEALING and held_ms >= healing_s * 1000:
        return Decision(State.RESTING, f"healing watchdog: healing for more than {healing_s:.0f}s")
    if held_ms >= global_s * 1000:
        return Decision(State.RESTING, f"watchdog timeout: stuck in {state} for more than {global_s:.0f}s")
    return None


async def raise_alert(hub: Hub, source: str, detail: str) -> None:
    """A critical alert: stored (kind ``alert``), logged and shown on the dashboard."""
    now = hub.clock.now_ms()
    body = {"severity": "critical", "source": source, "detail": detail, "ts": now}
    logger.critical("alert source=%s %s", source, detail)
    await hub.store.write([PutRecord(RecordRow("alert", f"{now}-{source}", now, json.dumps(body)))])
    hub.bus.publish({"kind": "alert", **body})
