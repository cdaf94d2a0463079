"""What the dashboard shows, built by pure functions over the hub's state (no I/O, ``now`` passed in).

:func:`build_snapshot` is the whole picture sent on connect; :func:`task_summary` is one task as every panel shows
it; :func:`health` turns the state into conditions; :class:`Series` keeps throughput and latency per time bucket
for the charts and :class:`Activity` the live tool-call counters per task and agent. Nothing here ever emits a
token: metadata values under a key naming a token, key, secret or password are redacted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.repos.view import change_view
from hub.tasks import IN_FLIGHT, Priority, Task, TaskStatus

RECENT_LIMIT = 100
LIST_LIMIT = 100
SECRET_WORDS = ("token", "key", "secret", "password", "passwd", "credential")
REDACTED = "[redacted]"
STUCK_WARN_MS = 5 * 60_000
"""An in-flight task without any update for this long is reported as stuck (the sweep reclaims it later)."""
FAILURE_RATE_CRITICAL = 0.5
MIN_ENDED_FOR_RATE = 3


def clip(text: Any, limit: int) -> Any:
    if isinstance(text, str) and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact(value: Any, limit: int = 500, depth: int = 0) -> Any:
    """A copy of ``value`` with secret-named keys masked, long strings clipped and deep nesting cut.

    Numbers under such keys stay (``tokens_used`` is a count, not a credential); anything else is masked.
    """
    if depth > 4:
        return "…"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED
            if is_secret_key(str(k)) and not isinstance(v, int | float | None)
            else redact(v, limit, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, limit, depth + 1) for v in list(value)[:50]]
    return clip(value, limit)


def task_summary(task: Task) -> dict[str, Any]:
    """One task as the panels show it: no metadata, no result body, clipped texts."""
    return {
        "id": task.id,
        "description": clip(task.description, 300),
        "status": str(task.status),
        "priority": task.priority,
        "priority_name": Priority(task.priority).name.lower(),
        "outcome": task.outcome,
        "assigned_to": task.assigned_to,
        "submitted_by": task.submitted_by,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "assigned_at": task.assigned_at,
        "accepted_at": task.accepted_at,
        "completed_at": task.completed_at,
        "retry_count": task.retry_count,
        "max_retries": task.max_retries,
        "last_error": clip(task.last_error, 300),
        "dead_letter_reason": task.dead_letter_reason,
        "tokens_used": task.tokens_used,
        "needed_capabilities": task.needed_capabilities,
        "goal_id": task.goal_id,
        "executor": task.executor,
        "complexity_tier": task.complexity_tier,
        "waiting_reason": task.waiting_reason,
    }


def task_detail(task: Task) -> dict[str, Any]:
    """Everything the task detail view shows, still without secrets."""
    result = task.result or {}
    return {
        **task_summary(task),
        "description": clip(task.description, 10_000),
        "metadata": redact(task.metadata),
        "depends_on": task.depends_on,
        "repo": task.repo,
        "branch": task.branch,
        "generation": task.generation,
        "success_criteria": [clip(c, 500) for c in task.success_criteria[:20]],
        "file_hints": [clip(h.get("path"), 300) for h in task.file_hints[:20]],
        "verification_status": (task.verification_report or {}).get("outcome"),
        "routing_decision": redact(task.routing_decision) if task.routing_decision else None,
        "result": redact({k: result[k] for k in ("status", "output", "error", "reason") if k in result}, 4000),
        "history": [
            {"event": h.get("event"), "timestamp": h.get("timestamp"), "details": redact(h.get("details"))}
            for h in task.history[-50:]
        ],
        "change": change_view(task.change),
        "base_commit": task.base_commit,
    }


def timeline_entry(event: Mapping[str, Any], limit: int = 1000) -> dict[str, Any]:
    """An execution event for the page: large bodies dropped, strings clipped, secret-named keys masked."""
    entry: dict[str, Any] = redact({k: v for k, v in event.items() if k not in {"full", "messages", "kind"}}, limit)
    return entry


@dataclass
class _Bucket:
    completed: int = 0
    failed: int = 0
    latencies_ms: list[int] = field(default_factory=list)


def _percentile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Series:
    """Ended attempts per time bucket over a sliding window: completions, failures, submit-to-done latency."""

    def __init__(self, bucket_ms: int = 10_000, window_ms: int = 3_600_000, shown: int = 60) -> None:
        self.bucket_ms = bucket_ms
        self.window_ms = window_ms
        self.shown = shown
        self._buckets: dict[int, _Bucket] = {}

    def __repr__(self) -> str:
        return f"<Series buckets={len(self._buckets)} bucket_ms={self.bucket_ms}>"

    def observe(self, at_ms: int, ok: bool, latency_ms: int | None = None) -> None:
        bucket = self._buckets.setdefault(at_ms - at_ms % self.bucket_ms, _Bucket())
        if ok:
            bucket.completed += 1
            if latency_ms is not None and len(bucket.latencies_ms) < 10_000:
                bucket.latencies_ms.append(max(0, latency_ms))
        else:
            bucket.failed += 1

    def seed(self, tasks: Iterable[Task], now_ms: int) -> None:
        """Rebuild the window from task records (after a restart the charts are not empty)."""
        since = now_ms - self.window_ms
        for task in tasks:
            if task.status is TaskStatus.COMPLETED and task.completed_at and task.completed_at >= since:
                self.observe(task.completed_at, True, task.completed_at - task.created_at)
            for entry in task.history:
                if entry.get("event") in ("retried", "dead_letter") and int(entry.get("timestamp") or 0) >= since:
                    self.observe(int(entry["timestamp"]), False)

    def prune(self, now_ms: int) -> None:
        oldest = now_ms - self.window_ms
        for start in [s for s in self._buckets if s < oldest]:
            del self._buckets[start]

    def totals(self, now_ms: int) -> tuple[int, int]:
        """Completed and failed attempts within the window."""
        since = now_ms - self.window_ms
        live = [b for s, b in self._buckets.items() if s >= since]
        return sum(b.completed for b in live), sum(b.failed for b in live)

    def view(self, now_ms: int) -> dict[str, Any]:
        """The last ``shown`` buckets, oldest first, as parallel arrays for the charts."""
        last = now_ms - now_ms % self.bucket_ms
        starts = [last - i * self.bucket_ms for i in range(self.shown - 1, -1, -1)]
        buckets = [self._buckets.get(s, _Bucket()) for s in starts]
        completed, failed = self.totals(now_ms)
        return {
            "bucket_ms": self.bucket_ms,
            "start": starts[0],
            "completed": [b.completed for b in buckets],
            "failed": [b.failed for b in buckets],
            "p50_ms": [_percentile(b.latencies_ms, 0.5) for b in buckets],
            "p95_ms": [_percentile(b.latencies_ms, 0.95) for b in buckets],
            "window_ms": self.window_ms,
            "window_completed": completed,
            "window_failed": failed,
        }


class Activity:
    """Live counters from execution events: per task (tool calls, tokens, iteration) and each agent's last event."""

    def __init__(self, max_tasks: int = 2000) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self._max_tasks = max_tasks

    def observe(self, event: Mapping[str, Any]) -> dict[str, Any]:
        task_id = str(event.get("task_id"))
        progress = self.tasks.pop(task_id, None) or {
            "events": 0,
            "tool_calls": 0,
            "tokens_so_far": None,
            "iteration": None,
            "cost_usd": None,
        }
        self.tasks[task_id] = progress  # re-inserted: the dict stays in least-recently-updated order
        progress["events"] += 1
        progress["last_at"] = event.get("timestamp")
        if event.get("event_type") == "tool_call":
            progress["tool_calls"] += 1
            progress["last_tool"] = clip(event.get("tool_name"), 80)
        for key in ("tokens_so_far", "iteration"):
            if isinstance(event.get(key), int):
                progress[key] = event[key]
        if isinstance(event.get("cost_usd"), int | float):
            progress["cost_usd"] = round((progress["cost_usd"] or 0) + float(event["cost_usd"]), 6)
        if len(self.tasks) > self._max_tasks:
            del self.tasks[next(iter(self.tasks))]
        if event.get("agent_id"):
            self.agents[str(event["agent_id"])] = {
                "task_id": task_id,
                "event_type": clip(event.get("event_type"), 64),
                "tool_name": clip(event.get("tool_name"), 80),
                "timestamp": event.get("timestamp"),
            }
        return progress


def health(
    agents: list[dict[str, Any]],
    in_flight: Iterable[Task],
    stats: Mapping[str, Any],
    totals: tuple[int, int],
    now_ms: int,
    stuck_warn_ms: int = STUCK_WARN_MS,
) -> dict[str, Any]:
    """Conditions worth a glance: ``ok`` when none, ``warning`` for any, ``critical`` for a failure rate > 50 %."""
    conditions: list[dict[str, Any]] = []

    def add(cid: str, severity: str, message: str, **details: Any) -> None:
        conditions.append({"id": cid, "severity": severity, "message": message, **details})

    online = [a for a in agents if a.get("status") == "online"]
    queued = int(stats.get("by_status", {}).get("queued", 0))
    if not online:
        add("no_agents", "warning", "No agents connected" + (f"; {queued} tasks waiting" if queued else ""))
    gone = [a["agent_id"] for a in agents if a.get("status") != "online"]
    if gone:
        add("agents_offline", "warning", f"{len(gone)} agent(s) seen before are offline", agents=gone[:20])
    flagged = [a["agent_id"] for a in online if "unresponsive" in a.get("flags", ())]
    if flagged:
        add(
            "agents_unresponsive",
            "warning",
            f"{len(flagged)} agent(s) missed an acceptance deadline",
            agents=flagged[:20],
        )
    stuck = [t.id for t in in_flight if t.status in IN_FLIGHT and now_ms - t.updated_at >= stuck_warn_ms]
    if stuck:
        add(
            "stuck_tasks",
            "warning",
            f"{len(stuck)} task(s) without an update for {stuck_warn_ms // 60_000}+ min",
            tasks=stuck[:20],
        )
    completed, failed = totals
    ended = completed + failed
    if ended >= MIN_ENDED_FOR_RATE and failed / ended > FAILURE_RATE_CRITICAL:
        add(
            "failure_rate",
            "critical",
            f"{round(100 * failed / ended)}% of attempts failed in the last hour",
            failed=failed,
            ended=ended,
        )
    dead = int(stats.get("dead_letter", 0))
    if dead:
        add("dead_letter", "warning", f"{dead} task(s) in dead-letter")
    status = "critical" if any(c["severity"] == "critical" for c in conditions) else ("warning" if conditions else "ok")
    return {"status": status, "conditions": conditions}


def agent_view(view: dict[str, Any], activity: Activity) -> dict[str, Any]:
    return {**view, "last_event": activity.agents.get(view["agent_id"])}


def build_snapshot(
    *,
    in_flight: Iterable[Task],
    queued_in_order: Iterable[Task],
    recent: Iterable[Task],
    dead_letter: Iterable[Task],
    agents: list[dict[str, Any]],
    stats: dict[str, Any],
    series: Series,
    activity: Activity,
    now_ms: int,
    started_at: int,
    stuck_warn_ms: int = STUCK_WARN_MS,
) -> dict[str, Any]:
    """The whole picture for a newly connected page, from bounded views (in flight: at most one task per agent;
    the others cut at their limits here), so its cost never grows with the tasks stored."""
    in_flight = [t for t in in_flight if t.status in IN_FLIGHT]
    queued = list(itertools.islice(queued_in_order, LIST_LIMIT))
    recent = list(itertools.islice(recent, RECENT_LIMIT))
    dead = [t for t in itertools.islice(dead_letter, LIST_LIMIT) if t.status is TaskStatus.DEAD_LETTER]
    oldest_queued = min((t.created_at for t in queued), default=None)
    return {
        "timestamp": now_ms,
        "started_at": started_at,
        "uptime_ms": now_ms - started_at,
        "health": health(agents, in_flight, stats, series.totals(now_ms), now_ms, stuck_warn_ms),
        "agents": [agent_view(a, activity) for a in agents],
        "queue": {**stats, "oldest_queued_at": oldest_queued},
        "queued_tasks": [task_summary(t) for t in queued],
        "in_flight_tasks": [task_summary(t) for t in in_flight],
        "recent_tasks": [task_summary(t) for t in recent],
        "dead_letter_tasks": [task_summary(t) for t in dead],
        "progress": {t.id: activity.tasks[t.id] for t in in_flight if t.id in activity.tasks},
        "series": series.view(now_ms),
        "limits": {"recent": RECENT_LIMIT, "list": LIST_LIMIT},
        # Panels that arrive with their own issues fill these keys; the page shows a panel once one is not null.
        "hub_fsm": None,
        "goals": None,
        "costs": None,
    }
