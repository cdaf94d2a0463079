"""A task's trajectory: every execution event an agent streamed (tool calls, tokens, model turns), in order."""

from __future__ import annotations

import json
import logging
from typing import Any

from hub.clock import Clock
from hub.events import EventBus
from hub.store import AppendTrajectory, Store, TrajectoryRow
from shared import jsonsafe

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
IDENTITY_FIELDS = frozenset({"seq", "timestamp", "task_id", "agent_id", "kind"})
"""Set by the hub on every stored and published event; the same keys in an agent's event are dropped."""
MAX_SEQ = jsonsafe.MAX_INT


class Trajectory:
    """Appends events durably and publishes them at once to live subscribers (the dashboard)."""

    def __init__(self, store: Store, bus: EventBus, clock: Clock) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._next_seq: dict[str, int] = {}
        self.n_refused = 0
        """Execution events refused because the reporting agent does not hold the task (counted by the socket)."""

    async def load(self) -> None:
        self._next_seq = {task_id: seq + 1 for task_id, seq in (await self._store.last_trajectory_seqs()).items()}

    def forget(self, task_id: str) -> None:
        """The task was pruned (its rows are deleted with it): drop its sequence counter."""
        self._next_seq.pop(task_id, None)

    def _seq(self, task_id: str) -> int:
        seq = self._next_seq.get(task_id, 1)
        self._next_seq[task_id] = seq + 1
        return seq

    async def append(self, task_id: str, agent_id: str, event: dict[str, Any]) -> None:
        """Store and publish one event. The identity fields (:data:`IDENTITY_FIELDS`) are the hub's own: whatever
        the agent put under those keys is dropped, so it can neither reorder, misdate nor misattribute an event."""
        now = self._clock.now_ms()
        kind = jsonsafe.printable(str(event.get("event_type", "event")), 64)
        seq = self._seq(task_id)
        body = {k: v for k, v in event.items() if k not in IDENTITY_FIELDS}
        identity = {"task_id": task_id, "agent_id": agent_id, "seq": seq, "timestamp": now}
        # Strict: a non-finite number that slipped past the edge fails here, before the store writer sees it.
        payload = json.dumps({**body, **identity}, separators=(",", ":"), default=str, allow_nan=False)
        if len(payload) > MAX_PAYLOAD_BYTES:
            payload = json.dumps(
                {"event_type": kind, "truncated": True, "text": payload[:MAX_PAYLOAD_BYTES], **identity}
            )
        await self._store.write([AppendTrajectory(TrajectoryRow(task_id, seq, now, kind, payload))])
        # Published once stored, so whoever is told of it can also read it back.
        self._bus.publish(
            {**{k: v for k, v in body.items() if k not in {"full", "messages"}}, "kind": "execution_event", **identity}
        )

    async def read(self, task_id: str, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Events after ``after_seq`` in order, at most ``limit`` (both clamped to what SQLite can bind)."""
        after_seq = min(max(after_seq, 0), MAX_SEQ)
        limit = min(max(limit, 1), MAX_SEQ)
        rows = await self._store.read_trajectory(task_id, after_seq, limit)
        return [
            {"seq": r.seq, "timestamp": r.ts, "kind": r.kind, "event": _event(task_id, r.seq, r.payload)} for r in rows
        ]


def _event(task_id: str, seq: int, payload: str) -> Any:
    """A stored payload, or a marker for one that is not safe JSON (written before the edge checked events)."""
    try:
        return jsonsafe.loads(payload)
    except ValueError as exc:  # UnsafeJson is one
        logger.warning("trajectory task_id=%s seq=%s: unreadable payload (%s)", task_id, seq, exc)
        return {"event_type": "unreadable", "detail": "the stored event is not valid JSON"}
