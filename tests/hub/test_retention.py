"""Task counters kept as tasks change, and retention (hub/retention.py, TaskQueue.prune): finished tasks beyond the
policy leave the API and the database, live ones and what they depend on stay, and a restart agrees."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hub.retention import RetentionPolicy, due_for_pruning, prune_once
from hub.settings import HubSettings
from hub.tasks import Task, TaskStatus
from shared.agent_sim import AgentSim, Received
from tests.conftest import SCALE, HubHandle

MakeHub = Callable[..., Awaitable[HubHandle]]
NOBODY = {"needed_capabilities": ["nobody-has-this"]}
"""Keeps a task queued: no agent offers the capability."""


async def wait_until(handle: HubHandle, predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    """Wait until ``predicate`` holds, re-checking on every event the hub publishes (prunes publish one)."""
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(timeout_s * SCALE):
            while not predicate():
                await events.get()


async def listed(handle: HubHandle) -> list[dict[str, Any]]:
    r = await handle.http.get("/api/tasks", params={"limit": 10_000})
    assert r.status_code == 200, r.text
    return r.json()["tasks"]  # type: ignore[no-any-return]


async def assert_counts_exact(handle: HubHandle) -> dict[str, Any]:
    """/api/tasks/stats, /health and the dashboard snapshot agree with a recount of every task the API lists."""
    tasks = await listed(handle)
    stats = (await handle.http.get("/api/tasks/stats")).json()
    by_status = Counter(t["status"] for t in tasks)
    assert stats["by_status"] == {s.value: by_status.get(s.value, 0) for s in TaskStatus}
    assert stats["total"] == len(tasks) and stats["dead_letter"] == by_status.get("dead_letter", 0)
    queued = Counter(t["priority_name"] for t in tasks if t["status"] == "queued")
    assert stats["by_priority"] == {p: queued.get(p, 0) for p in ("urgent", "high", "normal", "low")}
    assert stats["by_outcome"] == dict(Counter(t["outcome"] for t in tasks if t["status"] == "completed"))
    health = (await handle.http.get("/health")).json()["tasks"]
    assert health == {
        "queued": by_status["queued"],
        "in_flight": by_status["assigned"] + by_status["working"],
        "quarantined": 0,
    }
    snap = (await handle.http.get("/api/dashboard/state")).json()
    dead = sorted((t for t in tasks if t["status"] == "dead_letter"), key=lambda t: t["updated_at"], reverse=True)
    assert [t["id"] for t in snap["dead_letter_tasks"]] == [t["id"] for t in dead][:100]
    recent = sorted(tasks, key=lambda t: t["updated_at"], reverse=True)[:100]
    assert {t["id"] for t in snap["recent_tasks"]} == {t["id"] for t in recent}
    assert {t["id"] for t in snap["in_flight_tasks"]} == {
        t["id"] for t in tasks if t["status"] in ("assigned", "working")
    }
    return stats  # type: ignore[no-any-return]


async def next_assignment(sim: AgentSim, seen: int) -> Received:
    await sim.wait_for(lambda m: m.get("type") == "task_assign" and len(sim.received) > seen)
    return sim.received[seen]


async def test_counters_stay_exact_across_every_transition(hub: HubHandle, make_agent: Any) -> None:
    """Submit, assign, accept, progress, complete, retry, dead-letter, cancel, cascade, requeue and prune each keep
    every count, the priority lanes and the dashboard's lists exact."""
    await assert_counts_exact(hub)
    waiting = [await hub.submit(priority=p, **NOBODY) for p in ("urgent", "high", "low")]
    child = await hub.submit(depends_on=[waiting[0]], **NOBODY)
    await assert_counts_exact(hub)  # submit

    sim = await make_agent(behaviour="ignore")
    first = await hub.submit(description="work", max_retries=2)
    rec = await next_assignment(sim, 0)
    assert rec.task_id == first
    await assert_counts_exact(hub)  # assign
    await sim.send({"type": "task_accepted", "task_id": first, "generation": rec.generation})
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "accepted")
    await assert_counts_exact(hub)  # accept
    await sim.send({"type": "task_failed", "task_id": first, "generation": rec.generation, "error": "once"})
    rec = await next_assignment(sim, 1)
    await assert_counts_exact(hub)  # retried, then assigned again
    await sim.send({"type": "task_failed", "task_id": first, "generation": rec.generation, "error": "twice"})
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "dead_letter")
    await assert_counts_exact(hub)  # dead-letter

    second = await hub.submit(description="done well")
    rec = await next_assignment(sim, 2)
    await sim.send(
        {"type": "task_complete", "task_id": second, "generation": rec.generation, "result": {"status": "success"}}
    )
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "complete")
    assert (await hub.task(second))["status"] == "completed"
    await assert_counts_exact(hub)  # complete

    assert (await hub.http.post(f"/api/tasks/{waiting[0]}/cancel")).status_code == 200
    assert (await hub.task(child))["status"] == "dead_letter", "the dependent fails with it"
    await assert_counts_exact(hub)  # cancel and its cascade
    assert (await hub.http.post(f"/api/tasks/{waiting[0]}/retry")).status_code == 200
    assert (await hub.http.post(f"/api/tasks/{first}/retry")).status_code == 200
    stats = await assert_counts_exact(hub)  # requeue
    assert stats["by_status"]["cancelled"] == 0

    assert (await hub.http.post(f"/api/tasks/{waiting[2]}/cancel")).status_code == 200
    policy = RetentionPolicy(
        max_kept={s: 0 for s in (TaskStatus.COMPLETED, TaskStatus.DEAD_LETTER, TaskStatus.CANCELLED)},
        max_age_ms=10**12,
        batch=1000,
    )
    assert await prune_once(hub.hub, policy) >= 2
    stats = await assert_counts_exact(hub)  # prune
    assert stats["by_status"]["completed"] == stats["by_status"]["cancelled"] == 0
    assert (await hub.http.get(f"/api/tasks/{second}")).status_code == 404


def done(task_id: str, *, updated_at: int, depended: bool = False) -> tuple[Task, bool]:
    return Task(id=task_id, description="d", created_at=0, updated_at=updated_at, status=TaskStatus.COMPLETED), depended


@pytest.mark.parametrize(
    ("case", "tasks", "max_kept", "limit", "pruned"),
    [
        ("under the count and young: nothing", [done("a", updated_at=50), done("b", updated_at=60)], 5, 10, []),
        (
            "over the count: the oldest go",
            [done("a", updated_at=50), done("b", updated_at=60), done("c", updated_at=70)],
            1,
            10,
            ["a", "b"],
        ),
        (
            "too old: pruned whatever the count",
            [done("a", updated_at=1), done("b", updated_at=2), done("c", updated_at=70)],
            5,
            10,
            ["a", "b"],
        ),
        (
            "depended on: kept, still counted",
            [done("a", updated_at=50, depended=True), done("b", updated_at=60), done("c", updated_at=70)],
            1,
            10,
            ["b", "c"],
        ),
        ("at most the batch limit", [done(str(n), updated_at=n) for n in range(1, 6)], 0, 2, ["1", "2"]),
    ],
)
def test_due_for_pruning(
    case: str, tasks: list[tuple[Task, bool]], max_kept: int, limit: int, pruned: list[str]
) -> None:
    """Oldest first: beyond the count or past the age, except tasks something may still need."""
    protected = {t.id for t, depended in tasks if depended}
    out = due_for_pruning(
        [t for t, _ in tasks], len(tasks), max_kept, cutoff_ms=10, kept=lambda t: t.id in protected, limit=limit
    )
    assert [t.id for t in out] == pruned


def stored_ids(handle: HubHandle) -> tuple[set[str], Counter[str]]:
    """Task ids and trajectory rows per task, read straight from the hub's database file."""
    with sqlite3.connect(f"file:{handle.data_dir / 'agentcom.db'}?mode=ro", uri=True) as db:
        tasks = {row[0] for row in db.execute("SELECT id FROM tasks")}
        rows = Counter(row[0] for row in db.execute("SELECT task_id FROM trajectory"))
    return tasks, rows


async def work(sim: AgentSim, seen: int, outcome: str) -> str:
    """Take the next assignment, stream one execution event, and complete or fail it."""
    rec = await next_assignment(sim, seen)
    gen = rec.generation
    await sim.send({"type": "task_accepted", "task_id": rec.task_id, "generation": gen})
    await sim.send(
        {
            "type": "task_progress",
            "task_id": rec.task_id,
            "generation": gen,
            "execution_event": {"event_type": "tool_call", "tool_name": "read_file"},
        }
    )
    if outcome == "complete":
        await sim.send(
            {"type": "task_complete", "task_id": rec.task_id, "generation": gen, "result": {"status": "success"}}
        )
    else:
        await sim.send({"type": "task_failed", "task_id": rec.task_id, "generation": gen, "error": "no"})
    await sim.wait_for(
        lambda m: m.get("type") == "task_ack" and m.get("task_id") == rec.task_id and m.get("status") != "accepted"
    )
    return rec.task_id


async def test_retention_prunes_memory_and_disk_keeps_what_live_tasks_need(make_hub: MakeHub) -> None:
    """With small limits, finished tasks beyond them leave the API and the database (trajectories too), a completed
    task a queued one depends on stays, counts stay exact, and a restart agrees; then age prunes the rest."""
    policy = {
        "retention_completed_max": 2,
        "retention_dead_letter_max": 1,
        "retention_cancelled_max": 1,
        "retention_interval_s": 0.05,
    }
    handle = await make_hub(**policy)
    token = await handle.mint_token("worker")
    sim = AgentSim(handle.ws_url, "worker", token, behaviour="ignore")
    await sim.connect()
    try:
        seen = 0
        parent = await handle.submit(description="parent")
        assert await work(sim, seen, "complete") == parent
        seen += 1
        child = await handle.submit(depends_on=[parent], **NOBODY)
        completed = []
        for _ in range(4):
            await handle.submit(description="job")
            completed.append(await work(sim, seen, "complete"))
            seen += 1
        dead = []
        for _ in range(2):
            await handle.submit(description="doomed", max_retries=1)
            dead.append(await work(sim, seen, "fail"))
            seen += 1
        cancelled = [await handle.submit(**NOBODY) for _ in range(2)]
        for tid in cancelled:
            assert (await handle.http.post(f"/api/tasks/{tid}/cancel")).status_code == 200
    finally:
        await sim.close()

    # The parent stays while its child may run, and takes one of the two places kept for completed tasks.
    kept = {parent, child, completed[3], dead[1], cancelled[1]}
    gone = {*completed[:3], dead[0], cancelled[0]}
    await wait_until(handle, lambda: set(handle.hub.queue.tasks) == kept)
    stats = await assert_counts_exact(handle)
    assert stats["by_status"] | {"total": stats["total"]} == {
        "queued": 1,
        "assigned": 0,
        "working": 0,
        "completed": 2,
        "dead_letter": 1,
        "cancelled": 1,
        "total": 5,
    }
    for tid in gone:
        assert (await handle.http.get(f"/api/tasks/{tid}")).status_code == 404
    assert (await handle.task(parent))["status"] == "completed", "a queued task depends on it"
    on_disk, trajectory = stored_ids(handle)
    assert on_disk == kept
    assert not gone & set(trajectory) and trajectory[completed[3]] == 1, "pruned trajectories go, kept ones stay"

    await handle.server.stop()
    again = await make_hub(data_dir=handle.data_dir, **policy)
    assert {t["id"] for t in await listed(again)} == kept
    assert await assert_counts_exact(again) == stats

    await again.server.stop()
    aged = await make_hub(data_dir=handle.data_dir, **policy | {"retention_max_age_s": 0.001})
    await wait_until(aged, lambda: set(aged.hub.queue.tasks) == {parent, child})
    assert (await aged.http.post(f"/api/tasks/{child}/cancel")).status_code == 200
    await wait_until(aged, lambda: not aged.hub.queue.tasks)
    await assert_counts_exact(aged)
    assert stored_ids(aged) == (set(), Counter())


def test_retention_settings_have_the_documented_defaults() -> None:
    """10,000 completed (and dead-letter, cancelled) tasks kept, for at most 7 days."""
    policy = RetentionPolicy.from_settings(HubSettings())
    assert set(policy.max_kept.values()) == {10_000} and policy.max_age_ms == 7 * 24 * 3600 * 1000


async def test_pruning_forgets_idempotency_keys_and_sequence_counters(make_hub: MakeHub) -> None:
    """A pruned task takes its idempotency key and trajectory counter with it: nothing per task outlives it."""
    handle = await make_hub(retention_cancelled_max=0, retention_interval_s=0.05)
    r = await handle.http.post(
        "/api/tasks", json={"description": "keyed", **NOBODY}, headers={"Idempotency-Key": "once-only"}
    )
    assert r.status_code == 201, r.text
    first = r.json()["task_id"]
    handle.hub.trajectory._seq(first)  # as if an agent had streamed one event for it
    assert (await handle.http.post(f"/api/tasks/{first}/cancel")).status_code == 200
    await wait_until(handle, lambda: first not in handle.hub.queue.tasks)
    assert not handle.hub.queue.submissions and first not in handle.hub.trajectory._next_seq
    again = await handle.http.post(
        "/api/tasks", json={"description": "keyed", **NOBODY}, headers={"Idempotency-Key": "once-only"}
    )
    assert again.status_code == 201 and again.json()["task_id"] != first, again.text
