"""The cost ledger and budgets over HTTP.

``GET /api/costs?group_by=task|goal|agent|model|endpoint|hub_state|hour|day&since=&until=`` (any role): totals per
group (calls, tokens in/out, USD, eval and GPU seconds, wall time) and overall, over the entries with
``since <= ts < until`` (milliseconds; unbounded when left out). ``GET /api/costs/budgets`` (any role): the budgets
in force with spend, reservations and state, and the gate's counters. ``PUT /api/costs/budgets`` (admin): replace
the budgets (:class:`~hub.costs.budgets.BudgetConfig`), validated, durable before the answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from hub.auth import Principal
from hub.costs.budgets import BudgetConfig
from hub.costs.ledger import Dimension, Totals
from hub.http import admin, any_role, hub_of, parse_body
from shared.fields import MAX_TIMESTAMP_MS

router = APIRouter()
Millis = Annotated[int | None, Query(ge=0, le=MAX_TIMESTAMP_MS)]


@router.get("/api/costs")
async def get_costs(
    request: Request, group_by: Dimension = "day", since: Millis = None, until: Millis = None,
    _: Principal = Depends(any_role),
) -> dict[str, Any]:  # fmt: skip
    groups = hub_of(request).costs.ledger.grouped(group_by, since, until)
    total = Totals()
    for totals in groups.values():
        for name in ("calls", "tokens_in", "tokens_out", "wall_ms"):
            setattr(total, name, getattr(total, name) + getattr(totals, name))
        total.usd += totals.usd
        total.gpu_seconds += totals.gpu_seconds
        total.eval_seconds += totals.eval_seconds
    rows = [{"key": key, **totals.as_json()} for key, totals in sorted(groups.items())]
    return {"group_by": group_by, "since": since, "until": until, "groups": rows, "total": total.as_json()}


@router.get("/api/costs/budgets")
async def get_budgets(request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    costs = hub_of(request).costs
    costs.budgets.expire()
    return {
        "config": costs.budgets.config.model_dump(mode="json", exclude_none=True),
        "budgets": costs.budgets.report(),
        "counters": costs.budgets.counters(),
        "hub_state": costs.hub_state(),
    }


@router.put("/api/costs/budgets")
async def put_budgets(request: Request, _: Principal = Depends(admin)) -> dict[str, Any]:
    config = await parse_body(request, BudgetConfig)
    costs = hub_of(request).costs
    await costs.set_budgets(config)
    return {"config": config.model_dump(mode="json", exclude_none=True), "budgets": costs.budgets.report()}
