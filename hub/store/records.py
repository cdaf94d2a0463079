"""What the hub stores, as records: the rows read back, and the changes handed to :meth:`Store.enqueue`.

A change names a record and what happens to it (put, append, delete); it carries no statement. Each implementation
of :class:`hub.store.Store` maps changes onto its own tables (hub/store/sqlite.py for SQLite). One batch of changes
commits whole or not at all, together with whatever else shares its commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

RawTask = tuple[bytes, bytes]
"""A stored task as read back at start: its id and its body (the JSON of ``Task.to_json``), both as bytes, so that a
row which is not UTF-8 reaches the reader (who quarantines it) instead of failing the whole read."""


class TaskRow(NamedTuple):
    """A task as stored: the columns kept beside the body, and the body."""

    id: str
    status: str
    priority: int
    created_at: int
    updated_at: int
    assigned_to: str | None
    goal_id: str | None
    body: str


class TokenRow(NamedTuple):
    token_hash: str
    agent_id: str
    role: str
    prefix: str
    created_at: int


class TrajectoryRow(NamedTuple):
    """One execution event of a task, in the order (``seq``) the hub received it."""

    task_id: str
    seq: int
    ts: int
    kind: str
    payload: str


# --- changes ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class PutTask:
    """Insert or replace the task ``task_id``. ``build`` runs at commit time, once per task per commit: a task changed
    several times before one commit (accepted and completed in quick succession) is serialised once, as it is then.
    Deletes of a task (:class:`DeleteTask`) are ordered after its puts of the same commit."""

    task_id: str
    build: Callable[[], TaskRow]


@dataclass(slots=True)
class DeleteTask:
    task_id: str


@dataclass(slots=True)
class PutToken:
    row: TokenRow


@dataclass(slots=True)
class DeleteToken:
    token_hash: str


@dataclass(slots=True)
class AppendTrajectory:
    """Add one execution event; an event already stored under the same (task_id, seq) is kept as it is."""

    row: TrajectoryRow


@dataclass(slots=True)
class DeleteTrajectory:
    """Every execution event of ``task_id`` (it goes with its pruned task)."""

    task_id: str


class EventRow(NamedTuple):
    """One lifecycle event as stored in ``task_events`` (``task_id`` is None for events about no one task)."""

    seq: int
    ts: int
    task_id: str | None
    kind: str
    body: str


@dataclass(slots=True)
class AppendEvent:
    """Add one lifecycle event, in the commit of the change it tells (hub/listeners.py numbers them)."""

    row: EventRow


@dataclass(slots=True)
class DeleteEvents:
    """Every lifecycle event of ``task_id`` (they go with their pruned task)."""

    task_id: str


class RecordRow(NamedTuple):
    """A subsystem's document (a repository, an endpoint, a goal...): JSON under (``kind``, ``key``)."""

    kind: str
    key: str
    updated_at: int
    body: str


@dataclass(slots=True)
class PutRecord:
    """Insert or replace the document (``row.kind``, ``row.key``)."""

    row: RecordRow


@dataclass(slots=True)
class DeleteRecord:
    kind: str
    key: str


class JournalRow(NamedTuple):
    """One appended row of a journal (the cost ledger, the hub's transitions, an audit log), numbered by ``seq``."""

    seq: int
    kind: str
    ts: int
    body: str


@dataclass(slots=True)
class AppendJournal:
    """Append one row to the journal ``kind``; the store numbers it (``seq`` increases, never reused)."""

    kind: str
    ts: int
    body: str


@dataclass(slots=True)
class PruneJournal:
    """Drop the rows of journal ``kind`` older than ``before_ts`` (retention)."""

    kind: str
    before_ts: int


Change = (
    PutTask
    | DeleteTask
    | PutToken
    | DeleteToken
    | AppendTrajectory
    | DeleteTrajectory
    | AppendEvent
    | DeleteEvents
    | PutRecord
    | DeleteRecord
    | AppendJournal
    | PruneJournal
)
"""Everything a batch may hold. New kinds of record (the task-event history, goals, the ledger) join this union with
their own change types, and each store implementation maps them onto its tables."""
