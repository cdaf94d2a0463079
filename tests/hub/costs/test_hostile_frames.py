"""Hostile budget_request / usage_report frames are refused with validation_failed and change nothing."""

from __future__ import annotations

import pytest

from tests.hub.costs.test_budgets import held_task

BAD = [
    ('{"type":"budget_request","request_id":"r","task_id":"%s","est_usd":NaN}', "est_usd"),
    ('{"type":"budget_request","request_id":"r","task_id":"%s","est_usd":1e400}', "est_usd"),
    ('{"type":"budget_request","request_id":"r","task_id":"%s","est_usd":-1.5}', "est_usd"),
    ('{"type":"budget_request","request_id":"r","task_id":"%s","est_tokens_in":-1}', "est_tokens_in"),
    ('{"type":"budget_request","request_id":"r","task_id":"%s","est_tokens_out":10000000000000000000000}', "est"),
    ('{"type":"budget_request","request_id":"r","task_id":"%s","est_tokens_in":"100"}', "est_tokens_in"),
    ('{"type":"budget_request","request_id":"","task_id":"%s"}', "request_id"),
    ('{"type":"budget_request","request_id":"r\\u0000","task_id":"%s"}', "request_id"),
    ('{"type":"usage_report","task_id":"%s","usage":{"tokens_in":-5}}', "usage.tokens_in"),
    ('{"type":"usage_report","task_id":"%s","usage":{"cost_usd":Infinity}}', "usage.cost_usd"),
    ('{"type":"usage_report","task_id":"%s","usage":{"tokens_out":1e300}}', "usage.tokens_out"),
    ('{"type":"usage_report","task_id":"%s","usage":{"tokens_in":1},"wall_ms":-1}', "wall_ms"),
    ('{"type":"usage_report","task_id":"%s","usage":{"tokens_in":1},"eval_seconds":NaN}', "eval_seconds"),
    ('{"type":"usage_report","task_id":"%s"}', "usage"),
]


@pytest.mark.parametrize(("frame", "field"), BAD)
async def test_hostile_frame_is_refused(hub, make_agent, frame: str, field: str) -> None:
    """NaN, infinite, negative, huge, mistyped or missing values: validation_failed naming the field; nothing is
    reserved or recorded."""
    agent, tid = await held_task(hub, make_agent)
    await agent.send_raw(frame % tid)
    error = await agent.wait_for(lambda m: m.get("type") == "error")
    assert error["error"] == "validation_failed", error
    assert any(e["field"].startswith(field) for e in error["errors"]), error
    costs = hub.hub.costs
    assert costs.ledger.total.calls == 0 and not costs.budgets.reservations and costs.budgets.n_granted == 0
