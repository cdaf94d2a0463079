"""``hub.costs``: the ledger and the budgets, and what the agents' socket and the hub's own model calls ask of them.

Sidecar calls: ``budget_request`` is answered by :meth:`Costs.on_budget_request` (a grant or a refusal), each
``usage_report`` becomes a ledger entry that settles its grant (:meth:`Costs.on_usage_report`), and when an attempt
ends :meth:`Costs.on_attempt_end` charges the result's usage only if that attempt sent no ``usage_report`` (an
older sidecar): per-call reports win over the final total, nothing is counted twice. Hub calls (goal
decomposition...): ``grant = costs.reserve(scope, estimate)``; after the call ``await costs.settle(grant, entry)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.costs.budgets import BudgetConfig, Budgets, Estimate, Grant, Refusal, Scope
from hub.costs.ledger import CostEntry, Ledger
from hub.costs.prices import PriceTable
from hub.store.records import PutRecord, RecordRow
from hub.tasks import TaskStatus
from shared import protocol as P
from shared.payloads import Usage

if TYPE_CHECKING:
    from hub.clock import Clock
    from hub.queue import TaskQueue
    from hub.settings import HubSettings
    from hub.store import Store
    from hub.tasks import Task

logger = logging.getLogger(__name__)

CONFIG_KIND, CONFIG_KEY = "cost_budget", "config"


class Costs:
    """``hub.costs``: the ledger, the prices and the budgets of one hub (see the module docstring)."""

    def __init__(self, settings: HubSettings, store: Store, clock: Clock, queue: TaskQueue) -> None:
        s = self.settings = settings
        self.store, self.clock, self.queue = store, clock, queue
        self.prices = PriceTable(s.cost_prices)
        self.ledger = Ledger(store, clock, self.prices, s.cost_retention_days, s.cost_max_entries)
        self.budgets = Budgets(self.ledger, clock, s.cost_reservation_ttl_s, s.cost_max_reservations)
        self.hub_state: Callable[[], str] = lambda: s.cost_default_hub_state
        """The hub's current state, which every call is charged to (the autonomy FSM replaces this)."""
        self.n_refused_reports = 0

    def __repr__(self) -> str:
        return f"<Costs {self.ledger!r} {self.budgets.counters()}>"

    async def load(self) -> None:
        await self.ledger.load()
        for row in await self.store.load_records(CONFIG_KIND):
            if row.key == CONFIG_KEY:
                try:
                    self.budgets.config = BudgetConfig.model_validate_json(row.body)
                except ValueError:
                    logger.error("stored budgets are unreadable; running with none until they are set again")

    async def set_budgets(self, config: BudgetConfig) -> None:
        """Store ``config`` (durable on return) and apply it."""
        body = config.model_dump_json(exclude_none=True)
        await self.store.write([PutRecord(RecordRow(CONFIG_KIND, CONFIG_KEY, self.clock.now_ms(), body))])
        self.budgets.config = config

    # --- the gate, for any caller --------------------------------------------------------------------------------

    def reserve(self, scope: Scope, estimate: Estimate) -> Grant | Refusal:
        result = self.budgets.reserve(scope, estimate)
        if isinstance(result, Refusal):
            logger.info("model call refused (%s): %s", result.reason, result.detail)
        elif result.warnings:
            logger.warning("budget passed (warn): %s", "; ".join(result.warnings))
        return result

    async def settle(self, grant: Grant | str | None, entry: CostEntry) -> CostEntry:
        """Record ``entry`` for the call of ``grant``: its reservation holds the actual usage at once (before any
        await), and is released in the same step as the entry joins the rollups, so it is never counted twice or
        not at all."""
        entry = self.ledger.priced(entry)
        grant_id = grant.grant_id if isinstance(grant, Grant) else grant
        self.budgets.adjust(grant_id, Estimate(entry.tokens, entry.usd or 0.0))
        try:
            return await self.ledger.record(entry)
        finally:
            self.budgets.release(grant_id)

    def budget_left(self, hub_state: str) -> bool:
        """Whether calls in ``hub_state`` may still run (no pausing or stopping budget of it is used up)."""
        return self.budgets.left(Scope(hub_state=hub_state))

    def scope_of(self, task: Task | None, agent_id: str | None, model: str | None, provider: str | None) -> Scope:
        """What an agent's call for ``task`` counts against. Work on tasks is the hub's executing, whatever state
        its FSM is in at that moment (``cost_default_hub_state``); the hub's own calls use :attr:`hub_state`."""
        routing = (task.routing_decision or {}) if task is not None else {}
        endpoint = routing.get("selected_endpoint")
        return Scope(task_id=task.id if task is not None else None, goal_id=task.goal_id if task else None,
                     hub_state=self.settings.cost_default_hub_state, agent_id=agent_id, model=model, provider=provider,
                     endpoint=endpoint if isinstance(endpoint, str) else None)  # fmt: skip

    # --- the sidecars' frames --------------------------------------------------------------------------------------

    def on_budget_request(self, agent_id: str, msg: P.BudgetRequest) -> P.BudgetGrant:
        """The answer to ``msg``: a grant reserved against every budget of its task, or a refusal."""
        task = self.queue.tasks.get(msg.task_id)
        if task is None or task.assigned_to != agent_id or task.status not in (TaskStatus.ASSIGNED, TaskStatus.WORKING):
            return P.BudgetGrant(request_id=msg.request_id, granted=False, reason="not_assigned")
        scope = self.scope_of(task, agent_id, msg.model, msg.provider)
        usd = msg.est_usd
        if usd is None:
            usd = self.prices.usd(msg.model, msg.provider, msg.est_tokens_in, msg.est_tokens_out)
        tokens = msg.est_tokens_in + msg.est_tokens_out
        result = self.reserve(scope, Estimate(tokens, usd))
        if isinstance(result, Refusal):
            return P.BudgetGrant(request_id=msg.request_id, granted=False, reason=result.reason)
        return P.BudgetGrant(request_id=msg.request_id, granted=True, grant_id=result.grant_id, limit=tokens)

    async def on_usage_report(self, agent_id: str, msg: P.UsageReport) -> str | None:
        """Record the call's usage and settle its grant; returns an error code for a task not this agent's."""
        task = self.queue.tasks.get(msg.task_id)
        if task is None or task.assigned_to != agent_id:
            self.n_refused_reports += 1
            return "not_assigned"
        self.ledger.attempts.add((task.id, task.generation))  # before any await: the attempt's end must see it
        grant = self.budgets.reservations.get(msg.grant_id or "")
        grant_id = msg.grant_id if grant is not None and grant.scope.task_id == task.id else None  # its own only
        entry = self.entry(task, agent_id, msg.usage, wall_ms=msg.wall_ms, eval_seconds=msg.eval_seconds)
        await self.settle(grant_id, entry.model_copy(update={"grant_id": grant_id, "generation": task.generation}))
        return None

    async def on_attempt_end(self, agent_id: str, task_id: str, generation: int, usage: Usage | None) -> None:
        """An attempt ended: charge its final usage unless it reported per call or was charged already (the same
        result sent again after a lost ack, before or after a restart)."""
        if usage is None or (not usage.tokens_total and not usage.cost_usd):
            return
        if (task_id, generation) in self.ledger.attempts:
            return
        self.ledger.attempts.add((task_id, generation))  # before the await: a resend racing this one is skipped
        task = self.queue.tasks.get(task_id)
        entry = self.entry(task, agent_id, usage).model_copy(update={"generation": generation, "attempt_total": True})
        await self.ledger.record(entry)

    def entry(self, task: Task | None, agent_id: str, usage: Usage, *, wall_ms: int | None = None,
              eval_seconds: float | None = None) -> CostEntry:  # fmt: skip
        scope = self.scope_of(task, agent_id, usage.model, usage.provider)
        return CostEntry(
            ts=self.clock.now_ms(), task_id=scope.task_id, goal_id=scope.goal_id, agent_id=agent_id,
            model=usage.model, provider=usage.provider, endpoint=scope.endpoint, hub_state=scope.hub_state,
            tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, usd=usage.cost_usd,
            gpu_seconds=usage.gpu_seconds, wall_ms=wall_ms, source="sidecar",
            eval_seconds=eval_seconds if eval_seconds is not None else usage.eval_seconds,
        )  # fmt: skip

    async def run_retention(self) -> None:
        """Expire stale reservations every few seconds and prune the ledger past its retention hourly."""
        ticks = 0
        while True:
            self.budgets.expire()
            if ticks % max(1, int(3600 / self.settings.cost_sweep_interval_s)) == 0:
                await self.ledger.prune()
            ticks += 1
            await asyncio.sleep(self.settings.cost_sweep_interval_s)
