"""Stored values the hub computes with or reads back: a hostile or corrupt row never stops the sweeps or the start,
unreadable rows are quarantined, and awkward strings survive a restart unchanged."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hub.agents import Agent
from hub.clock import ManualClock
from hub.queue.commits import task_row as stored_row
from hub.settings import HubSettings
from hub.store.sqlite import UPSERT_TASK
from hub.sweeps import due_reclaims
from hub.task_shape import CorruptTask
from hub.tasks import EndReason, Task, TaskStatus
from shared.agent_sim import AgentSim
from shared.protocol import MAX_TASK_TIMEOUT_MS
from tests.conftest import SCALE
from tests.hub.hostile_json_hub import DEEP, nested, running, serves_a_task, strict_json

# --- stored values: sweeps, start, quarantine ---------------------------------------------------------------------


def task_row(task_id: str, now: int, **fields: Any) -> Task:
    task = Task(
        id=task_id,
        description=f"stored {task_id}",
        created_at=now,
        updated_at=now,
        generation=1,
        status=TaskStatus.WORKING,
        assigned_at=now,
        accepted_at=now,
    )
    for name, value in fields.items():
        setattr(task, name, value)
    return task


@contextmanager
def database(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """The database of a stopped hub, committed and closed after the block."""
    db = sqlite3.connect(data_dir / "agentcom.db")
    try:
        with db:
            yield db
    finally:
        db.close()


def write_rows(data_dir: Path, rows: list[tuple[Any, ...]]) -> None:
    """Insert raw task rows into a stopped hub's database."""
    with database(data_dir) as db:
        db.executemany(UPSERT_TASK, rows)


UNUSABLE_TIMEOUTS: list[Any] = [math.inf, -math.inf, math.nan, 1e308, 10**30, "soon", -5, 0, True, [1], {"ms": 1}]


@pytest.mark.parametrize("value", UNUSABLE_TIMEOUTS, ids=repr)
def test_due_reclaims_treats_an_unusable_timeout_as_absent(value: Any) -> None:
    """due_reclaims never raises on a stored timeout_ms: a non-number or non-finite one counts as absent, a
    finite one past 7 days as 7 days."""
    settings = HubSettings()
    now = 1_700_000_000_000
    task = task_row("task-x", now, assigned_to="a", metadata={"timeout_ms": value})
    agent = Agent("a", now)
    quiet_s = settings.stuck_working_after_s + 1
    due = due_reclaims([task], {"a": agent}, {}, now, now + int(quiet_s * 1000), settings)
    finite_positive = (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (value > 0)
    )
    assert [r.reason for r in due] == ([] if finite_positive else [EndReason.STUCK])
    later = now + MAX_TASK_TIMEOUT_MS + int((settings.stuck_after_timeout_grace_s + 1) * 1000)
    assert [r.reason for r in due_reclaims([task], {"a": agent}, {}, now, later, settings)] == [EndReason.STUCK]


async def test_stored_unusable_timeouts_never_stop_the_sweeps(tmp_path: Path) -> None:
    """Tasks stored with timeout_ms Infinity, NaN, 1e308, 10**30, a string or -5 are loaded and swept every
    interval without an error: the sweep still reclaims a lost agent's task, and the hub keeps serving."""
    data_dir = tmp_path / "hub"
    async with running(data_dir) as first:
        token = await first.mint_token("agent-x")
    clock = ManualClock()
    now = clock.now_ms()
    values = [math.inf, math.nan, 1e308, 10**30, "soon", -5]
    held = [
        task_row(f"task-held-{n}", now, assigned_to="agent-x", metadata={"timeout_ms": v}) for n, v in enumerate(values)
    ]
    lost = task_row("task-lost", now, assigned_to="agent-gone", max_retries=5)
    write_rows(data_dir, [stored_row(t) for t in [*held, lost]])
    assert "Infinity" in held[0].to_json() and "NaN" in held[1].to_json()
    async with running(data_dir, clock, sweep_interval_s=0.01, restart_grace_s=30) as second:
        assert second.hub.queue.n_quarantined == 0 and len(second.hub.queue.in_flight()) == len(values) + 1
        sim = AgentSim(second.ws_url, "agent-x", token, behaviour="ignore")
        await sim.connect()
        try:
            await sim.send({"type": "state_report", "task_id": "task-held-2", "generation": 1, "status": "working"})
            ack = await sim.wait_for(lambda m: m.get("type") == "state_report_ack")
            assert ack["action"] == "continue"
            agent = second.hub.agents.get("agent-x")
            assert agent is not None and agent.awaiting_report_since is None  # sweeps now read every timeout_ms
            with second.hub.bus.subscribe() as events:
                clock.advance(31)
                async with asyncio.timeout(10 * SCALE):
                    while not (
                        (e := await events.get()).get("task_id") == "task-lost" and e.get("event") == "task_retried"
                    ):
                        pass
            assert all(second.hub.queue.tasks[t.id].status is TaskStatus.WORKING for t in held)
            assert second.hub.failed is None
            assert (await second.http.get("/health")).status_code == 200
            stored = strict_json((await second.http.get("/api/tasks/task-held-0")).content)
            assert stored["metadata"] == {"timeout_ms": None}, "Infinity is read back as null"
        finally:
            await sim.close()


GARBAGE: list[tuple[str, bytes | str]] = [
    ("task-garbage", "{not json"),
    ("task-array", "[1, 2]"),
    (
        "task-wrong-type",
        json.dumps(
            {
                "id": "task-wrong-type",
                "description": "d",
                "created_at": 1,
                "updated_at": 1,
                "status": "queued",
                "priority": "high",
            }
        ),
    ),
    (
        "task-unknown-status",
        json.dumps(
            {"id": "task-unknown-status", "description": "d", "created_at": 1, "updated_at": 1, "status": "exploded"}
        ),
    ),
    (
        "task-priority",
        json.dumps(
            {
                "id": "task-priority",
                "description": "d",
                "created_at": 1,
                "updated_at": 1,
                "status": "queued",
                "priority": 9,
            }
        ),
    ),
    ("task-missing", json.dumps({"id": "task-missing", "description": "d", "status": "queued"})),
    (
        "task-huge-int",
        json.dumps(
            {"id": "task-huge-int", "description": "d", "created_at": 10**30, "updated_at": 1, "status": "queued"}
        ),
    ),
    (
        "task-bad-deps",
        json.dumps(
            {
                "id": "task-bad-deps",
                "description": "d",
                "created_at": 1,
                "updated_at": 1,
                "status": "queued",
                "depends_on": [1, {"x": 2}],
            }
        ),
    ),
    (
        "task-other-id",
        json.dumps(
            {"id": "task-someone-else", "description": "d", "created_at": 1, "updated_at": 1, "status": "queued"}
        ),
    ),
    (
        "task-bad-utf8",
        b'{"id": "task-bad-utf8", "description": "\xff\xfe", "created_at": 1, "updated_at": 1, "status": "queued"}',
    ),
    (
        "task-deep",
        '{"id": "task-deep", "description": "d", "created_at": 1, "updated_at": 1, "status": "queued", '
        '"metadata": {"x": ' + nested(DEEP) + "}}",
    ),
]


async def test_unreadable_rows_are_quarantined_and_the_rest_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows that cannot be read back are skipped at start, left untouched on disk, counted in /health and named in
    one warning each; the other tasks are intact and the hub serves."""
    data_dir = tmp_path / "hub"
    async with running(data_dir) as first:
        good = {await first.submit(description=f"good {n}", metadata={"n": n}): n for n in range(3)}
    with database(data_dir) as db:
        db.executemany(
            "INSERT INTO tasks (id, status, priority, created_at, updated_at, body) VALUES (?, 'queued', 2, 1, 1,"
            " CAST(? AS TEXT))",
            GARBAGE,
        )
        db.execute(
            "INSERT INTO trajectory (task_id, seq, ts, kind, payload) VALUES (?, 1, 1, 'x', ?)",
            (next(iter(good)), '{"text": "\\ud800", "n": NaN}'),
        )
        on_disk = db.execute("SELECT id, CAST(body AS BLOB) FROM tasks ORDER BY id").fetchall()
    caplog.set_level(logging.WARNING, logger="hub.queue")
    async with running(data_dir) as second:
        health = strict_json((await second.http.get("/health")).content)
        assert health["tasks"]["quarantined"] == len(GARBAGE) == second.hub.queue.n_quarantined
        for tid, n in good.items():
            task = strict_json((await second.http.get(f"/api/tasks/{tid}")).content)
            assert (task["description"], task["metadata"], task["status"]) == (f"good {n}", {"n": n}, "queued")
        for bad_id, _ in GARBAGE:
            assert (await second.http.get(f"/api/tasks/{bad_id}")).status_code == 404
        r = await second.http.get(f"/api/tasks/{next(iter(good))}/trajectory")
        assert r.status_code == 200 and strict_json(r.content)["events"][0]["event"]["event_type"] == "unreadable"
        await serves_a_task(second)
    warnings = [r.getMessage() for r in caplog.records if r.name == "hub.queue" and r.levelno == logging.WARNING]
    for bad_id, _ in GARBAGE:
        assert sum(f"'{bad_id}'" in w for w in warnings) == 1, bad_id
    with database(data_dir) as db:
        after = dict(db.execute("SELECT id, CAST(body AS BLOB) FROM tasks").fetchall())
    assert all(after[row_id] == row_body for row_id, row_body in on_disk if row_id in dict(GARBAGE))


CORRUPT: list[tuple[str, str]] = [
    ("not JSON", "{"),
    ("not an object", "[]"),
    ("status unknown", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"lost"}'),
    ("status missing", '{"id":"t","description":"d","created_at":1,"updated_at":1}'),
    ("priority a bool", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","priority":true}'),
    ("priority negative", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","priority":-1}'),
    ("metadata a list", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","metadata":[]}'),
    ("metadata null", '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","metadata":null}'),
    ("created_at a float", '{"id":"t","description":"d","created_at":1.5,"updated_at":1,"status":"queued"}'),
    ("created_at NaN", '{"id":"t","description":"d","created_at":NaN,"updated_at":1,"status":"queued"}'),
    (
        "generation past 64 bits",
        '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","generation":' + "9" * 25 + "}",
    ),
    (
        "history of strings",
        '{"id":"t","description":"d","created_at":1,"updated_at":1,"status":"queued","history":["x"]}',
    ),
    ("lone surrogate", r'{"id":"t\ud800","description":"d","created_at":1,"updated_at":1,"status":"queued"}'),
]


@pytest.mark.parametrize(("case", "text"), CORRUPT, ids=[c for c, _ in CORRUPT])
def test_task_from_json_refuses_corrupt_bodies(case: str, text: str) -> None:
    """Task.from_json raises CorruptTask (never anything else) for a body that is not a usable task."""
    with pytest.raises(CorruptTask):
        Task.from_json(text)
    with pytest.raises(CorruptTask):
        Task.from_json(text.encode())


def test_task_from_json_reads_non_finite_numbers_as_null() -> None:
    """NaN and Infinity stored by earlier versions in free-form fields are read back as null."""
    task = Task.from_json(
        '{"id":"t","description":"NaN Infinity","created_at":1,"updated_at":1,"status":"queued",'
        '"metadata":{"a":NaN,"b":[Infinity,1.5],"c":"NaN"}}'
    )
    assert task.metadata == {"a": None, "b": [None, 1.5], "c": "NaN"} and task.description == "NaN Infinity"


async def test_hostile_strings_survive_a_restart_unchanged(tmp_path: Path) -> None:
    """NUL, escape sequences and astral characters are stored escaped and read back the same after a restart."""
    data_dir = tmp_path / "hub"
    sent = {"description": "nul\x00 esc\x1b[1m 😀", "metadata": {"k\x00": "v\x00\x01", "deep": [[{"x": "\x7f"}]]}}
    async with running(data_dir) as first:
        tid = await first.submit(**sent)
    async with running(data_dir) as second:
        assert second.hub.queue.n_quarantined == 0
        task = strict_json((await second.http.get(f"/api/tasks/{tid}")).content)
        assert {k: task[k] for k in sent} == sent
