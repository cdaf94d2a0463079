"""The hub's durable store, as the rest of the hub sees it: a :class:`Store` that speaks records.

Callers hand it batches of changes (:mod:`hub.store.records`) and are answered once the commit holding them is
durable ("write before you say"); at start they read every record back. How and where records are kept is the
implementation's: :mod:`hub.store.sqlite` (SQLite in WAL mode, one group-committing writer, the WAL sync helper and
the full-disk handling) is the one there is. No statement text lives outside this package.

    hub/store/__init__.py     the Store protocol and StoreError
    hub/store/records.py      rows read back, changes written (tasks, tokens, events; subsystem documents and
                              journals: PutRecord, AppendJournal, for every subsystem beside the queue)
    hub/store/sqlite.py       SqliteStore: opening (migrations), closing, counters; built from the parts below
    hub/store/writer.py       its group-committing writer: one transaction per drain, durable, full-disk waits
    hub/store/checkpoints.py  its WAL checkpoints: passive copies beside the writer, the bounding restart
    hub/store/reads.py        its reads, on the reader connection (committed data only)
    hub/store/connection.py   opening a connection safely, running a function on the writer's thread
    hub/store/faults.py       what a failure means (full disk, unstorable value) and what to tell an operator
    hub/store/wal_sync.py     durability of each commit through a helper process (wal_sync_helper.py)
    hub/store/migrations/     the schema, one numbered file per version
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from typing import Any, Protocol

from hub.store.records import (
    AppendEvent,
    AppendJournal,
    AppendTrajectory,
    Change,
    DeleteEvents,
    DeleteRecord,
    DeleteTask,
    DeleteToken,
    DeleteTrajectory,
    EventRow,
    JournalRow,
    PruneJournal,
    PutRecord,
    PutTask,
    PutToken,
    RawTask,
    RecordRow,
    TaskRow,
    TokenRow,
    TrajectoryRow,
)

__all__ = [
    "AppendEvent",
    "AppendJournal",
    "AppendTrajectory",
    "Change",
    "DeleteEvents",
    "DeleteRecord",
    "DeleteTask",
    "DeleteToken",
    "DeleteTrajectory",
    "EventRow",
    "JournalRow",
    "PruneJournal",
    "PutRecord",
    "PutTask",
    "PutToken",
    "RecordRow",
    "RawTask",
    "Store",
    "StoreError",
    "TaskRow",
    "TokenRow",
    "TrajectoryRow",
]


class StoreError(Exception):
    """The store refused a write or a read, or cannot open; the message names the cause and the fix."""


class Store(Protocol):
    """The hub's records, durable. One writer owns the writes (``run_writer``, in the hub's TaskGroup).

    The history of task events (``task_events``) joins as its own change type in :data:`Change` and a read here.
    """

    @property
    def degraded(self) -> str | None:
        """Why writes are waiting (the disk is full), or None while they commit."""

    def enqueue(self, changes: Iterable[Change]) -> asyncio.Future[None]:
        """Queue ``changes`` for the next commit; the future resolves once it is durable (StoreError if refused)."""

    async def write(self, changes: Iterable[Change]) -> None:
        """Queue ``changes`` and return once they are durable."""

    async def load_tasks(self) -> list[RawTask]:
        """Every stored task, in order of creation."""

    async def load_tokens(self, known_roles: Collection[str]) -> list[TokenRow]:
        """Every stored token; StoreError naming the row and the fix if one has a role not in ``known_roles``."""

    async def last_trajectory_seqs(self) -> dict[str, int]:
        """The highest stored ``seq`` of each task that has execution events."""

    async def read_trajectory(self, task_id: str, after_seq: int, limit: int) -> list[TrajectoryRow]:
        """The events of ``task_id`` after ``after_seq``, in order, at most ``limit``."""

    async def read_events(self, after_seq: int, limit: int, task_id: str | None = None) -> list[EventRow]:
        """Lifecycle events after ``after_seq`` in order (of ``task_id`` only, if given), at most ``limit``."""

    async def last_event_seq(self) -> int:
        """The highest event ``seq`` ever stored, deleted rows included (numbers are never reused)."""

    async def load_records(self, kind: str) -> list[RecordRow]:
        """Every stored document of ``kind`` (repositories, endpoints, goals...), by key."""

    async def read_journal(
        self, kind: str, after_seq: int = 0, limit: int = 1000, since_ts: int | None = None
    ) -> list[JournalRow]:
        """Rows of journal ``kind`` after ``after_seq`` (and at or after ``since_ts``, if given), in order."""

    def stats(self) -> dict[str, Any]:
        """Counters for /health."""

    async def run_writer(self) -> None:
        """Commit queued changes until the store closes."""

    async def run_checkpointer(self) -> None:
        """Housekeeping beside the writer, forever (owned by the hub's TaskGroup)."""

    async def close(self) -> None:
        """Commit what is queued and close (idempotent)."""
