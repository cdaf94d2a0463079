"""Contemplating: a scalability report and feature proposals from the hub's own metrics (queue depth, latency,
utilisation, failure rate), stored as records of kind ``proposal`` (listed at ``GET /api/hub/proposals``).

Deterministic: thresholds over numbers the hub already has; at most :data:`MAX_PROPOSALS` proposals per cycle.
"""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

from hub.store.records import PutRecord, RecordRow
from hub.tasks import TaskStatus

if TYPE_CHECKING:
    from hub.autonomy.runtime import Runtime
    from hub.hub import Hub

PROPOSAL_KIND = "proposal"
MAX_PROPOSALS = 3
RECENT = 200
QUEUE_WARN, QUEUE_CRIT = 10, 50
UTIL_WARN, UTIL_CRIT = 0.7, 0.9
ERROR_WARN, ERROR_CRIT = 0.05, 0.15


def metrics(hub: Hub) -> dict[str, Any]:
    queue = hub.queue
    connected = len(hub.agents.connected)
    busy = len({t.assigned_to for t in queue.in_flight() if t.assigned_to})
    done = queue.latest(TaskStatus.COMPLETED, RECENT)
    dead = queue.latest(TaskStatus.DEAD_LETTER, RECENT)
    latencies = [t.completed_at - t.created_at for t in done if t.completed_at is not None]
    finished = len(done) + len(dead)
    return {
        "queue_depth": queue.count(TaskStatus.QUEUED),
        "in_flight": len(queue.in_flight()),
        "agents": connected,
        "utilisation": round(busy / connected, 3) if connected else None,
        "latency_p50_ms": int(statistics.median(latencies)) if latencies else None,
        "error_rate": round(len(dead) / finished, 3) if finished else None,
    }


def level(value: float | None, warn: float, crit: float) -> str:
    if value is None or value < warn:
        return "ok"
    return "critical" if value >= crit else "warning"


def report(m: dict[str, Any]) -> dict[str, Any]:
    """The scalability report: a level per metric and a recommendation (machines vs agents)."""
    levels = {
        "queue_depth": level(m["queue_depth"], QUEUE_WARN, QUEUE_CRIT),
        "utilisation": level(m["utilisation"], UTIL_WARN, UTIL_CRIT),
        "error_rate": level(m["error_rate"], ERROR_WARN, ERROR_CRIT),
    }
    if m["agents"] == 0 and m["queue_depth"] > 0:
        advice = "no agent is connected while work waits: start an agent"
    elif levels["queue_depth"] != "ok" and levels["utilisation"] != "ok":
        advice = (
            "agents are saturated and work is queueing: add machines (more agents on the current ones will contend)"
        )
    elif levels["queue_depth"] != "ok":
        advice = "work is queueing while agents idle: check capabilities and routing, or add agents of the needed kind"
    elif levels["utilisation"] == "critical":
        advice = "agents are near saturation: add agents before the queue grows"
    else:
        advice = "no scaling action needed"
    return {"metrics": m, "levels": levels, "recommendation": advice}


def proposals(rep: dict[str, Any]) -> list[dict[str, str]]:
    levels, out = rep["levels"], []
    if levels["error_rate"] != "ok":
        out.append(
            {
                "title": "Find why tasks dead-letter",
                "detail": f"error rate {rep['metrics']['error_rate']}: "
                "add a failure summary per reason to the dashboard and a retry policy per reason",
            }
        )
    if levels["queue_depth"] != "ok":
        out.append({"title": "Scale the fleet", "detail": rep["recommendation"]})
    if levels["utilisation"] == "ok" and rep["metrics"]["agents"]:
        out.append(
            {
                "title": "Use idle capacity",
                "detail": "agents have spare capacity: let the improving state "
                "scan more repositories or run their slower checks",
            }
        )
    return out[:MAX_PROPOSALS]


async def run_cycle(auto: Runtime) -> None:
    hub = auto.hub
    now = hub.clock.now_ms()
    rep = report(metrics(hub))
    rows = [
        PutRecord(
            RecordRow(
                PROPOSAL_KIND,
                f"{now}-scalability",
                now,
                json.dumps(
                    {"id": f"{now}-scalability", "type": "scalability", "title": "Scalability report", **rep, "ts": now}
                ),
            )
        )
    ]
    for i, p in enumerate(proposals(rep)):
        key = f"{now}-{i}"
        rows.append(
            PutRecord(RecordRow(PROPOSAL_KIND, key, now, json.dumps({"id": key, "type": "feature", **p, "ts": now})))
        )
    await hub.store.write(rows)
