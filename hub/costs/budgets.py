"""Budgets and the reservation gate every model call passes before it runs.

A budget is a :class:`Limit` (USD and/or tokens, and an action) on one scope: a hub state's current hour or day,
a task, a goal. :meth:`Budgets.reserve` checks every budget a call falls under against what is spent (the ledger)
plus what is reserved by calls still running plus the call's estimate, and reserves the estimate, in one step with
no await, so on the hub's single event loop concurrent callers can never be granted more than a limit allows.
``warn`` grants anyway (the grant names the budget), ``pause`` refuses with ``budget_paused`` (the scope waits for
a new window or a higher limit), ``stop`` refuses with ``budget_exhausted``. :meth:`Budgets.settle` releases the
reservation once the call's entry is in the ledger; a reservation never settled expires after ``ttl_s``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.clock import Clock
from hub.costs.ledger import Amount, Ledger, Totals
from shared.fields import Count, NoControl

Action = Literal["warn", "pause", "stop"]
Key = Annotated[str, Field(min_length=1, max_length=128), NoControl]
REFUSED: dict[str, str] = {"pause": "budget_paused", "stop": "budget_exhausted"}


class Limit(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    usd: Amount | None = None
    tokens: Count | None = None
    action: Action = "stop"

    @model_validator(mode="after")
    def _some_limit(self) -> Limit:
        if self.usd is None and self.tokens is None:
            raise ValueError("a limit needs usd, tokens or both")
        return self


class StateLimits(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    hourly: Limit | None = None
    daily: Limit | None = None


class BudgetConfig(BaseModel):
    """Every budget in force (``PUT /api/costs/budgets`` replaces it whole)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    hub_states: Annotated[dict[Key, StateLimits], Field(max_length=32)] = {}
    """Per hub state (``executing``, ``improving``...): calls made while the hub is in it, per hour and per day."""
    task: Limit | None = None
    """The limit of every task without one of its own in ``tasks``."""
    goal: Limit | None = None
    """The limit of every goal without one of its own in ``goals``."""
    tasks: Annotated[dict[Key, Limit], Field(max_length=1000)] = {}
    goals: Annotated[dict[Key, Limit], Field(max_length=1000)] = {}


@dataclass(frozen=True)
class Scope:
    """Who makes a call: what its spend counts against."""

    task_id: str | None = None
    goal_id: str | None = None
    hub_state: str | None = None
    agent_id: str | None = None
    model: str | None = None
    provider: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class Estimate:
    tokens: int
    usd: float


@dataclass
class Grant:
    grant_id: str
    scope: Scope
    estimate: Estimate
    keys: tuple[str, ...]
    expires_at: int
    warnings: list[str] = field(default_factory=list)
    granted = True


@dataclass(frozen=True)
class Refusal:
    reason: str
    budget: str
    detail: str
    granted = False


@dataclass(frozen=True)
class Check:
    """One budget as applied to a call: its name, limit and spend so far."""

    key: str
    limit: Limit
    spent: Totals


class Budgets:
    """The gate (see the module docstring)."""

    def __init__(self, ledger: Ledger, clock: Clock, ttl_s: float, max_reservations: int) -> None:
        self.ledger, self.clock = ledger, clock
        self.config = BudgetConfig()
        self.ttl_ms, self.max_reservations = int(ttl_s * 1000), max_reservations
        self.reservations: dict[str, Grant] = {}
        self.reserved: dict[str, Totals] = defaultdict(Totals)
        """Per budget key, the estimates of the reservations outstanding."""
        self._ids = itertools.count(1)
        self._prefix = f"g{clock.now_ms():x}"
        self.n_granted = self.n_refused = self.n_warned = self.n_expired = self.n_overruns = 0

    def checks(self, scope: Scope) -> list[Check]:
        """Every budget a call in ``scope`` falls under, now."""
        cfg, ledger, out = self.config, self.ledger, []
        if scope.task_id is not None and (limit := cfg.tasks.get(scope.task_id) or cfg.task) is not None:
            out.append(Check(f"task:{scope.task_id}", limit, ledger.totals("task", scope.task_id)))
        if scope.goal_id is not None and (limit := cfg.goals.get(scope.goal_id) or cfg.goal) is not None:
            out.append(Check(f"goal:{scope.goal_id}", limit, ledger.totals("goal", scope.goal_id)))
        state = scope.hub_state or "-"
        if (limits := cfg.hub_states.get(state)) is not None:
            now = datetime.fromtimestamp(self.clock.now_ms() / 1000, UTC)
            hour, day = now.strftime("%Y-%m-%dT%H"), now.strftime("%Y-%m-%d")
            if limits.hourly is not None:
                spent = ledger.state_hour.get((state, hour)) or Totals()
                out.append(Check(f"hub_state:{state}:hour:{hour}", limits.hourly, spent))
            if limits.daily is not None:
                spent = ledger.state_day.get((state, day)) or Totals()
                out.append(Check(f"hub_state:{state}:day:{day}", limits.daily, spent))
        return out

    def over(self, check: Check, estimate: Estimate) -> str | None:
        """Why ``estimate`` on top of the spend and reservations of ``check`` passes its limit, or None."""
        reserved = self.reserved.get(check.key) or Totals()
        limit = check.limit
        if limit.tokens is not None and check.spent.tokens + reserved.tokens + estimate.tokens > limit.tokens:
            return f"{check.key}: {check.spent.tokens} tokens spent, {reserved.tokens} reserved, " \
                   f"{estimate.tokens} asked, limit {limit.tokens}"  # fmt: skip
        if limit.usd is not None and check.spent.usd + reserved.usd + estimate.usd > limit.usd + 1e-12:
            return f"{check.key}: ${check.spent.usd:.6f} spent, ${reserved.usd:.6f} reserved, " \
                   f"${estimate.usd:.6f} asked, limit ${limit.usd:.6f}"  # fmt: skip
        return None

    def reserve(self, scope: Scope, estimate: Estimate) -> Grant | Refusal:
        """Check every budget of ``scope`` and reserve ``estimate`` against them all, atomically (no await)."""
        self.expire()
        if len(self.reservations) >= self.max_reservations:
            self.n_refused += 1
            return Refusal("too_many_reservations", "-", f"{len(self.reservations)} calls hold reservations")
        checks, warnings = self.checks(scope), []
        for check in checks:
            if (why := self.over(check, estimate)) is None:
                continue
            if check.limit.action == "warn":
                warnings.append(why)
                continue
            self.n_refused += 1
            return Refusal(REFUSED[check.limit.action], check.key, why)
        grant = Grant(f"{self._prefix}-{next(self._ids)}", scope, estimate, tuple(c.key for c in checks),
                      self.clock.now_ms() + self.ttl_ms, warnings)  # fmt: skip
        self.reservations[grant.grant_id] = grant
        for key in grant.keys:
            self._hold(key, estimate, +1)
        self.n_granted += 1
        self.n_warned += bool(warnings)
        return grant

    def _hold(self, key: str, estimate: Estimate, sign: int) -> None:
        totals = self.reserved[key]
        totals.calls += sign
        totals.tokens_in += sign * estimate.tokens
        totals.usd += sign * estimate.usd
        if totals.calls <= 0:
            del self.reserved[key]

    def adjust(self, grant_id: str | None, actual: Estimate) -> None:
        """Hold ``actual`` instead of the estimate for ``grant_id`` (its call is over, its entry not yet written), so
        calls asking meanwhile see what it really used; more than estimated counts as an overrun."""
        grant = self.reservations.get(grant_id) if grant_id else None
        if grant is None:
            return
        if actual.tokens > grant.estimate.tokens or actual.usd > grant.estimate.usd + 1e-12:
            self.n_overruns += 1
        for key in grant.keys:
            self._hold(key, grant.estimate, -1)
            self._hold(key, actual, +1)
        grant.estimate = actual

    def release(self, grant_id: str | None) -> Grant | None:
        """Drop the reservation ``grant_id`` (its call's entry is in the ledger now); None if unknown or expired."""
        grant = self.reservations.pop(grant_id, None) if grant_id else None
        if grant is None:
            return None
        for key in grant.keys:
            self._hold(key, grant.estimate, -1)
        return grant

    def expire(self) -> int:
        """Release the reservations past their time (their call never reported); returns how many."""
        now = self.clock.now_ms()
        stale = [g.grant_id for g in self.reservations.values() if g.expires_at <= now]
        for grant_id in stale:
            self.release(grant_id)
        self.n_expired += len(stale)
        return len(stale)

    def left(self, scope: Scope) -> bool:
        """Whether a call in ``scope`` could still run: no pausing or stopping budget of it is used up."""
        return all(c.limit.action == "warn" or not _at_limit(c) for c in self.checks(scope))

    def report(self) -> list[dict[str, Any]]:
        """The configured budgets that apply now, with spend, reservations and state."""
        cfg, rows = self.config, list[dict[str, Any]]()
        scopes = [Scope(hub_state=state) for state in cfg.hub_states]
        scopes += [Scope(task_id=t) for t in cfg.tasks] + [Scope(goal_id=g) for g in cfg.goals]
        for scope in scopes:
            for check in self.checks(scope):
                reserved = self.reserved.get(check.key) or Totals()
                state = "exhausted" if _at_limit(check) else "ok"
                rows.append({"budget": check.key, "limit_usd": check.limit.usd, "limit_tokens": check.limit.tokens,
                             "action": check.limit.action, "spent_usd": round(check.spent.usd, 9),
                             "spent_tokens": check.spent.tokens, "reserved_usd": round(reserved.usd, 9),
                             "reserved_tokens": reserved.tokens, "state": state})  # fmt: skip
        return rows

    def counters(self) -> dict[str, int]:
        return {
            "granted": self.n_granted, "refused": self.n_refused, "warned": self.n_warned,
            "expired": self.n_expired, "overruns": self.n_overruns, "outstanding": len(self.reservations),
        }  # fmt: skip


def _at_limit(check: Check) -> bool:
    limit = check.limit
    return (limit.tokens is not None and check.spent.tokens >= limit.tokens) or (
        limit.usd is not None and check.spent.usd >= limit.usd
    )
