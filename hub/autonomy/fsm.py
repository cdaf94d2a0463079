"""The hub's state machine (``transitions``' AsyncMachine) with its history kept in the store.

Every transition appends a row to journal ``hub_transition`` ``{from, to, reason, duration_ms, ts}`` and rewrites the
snapshot record (kind ``hub_state``, key ``fsm``). At start the snapshot is read back: the machine resumes in resting
(the work of another state did not survive the restart) but keeps ``paused``, its counters and its cooldowns.
Transitions are serialised by a lock and awaited whole, so no trigger ever cancels another's callbacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from transitions.extensions.asyncio import AsyncMachine

from hub.autonomy.states import ALLOWED, State
from hub.store.records import AppendJournal, PutRecord, RecordRow

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)

HISTORY_KIND = "hub_transition"
SNAPSHOT_KIND = "hub_state"
HISTORY_KEPT = 200
"""Transitions kept in memory for ``GET /api/hub/history`` (all of them stay in the journal)."""


def readable(text: str) -> Any:
    """A stored JSON body, or None when it cannot be read (a bad row is skipped, never fatal)."""
    try:
        return json.loads(text)
    except ValueError:
        logger.error("hub fsm: unreadable stored row skipped")
        return None


def count(value: Any) -> int:
    """A stored non-negative integer, or 0 for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class HubMachine:
    """The machine's model: the current ``state`` plus what survives a restart."""

    state: str
    trigger: Callable[..., Awaitable[bool]]
    """Added to the model by the machine."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.paused = False
        self.entered_at = hub.clock.now_ms()
        self.cycle_count = 0
        self.transition_count = 0
        self.healing_cooldown_until = 0
        self.contemplated_at = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_KEPT)
        self.changed = asyncio.Condition()
        self._lock = asyncio.Lock()
        self.machine = AsyncMachine(
            model=self,
            states=[s.value for s in State],
            initial=State.RESTING.value,
            send_event=True,
            queued=False,
            auto_transitions=False,
        )
        for dst in State:
            sources: list[Any] = [s.value for s, allowed in ALLOWED.items() if dst in allowed]
            self.machine.add_transition(f"to_{dst}", sources, dst.value, after="_recorded")
        self.machine.add_transition(
            "force_rest", [s.value for s in State if s is not State.RESTING], "resting", after="_recorded"
        )

    @property
    def current(self) -> State:
        return State(self.state)

    def snapshot(self) -> dict[str, Any]:
        return {
            "fsm_state": self.state,
            "paused": self.paused,
            "cycle_count": self.cycle_count,
            "transition_count": self.transition_count,
            "last_state_change": self.entered_at,
            "healing_cooldown_until": self.healing_cooldown_until,
            "contemplated_at": self.contemplated_at,
        }

    async def load(self) -> None:
        """Read the snapshot and the newest history back; a hub that stopped in another state resumes resting."""
        store = self.hub.store
        after = 0
        while rows := await store.read_journal(HISTORY_KIND, after_seq=after, limit=1000):
            self.history.extend(body for row in rows if isinstance(body := readable(row.body), dict))
            after = rows[-1].seq
        stored = next((readable(r.body) for r in await store.load_records(SNAPSHOT_KIND) if r.key == "fsm"), None)
        if not isinstance(stored, dict) or stored.get("fsm_state") not in set(State):
            if stored is not None:
                logger.error("hub fsm: stored snapshot unreadable; starting afresh (resting, not paused)")
            stored = None
        if stored is None:
            await self._append("", State.RESTING, "hub_fsm_started", 0)
            await self._save()
            return
        self.paused = stored.get("paused") is True
        self.cycle_count = count(stored.get("cycle_count"))
        self.transition_count = count(stored.get("transition_count"))
        self.healing_cooldown_until = count(stored.get("healing_cooldown_until"))
        self.contemplated_at = count(stored.get("contemplated_at"))
        was = str(stored.get("fsm_state", "resting"))
        if was != State.RESTING:
            now = self.hub.clock.now_ms()
            await self._append(
                was, State.RESTING, "hub restarted", now - (count(stored.get("last_state_change")) or now)
            )
            self.transition_count += 1
        self.entered_at = self.hub.clock.now_ms()
        await self._save()

    async def go(self, to: State, reason: str, force: bool = False) -> bool:
        """Move to ``to`` if the table allows it (``force``: any state to resting); True when it moved."""
        async with self._lock:
            src = self.current
            if src is to:
                return False
            if force and to is State.RESTING:
                await self._fire("force_rest", reason=reason, src=src)
            elif to in ALLOWED[src]:
                await self._fire(f"to_{to}", reason=reason, src=src)
            else:
                logger.debug("hub fsm: %s -> %s not allowed (%s)", src, to, reason)
                return False
            return self.current is to

    async def _fire(self, trigger: str, **kwargs: Any) -> None:
        await self.trigger(trigger, **kwargs)

    async def _recorded(self, event: Any) -> None:
        src: State = event.kwargs["src"]
        reason: str = event.kwargs["reason"]
        now = self.hub.clock.now_ms()
        duration = now - self.entered_at
        self.entered_at = now
        self.transition_count += 1
        if src is State.RESTING and self.current in (State.EXECUTING, State.IMPROVING):
            self.cycle_count += 1
        await self._append(src, self.current, reason, duration)
        await self._save()
        logger.info("hub fsm %s -> %s (%s) after %d ms", src, self.state, reason, duration)
        self.hub.bus.publish(
            {
                "kind": "hub_fsm",
                "event": "hub_fsm_state_change",
                **self.snapshot(),
                "from": src,
                "reason": reason,
                "duration_ms": duration,
            }
        )
        async with self.changed:
            self.changed.notify_all()

    async def _append(self, src: str, dst: State, reason: str, duration_ms: int) -> None:
        now = self.hub.clock.now_ms()
        entry = {"from": src or None, "to": str(dst), "reason": reason, "duration_ms": duration_ms, "ts": now}
        self.history.append(entry)
        await self.hub.store.write([AppendJournal(HISTORY_KIND, now, json.dumps(entry))])

    async def _save(self) -> None:
        now = self.hub.clock.now_ms()
        row = RecordRow(SNAPSHOT_KIND, "fsm", now, json.dumps(self.snapshot()))
        await self.hub.store.write([PutRecord(row)])

    async def set_paused(self, paused: bool) -> bool:
        """Pause or resume; False when it already was."""
        async with self._lock:
            if self.paused == paused:
                return False
            self.paused = paused
            await self._save()
        self.hub.bus.publish({"kind": "hub_fsm", "event": "hub_fsm_state_change", **self.snapshot()})
        async with self.changed:
            self.changed.notify_all()
        return True

    async def save(self) -> None:
        async with self._lock:
            await self._save()

    async def wait_for(self, state: State, timeout_s: float) -> None:
        """Until the machine is in ``state`` (callers that must see a transition happen)."""
        await self.wait_until(lambda: self.current is state, timeout_s)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Until ``predicate`` holds, checked again after every transition and pause/resume."""
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(predicate)
