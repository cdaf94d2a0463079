"""The hub's alert conditions, as the dashboard shows them, with acknowledgement.

The conditions are the dashboard's (:func:`hub.dashboard_state.health`: no agents, agents offline or unresponsive,
stuck tasks, dead letters, a failure rate over 50 %) plus the store's (writes waiting on a full disk). An operator
acknowledges a condition by id: it stays listed, marked ``acknowledged``, and no longer counts toward the status,
until it clears; when it comes back later it alerts again. Subsystems that watch a condition themselves raise it with
:meth:`Alerts.raise_condition` and resolve it with :meth:`Alerts.resolve` (the hub's state machine:
``tasks_stranded``, queued tasks no connected agent can run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_ACKED = 256


class Alerts:
    def __init__(self, degraded: Callable[[], str | None]) -> None:
        self.degraded = degraded
        """Why the store cannot write now (None while it can)."""
        self._acked: dict[str, str | None] = {}
        """Acknowledged condition ids, with who acknowledged them."""
        self.source: Callable[[], list[dict[str, Any]]] = list
        """The dashboard's conditions (set by the app, which owns the dashboard: hub/app.py)."""
        self.raised: dict[str, dict[str, Any]] = {}
        """Conditions raised by a subsystem, by id, until it resolves them."""

    def current(self) -> dict[str, Any]:
        """``{"status": ok|warning|critical, "conditions": [...]}``, acknowledged ones marked and not counted."""
        conditions = [dict(c) for c in self.source()]
        if (degraded := self.degraded()) is not None:
            conditions.append({"id": "store_degraded", "severity": "critical", "message": degraded})
        conditions.extend(dict(c) for c in self.raised.values())
        active = {c["id"] for c in conditions}
        for cid in [c for c in self._acked if c not in active]:  # cleared: a later return alerts again
            del self._acked[cid]
        for c in conditions:
            c["acknowledged"] = c["id"] in self._acked
            if c["acknowledged"]:
                c["acknowledged_by"] = self._acked[c["id"]]
        counted = [c for c in conditions if not c["acknowledged"]]
        status = "critical" if any(c["severity"] == "critical" for c in counted) else "warning" if counted else "ok"
        return {"status": status, "conditions": conditions}

    def acknowledge(self, condition_id: str, by: str | None) -> bool:
        """Acknowledge an active condition; False if no such condition is active."""
        if condition_id not in {c["id"] for c in self.current()["conditions"]}:
            return False
        if condition_id not in self._acked and len(self._acked) >= MAX_ACKED:
            return False
        self._acked[condition_id] = by
        return True

    def raise_condition(self, condition_id: str, severity: str, message: str) -> bool:
        """Raise (or update the message of) a condition a subsystem watches; True when it was not raised before."""
        new = condition_id not in self.raised
        if new and len(self.raised) >= MAX_ACKED:
            return False
        self.raised[condition_id] = {"id": condition_id, "severity": severity, "message": message}
        return new

    def resolve(self, condition_id: str) -> bool:
        """The condition cleared; True when it was raised."""
        return self.raised.pop(condition_id, None) is not None
