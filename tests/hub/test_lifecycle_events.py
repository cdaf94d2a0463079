"""Typed lifecycle events (hub/lifecycle.py, hub/listeners.py): stored in the commit of the change they tell, given
to lossless listeners in order after it (a listener behind, or started after a restart, reads the table), served at
GET /api/tasks/{id}/events, deleted with a pruned task, and numbered without reuse across restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hub import lifecycle as L
from hub.listeners import EventFeed
from hub.tasks import EndReason
from tests.conftest import SCALE, HubHandle

MakeHub = Callable[..., Awaitable[HubHandle]]
NOBODY = {"needed_capabilities": ["nobody-has-this"]}
"""Keeps a task queued: no agent offers the capability."""


async def submit_batch(handle: HubHandle, n: int, prefix: str = "t") -> list[str]:
    r = await handle.http.post(
        "/api/tasks/batch", json={"tasks": [{"description": f"{prefix}{i}", **NOBODY} for i in range(n)]}
    )
    assert r.status_code == 201, r.text
    return [t["task_id"] for t in r.json()["tasks"]]


async def events_of(handle: HubHandle, task_id: str, **params: Any) -> list[dict[str, Any]]:
    r = await handle.http.get(f"/api/tasks/{task_id}/events", params=params)
    assert r.status_code == 200, r.text
    return r.json()["events"]  # type: ignore[no-any-return]


async def take(feed: EventFeed, n: int, name: str, from_seq: int) -> list[L.LifecycleEvent]:
    """The next ``n`` events after ``from_seq`` (bounded in time)."""
    got: list[L.LifecycleEvent] = []
    async with asyncio.timeout(20 * SCALE), feed.subscribe_lossless(name, from_seq) as events:
        async for event in events:
            got.append(event)
            if len(got) == n:
                return got
    return got


class CursorListener:
    """A listener that keeps its cursor in a file and saves it after each event it has handled."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handled: list[L.LifecycleEvent] = []

    def cursor(self) -> int:
        return int(self.path.read_text()) if self.path.exists() else 0

    async def consume(self, feed: EventFeed, n: int) -> list[L.LifecycleEvent]:
        got: list[L.LifecycleEvent] = []
        async with asyncio.timeout(20 * SCALE), feed.subscribe_lossless("cursor-file", self.cursor()) as events:
            async for event in events:
                got.append(event)
                self.path.write_text(str(event.seq))
                if len(got) == n:
                    break
        self.handled += got
        return got


async def test_a_listener_that_sleeps_gets_all_5000_events_in_order(hub: HubHandle) -> None:
    """A listener that reads nothing while 5,000 events commit (its buffer holds 100) then gets every one, in order,
    without gaps or repeats: it catches up from the table."""
    feed = hub.hub.queue.feed
    start = feed.last_seq
    got: list[L.LifecycleEvent] = []
    awake = asyncio.Event()

    async with feed.subscribe_lossless("sleeper", start, buffer_size=100) as events:

        async def listen() -> None:
            await awake.wait()
            async for event in events:
                got.append(event)
                if len(got) == 5000:
                    return

        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(listen())
            ids = [tid for _ in range(5) for tid in await submit_batch(hub, 1000)]
            awake.set()
            async with asyncio.timeout(60 * SCALE):
                await listener
    assert [e.seq for e in got] == list(range(start + 1, start + 5001))
    assert all(isinstance(e, L.TaskSubmitted) for e in got)
    assert [e.task_id for e in got if isinstance(e, L.TaskSubmitted)] == ids
    assert events.n_overflows > 0 and events.n_read >= 4900, "it fell behind and read the table"


async def test_a_listener_lagging_while_events_keep_coming_misses_none(hub: HubHandle) -> None:
    """A listener that yields to the producers after every event, with a buffer of 10, while 20 batches commit:
    it switches between table and buffer many times and still gets each event once, in order."""
    feed = hub.hub.queue.feed
    start = feed.last_seq
    got: list[L.LifecycleEvent] = []
    async with feed.subscribe_lossless("lagging", start, buffer_size=10) as events:

        async def listen() -> None:
            async for event in events:
                got.append(event)
                await asyncio.sleep(0)
                if len(got) == 2000:
                    return

        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(listen())
            ids = [tid for _ in range(20) for tid in await submit_batch(hub, 100)]
            async with asyncio.timeout(60 * SCALE):
                await listener
    assert [e.seq for e in got] == list(range(start + 1, start + 2001))
    assert [e.task_id for e in got if isinstance(e, L.TaskSubmitted)] == ids
    assert events.n_overflows > 0


async def test_a_listener_keeping_up_reads_nothing_from_the_table(hub: HubHandle) -> None:
    """A listener that keeps up is served from its buffer once caught up: each event once, in order."""
    feed = hub.hub.queue.feed
    start = feed.last_seq
    async with feed.subscribe_lossless("keeper", start) as events:
        ids = await submit_batch(hub, 50)
        got = []
        async with asyncio.timeout(20 * SCALE):
            async for event in events:
                got.append(event)
                if len(got) == 50:
                    break
    assert [e.task_id for e in got if isinstance(e, L.TaskSubmitted)] == ids
    assert events.n_overflows == 0 and events.n_read == 0


async def test_a_listener_resumes_after_a_restart_from_its_stored_cursor(make_hub: MakeHub, tmp_path: Path) -> None:
    """A listener that saved its cursor gets, after a hub restart, exactly the events after it: none twice, none
    missed, numbered on from before the restart."""
    listener = CursorListener(tmp_path / "cursor")
    first = await make_hub()
    before = await submit_batch(first, 6, "before")
    handled = await listener.consume(first.hub.queue.feed, 4)
    assert [e.task_id for e in handled if isinstance(e, L.TaskSubmitted)] == before[:4]
    await first.server.stop()

    second = await make_hub(data_dir=first.data_dir)
    after = await submit_batch(second, 3, "after")
    resumed = await listener.consume(second.hub.queue.feed, 5)
    assert [e.task_id for e in resumed if isinstance(e, L.TaskSubmitted)] == before[4:] + after
    seqs = [e.seq for e in listener.handled]
    assert seqs == list(range(seqs[0], seqs[0] + 9))


async def test_events_are_stored_in_the_commit_that_answers(hub: HubHandle, make_agent: Any) -> None:
    """Once the API or the agent's ack has answered, the task's events are in the table (served by the endpoint):
    submitted, assigned, accepted and ended, with attempt, generation, outcome and usage."""
    tid = await hub.submit(description="stored")
    assert [e["kind"] for e in await events_of(hub, tid)] == ["task_submitted"]
    sim = await make_agent(
        result={
            "status": "success",
            "verification_status": "verified",
            "tokens_in": 12,
            "tokens_out": 3,
            "model_used": "m1",
        }
    )
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "complete")
    events = await events_of(hub, tid)
    assert [e["kind"] for e in events] == ["task_submitted", "task_assigned", "task_accepted", "task_ended"]
    ended = events[-1]
    assert (
        ended["outcome"],
        ended["then"],
        ended["reason"],
        ended["agent_id"],
        ended["attempt"],
        ended["generation"],
    ) == ("unverified", "completed", None, sim.agent_id, 1, 1)  # "verified" was claimed, but no check ran
    assert ended["usage"] == {"tokens_in": 12, "tokens_out": 3, "model": "m1"}  # the typed usage, read from v1 fields
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


async def test_history_and_events_tell_attempts_from_generations(hub: HubHandle, make_agent: Any) -> None:
    """A task failed once and then completed: the attempts are 1 and 2, the generations of those hand-outs 1 and 3
    (the retry itself moved it), in the history entries and in the TaskEnded events alike."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="twice", max_retries=3)
    for attempt in (1, 2):
        await sim.wait_for(lambda m, n=attempt: m.get("type") == "task_assign" and len(sim.received) >= n)
        rec = sim.received[-1]
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": rec.generation})
        report = (
            {"type": "task_failed", "task_id": tid, "generation": rec.generation, "error": "flaky"}
            if attempt == 1
            else {
                "type": "task_complete",
                "task_id": tid,
                "generation": rec.generation,
                "result": {"status": "success"},
            }
        )
        await sim.send(report)
        await sim.wait_for(
            lambda m, n=attempt: (
                m.get("type") == "task_ack"
                and m.get("status") in ("retried", "complete")
                and sum(a["status"] in ("retried", "complete") for a in sim.acks) >= n
            )
        )
    history = (await hub.task(tid))["history"]
    ends = [
        (h["event"], h["details"]["attempt"], h["details"]["generation"])
        for h in history
        if h["event"] in ("assigned", "accepted", "retried", "completed")
    ]
    assert ends == [
        ("assigned", 1, 1),
        ("accepted", 1, 1),
        ("retried", 1, 1),
        ("assigned", 2, 3),
        ("accepted", 2, 3),
        ("completed", 2, 3),
    ]
    ended = [e for e in await events_of(hub, tid) if e["kind"] == "task_ended"]
    assert [(e["then"], e["attempt"], e["generation"], e["reason"]) for e in ended] == [
        ("retried", 1, 1, "agent_error"),
        ("completed", 2, 3, None),
    ]


@pytest.mark.parametrize(
    ("reported", "recorded"),
    [
        ("repetition", "repetition"),
        ("max_iterations", "max_iterations"),
        ("budget", "budget"),
        ("wall_clock", "wall_clock"),
        ("context_overflow", "context_overflow"),
        ("model_error", "model_error"),
        (None, "agent_error"),
        ("sidecar_restarted", "agent_error"),
        ("dependency_failed", "agent_error"),
        ("timeout", "agent_error"),
        ("REPETITION", "agent_error"),
    ],
)
async def test_a_reported_guardrail_stop_is_the_dead_letter_reason(
    hub: HubHandle, make_agent: Any, reported: str | None, recorded: str
) -> None:
    """task_failed with a guardrail's code dead-letters under that code; any other reason (or none) is agent_error:
    an agent cannot claim a reason the hub decides itself."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="stops", max_retries=1)
    await sim.wait_for(lambda m: m.get("type") == "task_assign")
    rec = sim.received[0]
    frame = {"type": "task_failed", "task_id": tid, "generation": rec.generation, "error": "stopped"}
    await sim.send(frame | ({"reason": reported} if reported is not None else {}))
    await sim.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "dead_letter")
    task = await hub.task(tid)
    assert (task["status"], task["dead_letter_reason"]) == ("dead_letter", recorded)
    assert task["last_error"] == f"{recorded}: stopped"
    (ended,) = [e for e in await events_of(hub, tid) if e["kind"] == "task_ended"]
    assert (ended["then"], ended["reason"], ended["error"]) == ("dead_letter", recorded, "stopped")


def test_end_reason_knows_every_guardrail_stop() -> None:
    """The six guardrail stops of the issue (and the loop's two stuck detectors) are end reasons an agent reports."""
    for code in (
        "repetition",
        "max_iterations",
        "budget",
        "wall_clock",
        "context_overflow",
        "model_error",
        "no_progress",
        "format_errors",
    ):
        assert EndReason.reported(code) is EndReason(code)
    assert EndReason.reported("agent_lost") is EndReason.AGENT_ERROR


async def test_events_endpoint_pages_and_follows_the_read_rules(hub: HubHandle, make_agent: Any) -> None:
    """GET /api/tasks/{id}/events pages with after_seq and limit; a viewer reads it masked, an agent only for its own
    tasks (403 otherwise), an unknown task is 404."""
    owner_token = await hub.mint_token("owner")
    owner = {"Authorization": f"Bearer {owner_token}"}
    r = await hub.http.post("/api/tasks", json={"description": "mine", **NOBODY}, headers=owner)
    tid = r.json()["task_id"]
    for _ in range(3):  # cancel and requeue: more events
        assert (await hub.http.post(f"/api/tasks/{tid}/cancel")).status_code == 200
        assert (await hub.http.post(f"/api/tasks/{tid}/retry")).status_code == 200
    everything = await events_of(hub, tid)
    assert [e["kind"] for e in everything] == ["task_submitted"] + ["task_cancelled", "task_requeued"] * 3
    assert everything[1]["previous_status"] == "queued" and everything[2]["generation"] == 2
    page = await events_of(hub, tid, after_seq=everything[2]["seq"], limit=2)
    assert page == everything[3:5]
    r = await hub.http.get(f"/api/tasks/{tid}/events", params={"after_seq": everything[-1]["seq"]})
    assert r.json()["events"] == [] and r.json()["next_after_seq"] == everything[-1]["seq"]

    mine = await hub.http.get(f"/api/tasks/{tid}/events", headers=owner)
    assert mine.status_code == 200 and mine.json()["events"] == everything
    stranger = {"Authorization": f"Bearer {await hub.mint_token('stranger')}"}
    r = await hub.http.get(f"/api/tasks/{tid}/events", headers=stranger)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    viewer = {"Authorization": f"Bearer {await hub.mint_token('eyes', role='viewer')}"}
    r = await hub.http.get(f"/api/tasks/{tid}/events", headers=viewer)
    assert r.status_code == 200 and [e["seq"] for e in r.json()["events"]] == [e["seq"] for e in everything]
    assert (await hub.http.get("/api/tasks/task-nope/events")).status_code == 404
    for bad in ({"after_seq": -1}, {"after_seq": "x"}, {"limit": 2**64}):
        assert (await hub.http.get(f"/api/tasks/{tid}/events", params=bad)).status_code == 422


def rows_of(handle: HubHandle) -> dict[str | None, list[int]]:
    import sqlite3

    db = sqlite3.connect(handle.data_dir / "agentcom.db")
    try:
        out: dict[str | None, list[int]] = {}
        for task_id, seq in db.execute("SELECT task_id, seq FROM task_events ORDER BY seq"):
            out.setdefault(task_id, []).append(seq)
        return out
    finally:
        db.close()


async def test_a_pruned_task_takes_its_events_and_seq_numbers_are_never_reused(make_hub: MakeHub) -> None:
    """Retention deletes a pruned task's events in its commit and records tasks_pruned; after a restart the numbering
    goes on above every seq ever used, even those deleted."""
    handle = await make_hub(retention_cancelled_max=0, retention_interval_s=0.05)
    kept = await handle.submit(description="kept", **NOBODY)
    doomed = await handle.submit(description="doomed", **NOBODY)
    feed = handle.hub.queue.feed
    start = feed.last_seq
    async with feed.subscribe_lossless("pruning", start) as events:
        assert (await handle.http.post(f"/api/tasks/{doomed}/cancel")).status_code == 200
        async with asyncio.timeout(20 * SCALE):
            seen = [await anext(events), await anext(events)]
    cancelled, pruned = seen
    assert isinstance(cancelled, L.TaskCancelled) and cancelled.task_id == doomed
    assert isinstance(pruned, L.TasksPruned) and pruned.task_ids == (doomed,)
    rows = rows_of(handle)
    assert doomed not in rows and rows[kept] and rows[None] == [pruned.seq]
    assert (await handle.http.get(f"/api/tasks/{doomed}/events")).status_code == 404
    high = feed.last_seq
    await handle.server.stop()

    # The newest rows gone, the table's MAX(seq) would go back: AUTOINCREMENT remembers.
    import sqlite3

    db = sqlite3.connect(handle.data_dir / "agentcom.db")
    db.execute("DELETE FROM task_events WHERE seq >= ?", (start,))
    db.commit()
    db.close()
    again = await make_hub(data_dir=handle.data_dir)
    fresh = await again.submit(description="fresh", **NOBODY)
    (submitted,) = await events_of(again, fresh)
    assert submitted["seq"] == high + 1


async def test_an_unreadable_row_keeps_its_place(make_hub: MakeHub) -> None:
    """A stored event that cannot be read back reaches listeners as an ``unreadable`` event with its seq, never an
    exception: the listener's order stays whole."""
    handle = await make_hub()
    ids = await submit_batch(handle, 3)
    seqs = rows_of(handle)
    await handle.server.stop()
    import sqlite3

    db = sqlite3.connect(handle.data_dir / "agentcom.db")
    db.execute("UPDATE task_events SET body = ? WHERE seq = ?", ("{not json", seqs[ids[1]][0]))
    db.execute("UPDATE task_events SET body = ? WHERE seq = ?", (json.dumps({"seq": 1}), seqs[ids[2]][0]))
    db.commit()
    db.close()
    again = await make_hub(data_dir=handle.data_dir)
    got = await take(again.hub.queue.feed, 3, "reader", 0)
    assert [type(e) for e in got] == [L.TaskSubmitted, L.UnreadableEvent, L.UnreadableEvent]
    assert [e.seq for e in got] == [seqs[t][0] for t in ids]
    assert [e["kind"] for e in await events_of(again, ids[1])] == ["unreadable"]


async def test_the_dashboard_bus_still_gets_its_dicts(hub: HubHandle, make_agent: Any) -> None:
    """The lossy bus receives every lifecycle event as the dashboard's dict (names, reasons, outcome as before)."""
    with hub.hub.bus.subscribe() as bus:
        sim = await make_agent(behaviour="fail")
        tid = await hub.submit(description="fails", max_retries=1)
        await sim.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "dead_letter")
        await sim.settled()
        seen = []
        while not bus.empty():
            event = bus.get_nowait()
            if event.get("kind") == "task_event" and event.get("task_id") == tid:
                seen.append(event)
    assert [e["event"] for e in seen] == ["task_submitted", "task_assigned", "task_accepted", "task_dead_letter"]
    assert seen[-1]["reason"] == "agent_error" and seen[-1]["from_agent"] == sim.agent_id
    assert seen[-1]["status"] == "dead_letter" and seen[-1]["agent_id"] is None
    assert all(isinstance(e["seq"], int) for e in seen)


async def test_events_after_seq_bounds(hub: HubHandle) -> None:
    """Reading from a cursor past anything stored, or with absurd bounds, answers nothing rather than failing."""
    feed = hub.hub.queue.feed
    assert await feed.read(2**70, 10) == []
    assert await feed.read(-5, -5) == (await feed.read(0, 1))
