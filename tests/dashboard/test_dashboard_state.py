"""The dashboard's pure parts: redaction, task summaries, health conditions, chart series, snapshot size."""

from __future__ import annotations

import json

from hub import dashboard_state as DS
from hub.tasks import Task, TaskStatus

NOW = 1_700_000_000_000


def make_task(n: int, status: TaskStatus = TaskStatus.QUEUED, **fields) -> Task:
    task = Task(
        id=f"task-{n:016x}",
        description=f"task number {n} " + "x" * 80,
        created_at=NOW - 60_000 + n,
        updated_at=NOW - 30_000 + n,
        status=status,
        **fields,
    )
    if status in (TaskStatus.ASSIGNED, TaskStatus.WORKING):
        task.assigned_to = f"agent-{n % 100}"
    if status is TaskStatus.COMPLETED:
        task.completed_at, task.outcome = task.updated_at, "verified"
    return task


def agent(n: int, status: str = "online", **extra) -> dict:
    return {
        "agent_id": f"agent-{n}",
        "name": f"agent-{n}",
        "status": status,
        "fsm_state": "idle",
        "flags": [],
        "capabilities": ["code"],
        "resources": {},
        "last_seen": NOW,
        "last_state_change": NOW,
        **extra,
    }


def test_metadata_secrets_are_redacted_at_any_depth():
    """Values under keys naming a token, key, secret or password never reach the page."""
    out = DS.redact(
        {
            "api_key": "sk-1",
            "nested": {"GITHUB_TOKEN": "ghp", "ok": "fine"},
            "list": [{"client_secret": "s"}],
            "password": "p",
            "note": "y" * 900,
        }
    )
    text = json.dumps(out)
    assert [w for w in ("sk-1", "ghp", '"s"', '"p"') if w in text] == []
    assert out["nested"]["ok"] == "fine" and out["api_key"] == DS.REDACTED
    assert DS.redact({"tokens_used": 1200, "max_tokens": None}) == {"tokens_used": 1200, "max_tokens": None}
    assert len(out["note"]) == 500


def test_task_summary_has_no_metadata_or_result_body():
    """The summary every panel shows leaves metadata and results out; the detail view redacts them."""
    task = make_task(1, TaskStatus.COMPLETED, metadata={"deploy_token": "t0k3n"}, result={"output": "done"})
    assert "metadata" not in DS.task_summary(task) and "result" not in DS.task_summary(task)
    detail = DS.task_detail(task)
    assert detail["metadata"] == {"deploy_token": DS.REDACTED}
    assert detail["result"] == {"output": "done"}


def test_health_is_ok_with_agents_and_no_trouble():
    assert DS.health([agent(1)], [], {"by_status": {}, "dead_letter": 0}, (5, 0), NOW) == {
        "status": "ok",
        "conditions": [],
    }


def test_health_reports_each_condition():
    """No agents, offline agents, stuck tasks and dead-letter warn; a failure rate above 50 % is critical."""
    stuck = make_task(7, TaskStatus.WORKING)
    stuck.updated_at = NOW - DS.STUCK_WARN_MS - 1
    h = DS.health([agent(1, status="offline")], [stuck], {"by_status": {"queued": 4}, "dead_letter": 2}, (1, 3), NOW)
    ids = {c["id"]: c for c in h["conditions"]}
    assert set(ids) == {"no_agents", "agents_offline", "stuck_tasks", "failure_rate", "dead_letter"}
    assert h["status"] == "critical"
    assert "4 tasks waiting" in ids["no_agents"]["message"]
    assert ids["stuck_tasks"]["tasks"] == [stuck.id]
    assert DS.health([agent(1)], [], {"dead_letter": 0}, (0, 2), NOW)["conditions"] == [], "too few to judge"


def test_series_buckets_completions_failures_and_latency():
    series = DS.Series(bucket_ms=10_000, window_ms=60_000, shown=6)
    for latency in (100, 200, 300, 400):
        series.observe(NOW + 1, True, latency)
    series.observe(NOW - 5_000, False)
    series.observe(NOW - 120_000, True, 5)  # outside the window
    view = series.view(NOW + 5_000)
    assert len(view["completed"]) == 6
    assert view["completed"][-1] == 4 and view["failed"][-2] == 1
    assert view["p50_ms"][-1] == 300 and view["p95_ms"][-1] == 400
    assert series.totals(NOW + 5_000) == (4, 1)
    series.prune(NOW)
    assert series.totals(NOW + 10**9) == (0, 0)


def test_series_seeds_from_task_records():
    done = make_task(1, TaskStatus.COMPLETED)
    retried = make_task(2)
    retried.history.append({"event": "retried", "timestamp": NOW - 5000, "details": {}})
    series = DS.Series()
    series.seed([done, retried], NOW)
    assert series.totals(NOW) == (1, 1)


def test_activity_counts_tool_calls_and_tokens():
    activity = DS.Activity(max_tasks=2)
    for n in range(3):
        activity.observe(
            {
                "task_id": "t1",
                "agent_id": "a1",
                "event_type": "tool_call",
                "tool_name": f"tool{n}",
                "iteration": n,
                "tokens_so_far": 100 * n,
                "cost_usd": 0.01,
            }
        )
    activity.observe({"task_id": "t1", "agent_id": "a1", "event_type": "output", "text": "hi"})
    assert activity.tasks["t1"] | {"last_at": None} == {
        "events": 4,
        "tool_calls": 3,
        "tokens_so_far": 200,
        "iteration": 2,
        "cost_usd": 0.03,
        "last_tool": "tool2",
        "last_at": None,
    }
    assert activity.agents["a1"]["event_type"] == "output"
    activity.observe({"task_id": "t2"}), activity.observe({"task_id": "t3"})
    assert list(activity.tasks) == ["t2", "t3"], "bounded, least recently updated dropped first"


def test_snapshot_of_100_agents_and_1000_tasks_is_small_and_fast():
    """The snapshot stays bounded (recent 100, lists of 100) and builds in milliseconds."""
    statuses = [TaskStatus.QUEUED] * 5 + [TaskStatus.COMPLETED] * 3 + [TaskStatus.DEAD_LETTER, TaskStatus.CANCELLED]
    tasks = {t.id: t for t in (make_task(n, statuses[n % 10], metadata={"api_token": "leak"}) for n in range(900))}
    tasks |= {t.id: t for t in (make_task(n, TaskStatus.WORKING) for n in range(900, 1000))}
    agents = [agent(n, fsm_state="working", resources={"cpu_percent": 50.0}) for n in range(100)]
    stats = {"by_status": {"queued": 450}, "by_priority": {}, "dead_letter": 90, "total": 1000}
    queued = [t for t in tasks.values() if t.status is TaskStatus.QUEUED]
    by_update = sorted(tasks.values(), key=lambda t: t.updated_at, reverse=True)
    snap = DS.build_snapshot(
        in_flight=[t for t in tasks.values() if t.status is TaskStatus.WORKING],
        queued_in_order=iter(queued),
        recent=iter(by_update),
        dead_letter=(t for t in by_update if t.status is TaskStatus.DEAD_LETTER),
        agents=agents,
        stats=stats,
        series=DS.Series(),
        activity=DS.Activity(),
        now_ms=NOW,
        started_at=NOW - 1000,
    )
    text = json.dumps(snap)  # its build time is measured by bench/bench_dashboard.py, not asserted here
    assert len(snap["recent_tasks"]) == 100 and len(snap["queued_tasks"]) == 100
    assert len(snap["dead_letter_tasks"]) == 90 and len(snap["in_flight_tasks"]) == 100
    assert len(snap["agents"]) == 100
    assert "leak" not in text
    assert len(text) < 400_000, f"snapshot is {len(text)} bytes"
    assert {"hub_fsm", "goals", "costs"} <= snap.keys()
