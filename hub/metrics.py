"""Prometheus metrics of one hub: what an operator graphs and alerts on (``GET /metrics``).

Each hub has its own registry (several hubs may share a process, as in the tests). Two kinds of metric:

- **read at scrape time** (:class:`HubCollector`): queue depth per lane, tasks per status, agents per state and
  their utilisation, store state, alert conditions: taken from the hub's own counters, never a scan;
- **counted as events happen** (:class:`HubMetrics`, fed by :func:`run_metrics`, a lossless listener of the
  lifecycle events): dispatch and task latency histograms, outcomes, loop terminations by reason, parser paths per
  model, tokens and cost per model. Counters start at zero with the process, as Prometheus expects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub import lifecycle as L
from hub.tasks import Priority

if TYPE_CHECKING:
    from hub.agents import AgentRegistry
    from hub.alerts import Alerts
    from hub.queue import TaskQueue
    from hub.settings import HubSettings
    from hub.store import Store


class Parts(Protocol):
    """What the metrics read of the hub (:class:`hub.hub.Hub` has it all)."""

    settings: HubSettings
    store: Store
    queue: TaskQueue
    agents: AgentRegistry
    alerts: Alerts
    metrics: HubMetrics


logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)
MAX_LABEL = 64
"""Longest label value kept (model names, reasons); longer ones are cut, so a hostile report cannot bloat a series."""
MAX_SERIES = 500
"""Distinct label values per labelled counter; past it, new values are counted as ``other``."""


def _label(value: Any, seen: set[str]) -> str:
    text = str(value)[:MAX_LABEL] if value not in (None, "") else "none"
    if text not in seen:
        if len(seen) >= MAX_SERIES:
            return "other"
        seen.add(text)
    return text


class HubMetrics:
    """The event-driven metrics of one hub, in its own registry."""

    def __init__(self, hub: Parts) -> None:
        self.hub = hub
        self.registry = CollectorRegistry(auto_describe=False)
        self._labels: dict[str, set[str]] = {}
        r = self.registry
        self.dispatch = Histogram(
            "agentcom_dispatch_seconds", "Time from submission to the first assignment.", buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.task_latency = Histogram(
            "agentcom_task_seconds", "Time from submission to completion.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.outcomes = Counter("agentcom_task_outcomes", "Attempts ended, by outcome and what followed.",
                                ("outcome", "then"), registry=r)  # fmt: skip
        self.terminations = Counter("agentcom_loop_terminations", "Agent loops ended, by reason.", ("reason",),
                                    registry=r)  # fmt: skip
        self.parse_paths = Counter("agentcom_parser_paths", "Tool calls parsed, by model and parser path.",
                                   ("model", "path"), registry=r)  # fmt: skip
        self.tokens = Counter("agentcom_model_tokens", "Model tokens reported, by model and direction.",
                              ("model", "direction"), registry=r)  # fmt: skip
        self.cost = Counter("agentcom_model_cost_usd", "Model cost reported, by model.", ("model",), registry=r)
        self.registry.register(HubCollector(hub))
        self.seq = 0
        """The ``seq`` of the last lifecycle event counted."""
        self._counted = asyncio.Condition()

    async def caught_up(self, seq: int) -> None:
        """Return once every event up to ``seq`` has been counted (what a scrape right after an action needs)."""
        async with self._counted:
            await self._counted.wait_for(lambda: self.seq >= seq)

    async def counted(self, seq: int) -> None:
        async with self._counted:
            self.seq = max(self.seq, seq)
            self._counted.notify_all()

    def label(self, name: str, value: Any) -> str:
        return _label(value, self._labels.setdefault(name, set()))

    def observe(self, event: L.LifecycleEvent) -> None:
        """Count one lifecycle event."""
        task = self.hub.queue.tasks.get(event.task_id) if isinstance(event, L.TaskEvent) else None
        if isinstance(event, L.TaskAssigned) and event.attempt == 1 and task is not None:
            self.dispatch.observe(max(0, event.at - task.created_at) / 1000)
        elif isinstance(event, L.TaskEnded):
            self.outcomes.labels(self.label("outcome", event.outcome), self.label("then", event.then)).inc()
            if event.then == "completed" and task is not None:
                self.task_latency.observe(max(0, event.at - task.created_at) / 1000)
            result = (task.result if task is not None else None) or {}
            reason = result.get("termination_reason") or (event.reason if event.outcome == "failed" else None)
            if reason:
                self.terminations.labels(self.label("reason", reason)).inc()
            self._usage(event.usage or {}, result.get("parse_stats"))

    def _usage(self, usage: dict[str, Any], parse_stats: Any) -> None:
        model = self.label("model", usage.get("model") or "unknown")
        for direction, key in (("in", "tokens_in"), ("out", "tokens_out")):
            n = usage.get(key)
            if isinstance(n, int) and 0 < n < 10**12:
                self.tokens.labels(model, direction).inc(n)
        usd = usage.get("cost_usd")
        if isinstance(usd, int | float) and 0 < usd < 10**9:
            self.cost.labels(model).inc(usd)
        if isinstance(parse_stats, dict):
            for by_model, paths in list(parse_stats.items())[:50]:
                if isinstance(paths, dict):
                    for path, n in list(paths.items())[:50]:
                        if isinstance(n, int) and 0 < n < 10**9:
                            self.parse_paths.labels(self.label("model", by_model), self.label("path", path)).inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HubCollector(Collector):
    """Gauges read from the hub at scrape time."""

    def __init__(self, hub: Parts) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        stats = hub.queue.stats()
        depth = GaugeMetricFamily("agentcom_queue_depth", "Queued tasks per priority lane.", labels=("lane",))
        for p in Priority:
            depth.add_metric((p.name.lower(),), stats["by_priority"].get(p.name.lower(), 0))
        yield depth
        tasks = GaugeMetricFamily("agentcom_tasks", "Tasks held, per status.", labels=("status",))
        for status, n in stats["by_status"].items():
            tasks.add_metric((status,), n)
        yield tasks
        views = hub.agents.views()
        states: dict[str, int] = {}
        for view in views:
            state = str(view.get("fsm_state") if view.get("status") == "online" else "offline")
            states[state] = states.get(state, 0) + 1
        agents = GaugeMetricFamily("agentcom_agents", "Agents, per state.", labels=("state",))
        for state, n in sorted(states.items()):
            agents.add_metric((state,), n)
        yield agents
        online = [v for v in views if v.get("status") == "online"]
        busy = sum(1 for v in online if v.get("current_task_id"))
        yield GaugeMetricFamily(
            "agentcom_agent_utilisation", "Share of online agents running a task.", busy / len(online) if online else 0
        )
        yield GaugeMetricFamily(
            "agentcom_store_degraded", "1 while the store cannot write.", 1 if hub.store.degraded else 0
        )
        yield GaugeMetricFamily(
            "agentcom_quarantined_tasks", "Stored tasks that could not be read.", hub.queue.n_quarantined
        )
        alerts = GaugeMetricFamily("agentcom_alerts", "Active alert conditions, by id and severity.",
                                   labels=("id", "severity", "acknowledged"))  # fmt: skip
        for condition in hub.alerts.current()["conditions"]:
            alerts.add_metric((condition["id"], condition["severity"], str(condition["acknowledged"]).lower()), 1)
        yield alerts


task_log = logging.getLogger("hub.tasks")
"""One line per task state change (``AGENTCOM_LOG_TASK_EVENTS``); with ``--log-format json`` its fields are keys."""


def log_event(event: L.LifecycleEvent) -> None:
    """The task lifecycle line of ``event``: what happened, to which task, with the event's short fields."""
    fields = {
        k: v for k, v in asdict(event).items() if isinstance(v, str | int | float | bool) and k not in ("seq", "at")
    }
    text = " ".join(f"{k}={v}" for k, v in fields.items() if k != "task_id")
    task_log.info("task %s %s %s", fields.get("task_id", "-"), event.kind, text, extra={"event": event.kind, **fields})


async def run_metrics(hub: Parts) -> None:
    """Count every lifecycle event from now on, and log it when asked (a supervised loop of the hub)."""
    async with hub.queue.feed.subscribe_lossless("metrics", from_seq=hub.queue.feed.delivered_seq) as events:
        async for event in events:
            try:
                hub.metrics.observe(event)
                if hub.settings.log_task_events and task_log.isEnabledFor(logging.INFO):
                    log_event(event)
            except Exception:  # a metric must never stop the hub; the event is simply not counted
                logger.exception("counting %s failed", event.kind)
            await hub.metrics.counted(event.seq)
