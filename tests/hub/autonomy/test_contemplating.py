"""The scalability report's levels and recommendation, and the proposals drawn from it (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.autonomy.contemplating import proposals, report


def metrics(**m: Any) -> dict[str, Any]:
    base = {
        "queue_depth": 0,
        "in_flight": 0,
        "agents": 4,
        "utilisation": 0.25,
        "latency_p50_ms": 900,
        "error_rate": 0.0,
    }
    return {**base, **m}


@pytest.mark.parametrize(
    ("m", "levels", "advice"),
    [
        (metrics(), ("ok", "ok", "ok"), "no scaling action needed"),
        (metrics(queue_depth=60, utilisation=0.95), ("critical", "critical", "ok"), "add machines"),
        (metrics(queue_depth=12, utilisation=0.1), ("warning", "ok", "ok"), "check capabilities and routing"),
        (metrics(utilisation=0.92), ("ok", "critical", "ok"), "add agents before the queue grows"),
        (metrics(agents=0, utilisation=None, queue_depth=3), ("ok", "ok", "ok"), "start an agent"),
        (metrics(error_rate=0.2), ("ok", "ok", "critical"), "no scaling action needed"),
        (metrics(error_rate=0.06), ("ok", "ok", "warning"), "no scaling action needed"),
    ],
)
def test_report(m: dict[str, Any], levels: tuple[str, str, str], advice: str) -> None:
    """Queue depth warns at 10 (critical 50), utilisation at 70 % (90 %), error rate at 5 % (15 %); the advice
    follows the levels."""
    rep = report(m)
    assert tuple(rep["levels"][k] for k in ("queue_depth", "utilisation", "error_rate")) == levels
    assert advice in rep["recommendation"]


def test_proposals_are_bounded_and_follow_the_report() -> None:
    """At most three proposals; a failing, saturated fleet gets the failure and scaling ones, an idle one none."""
    busy = proposals(report(metrics(queue_depth=60, utilisation=0.95, error_rate=0.3)))
    assert [p["title"] for p in busy] == ["Find why tasks dead-letter", "Scale the fleet"]
    assert [p["title"] for p in proposals(report(metrics(agents=0, utilisation=None)))] == []
    assert len(proposals(report(metrics(queue_depth=20, error_rate=0.5, utilisation=0.1)))) <= 3
