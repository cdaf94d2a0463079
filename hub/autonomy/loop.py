"""The supervised tick loop and the runtime around the machine: signals in, transitions out, cycles of work run in
tasks the loop owns.

The loop sleeps until something happens (a task event on the bus, a webhook, pause/resume, a finished cycle) or the
tick interval passes, so an idle hub does one cheap tick per interval and no more. The work of improving,
contemplating and healing runs in a task of the loop's own TaskGroup (never inside a transition callback); when it
ends the loop wakes and the next tick leaves the state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hub.autonomy import contemplating, healing, improving, stranded
from hub.autonomy.fsm import HISTORY_KIND, HubMachine, readable
from hub.autonomy.healing import set_fallback
from hub.autonomy.runtime import Runtime, ScanTarget
from hub.autonomy.signals import advance_goals, endpoint_health, gather, scan_targets
from hub.autonomy.states import WORKING_STATES, State, decide
from hub.autonomy.watchdogs import overdue, raise_alert
from hub.store.records import AppendJournal, PruneJournal

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)

HEALING_KIND = "healing"
HEALING_KEPT = 500
JOURNAL_KEPT_MS = 30 * 24 * 3600 * 1000
"""Transitions and healing actions older than this are pruned at start (so the start reads a bounded journal)."""
WAKING_KINDS = ("task_event", "goal", "endpoint", "repo", "cost")
"""Bus events (by the start of their ``kind``) that may change a signal and so wake the loop; tool calls, agent
presence and this subsystem's own events do not (no self-sustaining ticks)."""
WAKING_AGENT_EVENTS = ("agent_joined", "agent_left")
"""Agent events that wake the loop all the same: what the fleet can run changed, so stranded tasks may be runnable
again (the waiting reasons they clear, and the assignment that follows, wake it too, as task events)."""


class Autonomy:
    """The hub's autonomy: ``hub.autonomy``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.fsm = HubMachine(hub)
        self.cycle_done = False
        self.n_ticks = 0
        self.n_cycles = 0
        self.broken_main: dict[str, str] = {}
        """Repository name -> what is wrong with its main (failing tests, merge conflicts)."""
        self.broken_handled: set[str] = set()
        self.forced_scans: set[str] = set()
        """Targets a webhook push asked to scan whatever their cooldown."""
        self.scanned: dict[str, dict[str, Any]] = {}
        self.routing_fallback = False
        """Set by healing when every endpoint stayed down: route to the fallback (Claude) until one recovers."""
        self.healing_log: deque[dict[str, Any]] = deque(maxlen=HEALING_KEPT)
        self.stranded_tasks = 0
        """Queued tasks no connected agent can run, at the last tick (hub/autonomy/stranded.py)."""
        self._wake = asyncio.Event()
        self._tick_lock = asyncio.Lock()
        self._tg: asyncio.TaskGroup | None = None
        self._cycle: asyncio.Task[None] | None = None
        self._epoch = 0

    async def load(self) -> None:
        before = self.hub.clock.now_ms() - JOURNAL_KEPT_MS
        await self.hub.store.write([PruneJournal(HISTORY_KIND, before), PruneJournal(HEALING_KIND, before)])
        await self.fsm.load()
        self.scanned = await improving.load_scanned(self.hub)
        after = 0
        while rows := await self.hub.store.read_journal(HEALING_KIND, after_seq=after, limit=1000):
            self.healing_log.extend(body for r in rows if isinstance(body := readable(r.body), dict))
            after = rows[-1].seq

    def wake(self) -> None:
        self._wake.set()

    async def journal_healing(self, action: str, target: str, result: str) -> None:
        now = self.hub.clock.now_ms()
        entry = {"action": action, "target": target, "result": result, "ts": now}
        self.healing_log.append(entry)
        await self.hub.store.write([AppendJournal(HEALING_KIND, now, json.dumps(entry))])
        self.hub.bus.publish({"kind": "healing", **entry})

    async def due_targets(self) -> list[ScanTarget]:
        """Scan targets whose HEAD moved since their last scan (or a push asked) and whose cooldown has passed."""
        return await improving.due(self, scan_targets(self.hub))

    # --- the tick ---------------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Look at the hub once and make at most one transition (a watchdog first, then the table)."""
        async with self._tick_lock:
            self.n_ticks += 1
            fsm, settings, now = self.fsm, self.hub.settings, self.hub.clock.now_ms()
            src = fsm.current
            forced = overdue(
                src,
                fsm.entered_at,
                now,
                fsm.paused,
                settings.autonomy_global_watchdog_s,
                settings.autonomy_healing_watchdog_s,
            )
            if forced is not None:
                self._stop_cycle()
                if src is State.HEALING:
                    await self.journal_healing("watchdog_timeout", "healing", forced.reason)
                    fsm.healing_cooldown_until = now + int(settings.autonomy_healing_cooldown_s * 1000)
                await fsm.go(forced.to, forced.reason, force=True)
                await raise_alert(self.hub, "hub_fsm_watchdog", forced.reason)
                return
            if self.routing_fallback and any(endpoint_health(self.hub).values()):
                set_fallback(self, False)
                await self.journal_healing("routing_restored", "endpoints", "an endpoint is healthy again")
            signals = await gather(self)
            self.stranded_tasks = signals.stranded_tasks
            decision = decide(src, signals)
            if decision is not None and await fsm.go(decision.to, decision.reason):
                self._stop_cycle()
                if decision.to in WORKING_STATES:
                    self._start_cycle(decision.to)
            await stranded.note(self, signals)
            driving = not self.hub.settings.goals_loop  # else the goals loop drives the backlog itself
            if driving and fsm.current is State.EXECUTING and not fsm.paused and await advance_goals(self.hub):
                self.wake()  # one goal step per tick; the next follows at once

    def _stop_cycle(self) -> None:
        self._epoch += 1
        self.cycle_done = False
        if self._cycle is not None and not self._cycle.done():
            self._cycle.cancel()
        self._cycle = None

    def _start_cycle(self, state: State) -> None:
        work: dict[State, Callable[[Runtime], Awaitable[None]]] = {
            State.IMPROVING: improving.run_cycle,
            State.CONTEMPLATING: contemplating.run_cycle,
            State.HEALING: healing.run_cycle,
        }
        coro = self._cycle_of(state, work[state], self._epoch)
        if self._tg is None:  # the loop is not running (autonomy disabled): the cycle waits for a loop
            coro.close()
            return
        self._cycle = self._tg.create_task(coro)

    async def _cycle_of(self, state: State, fn: Callable[[Runtime], Awaitable[None]], epoch: int) -> None:
        self.n_cycles += 1
        try:
            await fn(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("hub fsm: %s cycle failed", state)
        if epoch != self._epoch:
            return
        now = self.hub.clock.now_ms()
        if state is State.HEALING:
            self.fsm.healing_cooldown_until = now + int(self.hub.settings.autonomy_healing_cooldown_s * 1000)
        elif state is State.CONTEMPLATING:
            self.fsm.contemplated_at = now
        await self.fsm.save()
        self.cycle_done = True
        self.wake()

    # --- the loop ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick on every wake-up or tick interval, forever (owned by the hub's TaskGroup)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tg.create_task(self._listen())
            try:
                while True:
                    try:
                        async with asyncio.timeout(self.hub.settings.autonomy_tick_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    self._wake.clear()
                    await self.tick()
            finally:
                self._stop_cycle()
                self._tg = None

    async def _listen(self) -> None:
        """Wake the loop on the hub's task events (the bus is bounded and lossy; a lost event costs one tick)."""
        with self.hub.bus.subscribe() as events:
            while True:
                event = await events.get()
                if str(event.get("kind", "")).startswith(WAKING_KINDS) or event.get("event") in WAKING_AGENT_EVENTS:
                    self.wake()
