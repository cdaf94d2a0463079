"""The SQL of the SQLite store: every statement, and how each change (:mod:`hub.store.records`) becomes one.

:class:`Deferred` parameters are built at commit time, once per key per transaction; :data:`STATEMENTS` maps each
change type to its statement. Only the SQLite store (:mod:`hub.store.sqlite`, its writer and reads) and its tests use
this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from hub.store.faults import table, unstorable_value
from hub.store.records import (
    AppendEvent,
    AppendJournal,
    AppendTrajectory,
    DeleteEvents,
    DeleteRecord,
    DeleteTask,
    DeleteToken,
    DeleteTrajectory,
    PruneJournal,
    PutRecord,
    PutTask,
    PutToken,
)


class Deferred:
    """Parameters built at commit time, once per ``key`` per transaction: a row written several times before one
    commit (a task accepted and completed in quick succession) is serialised once, in its latest state."""

    __slots__ = ("key", "build")

    def __init__(self, key: str, build: Callable[[], Sequence[Any]]) -> None:
        self.key = key
        self.build = build


Write = tuple[str, Sequence[Any] | Deferred]
"""One statement and its parameters."""

UPSERT_TASK = (
    "INSERT INTO tasks (id, status, priority, created_at, updated_at, assigned_to, goal_id, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status=excluded.status,"
    " priority=excluded.priority, updated_at=excluded.updated_at, assigned_to=excluded.assigned_to,"
    " goal_id=excluded.goal_id, body=excluded.body"
)
INSERT_TOKEN = "INSERT INTO tokens (token_hash, agent_id, role, prefix, created_at) VALUES (?, ?, ?, ?, ?)"
DELETE_TOKEN = "DELETE FROM tokens WHERE token_hash = ?"
INSERT_TRAJECTORY = "INSERT OR IGNORE INTO trajectory (task_id, seq, ts, kind, payload) VALUES (?, ?, ?, ?, ?)"
# Retention: a pruned task goes with its trajectory.
DELETE_TASK = "DELETE FROM tasks WHERE id = ?"
DELETE_TRAJECTORY = "DELETE FROM trajectory WHERE task_id = ?"
# Lifecycle events (hub/listeners.py): written in the commit of the change they tell, deleted with their task.
INSERT_TASK_EVENT = "INSERT INTO task_events (seq, task_id, ts, kind, body) VALUES (?, ?, ?, ?, ?)"
DELETE_TASK_EVENTS = "DELETE FROM task_events WHERE task_id = ?"
SELECT_EVENTS_AFTER = "SELECT seq, ts, task_id, kind, body FROM task_events WHERE seq > ? ORDER BY seq LIMIT ?"
SELECT_TASK_EVENTS_AFTER = (
    "SELECT seq, ts, task_id, kind, body FROM task_events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
SELECT_EVENT_SEQ_HIGH = (  # the highest seq ever used: AUTOINCREMENT keeps it after the rows are deleted
    "SELECT MAX(seq) FROM (SELECT MAX(seq) AS seq FROM task_events"
    " UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'task_events')"
)

# Subsystem documents and journals (004_records.sql).
UPSERT_RECORD = (
    "INSERT INTO records (kind, key, updated_at, body) VALUES (?, ?, ?, ?)"
    " ON CONFLICT(kind, key) DO UPDATE SET updated_at=excluded.updated_at, body=excluded.body"
)
DELETE_RECORD = "DELETE FROM records WHERE kind = ? AND key = ?"
INSERT_JOURNAL = "INSERT INTO journal (kind, ts, body) VALUES (?, ?, ?)"
PRUNE_JOURNAL = "DELETE FROM journal WHERE kind = ? AND ts < ?"
SELECT_RECORDS = "SELECT kind, key, updated_at, body FROM records WHERE kind = ? ORDER BY key"
SELECT_JOURNAL_AFTER = "SELECT seq, kind, ts, body FROM journal WHERE kind = ? AND seq > ? ORDER BY seq LIMIT ?"
SELECT_JOURNAL_SINCE = (
    "SELECT seq, kind, ts, body FROM journal WHERE kind = ? AND ts >= ? AND seq > ? ORDER BY seq LIMIT ?"
)

SELECT_TASKS = "SELECT CAST(id AS BLOB), CAST(body AS BLOB) FROM tasks ORDER BY created_at"
SELECT_TOKENS = "SELECT token_hash, agent_id, role, prefix, created_at FROM tokens"
SELECT_LAST_SEQS = "SELECT task_id, MAX(seq) FROM trajectory GROUP BY task_id"
SELECT_TRAJECTORY = (
    "SELECT task_id, seq, ts, kind, payload FROM trajectory WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)


def _by_id(key: str) -> tuple[str]:
    return (key,)


# Each change as one statement; a new kind of change (the task-event history) adds its line here. Deletes are
# deferred like the task puts, so a delete runs after any put of the same row still pending in the same transaction
# (deferred statements run after plain ones, in order of first appearance).
STATEMENTS: dict[type, Callable[[Any], Write]] = {
    PutTask: lambda c: (UPSERT_TASK, Deferred(c.task_id, c.build)),
    DeleteTask: lambda c: (DELETE_TASK, Deferred(c.task_id, partial(_by_id, c.task_id))),
    PutToken: lambda c: (INSERT_TOKEN, c.row),
    DeleteToken: lambda c: (DELETE_TOKEN, (c.token_hash,)),
    AppendTrajectory: lambda c: (INSERT_TRAJECTORY, c.row),
    DeleteTrajectory: lambda c: (DELETE_TRAJECTORY, Deferred(c.task_id, partial(_by_id, c.task_id))),
    AppendEvent: lambda c: (INSERT_TASK_EVENT, (c.row.seq, c.row.task_id, c.row.ts, c.row.kind, c.row.body)),
    DeleteEvents: lambda c: (DELETE_TASK_EVENTS, Deferred(c.task_id, partial(_by_id, c.task_id))),
    PutRecord: lambda c: (UPSERT_RECORD, c.row),
    DeleteRecord: lambda c: (DELETE_RECORD, (c.kind, c.key)),
    AppendJournal: lambda c: (INSERT_JOURNAL, (c.kind, c.ts, c.body)),
    PruneJournal: lambda c: (PRUNE_JOURNAL, (c.kind, c.before_ts)),
}


def unstorable_batches(group: list[tuple[list[Write], asyncio.Future[None]]]) -> dict[int, str]:
    """The batches (by index) holding a row SQLite cannot bind, with the reason (never the value: it may be a
    secret or huge). Runs only after a transaction failed, so the commit path pays nothing for it."""
    bad: dict[int, str] = {}
    for i, (writes, _) in enumerate(group):
        for sql, params in writes:
            if isinstance(params, Deferred):
                deferred = params
                try:
                    params = deferred.build()
                except Exception as exc:
                    bad[i] = f"building the {table(sql)} row {deferred.key!r} raised {exc!r}"
                    break
            if not isinstance(params, tuple | list) or len(params) != sql.count("?"):
                bad[i] = f"a {table(sql)} row does not have {sql.count('?')} parameters"
                break
            reason = next(filter(None, map(unstorable_value, params)), None)
            if reason is not None:
                bad[i] = f"in a {table(sql)} row, {reason}"
                break
    return bad
