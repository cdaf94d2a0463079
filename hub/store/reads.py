"""Reads of the SQLite store, on its reader connection: committed data only, never the writer's open transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from hub.store import StoreError
from hub.store.faults import unknown_role
from hub.store.records import EventRow, JournalRow, RawTask, RecordRow, TokenRow, TrajectoryRow
from hub.store.statements import (
    SELECT_EVENT_SEQ_HIGH,
    SELECT_EVENTS_AFTER,
    SELECT_JOURNAL_AFTER,
    SELECT_JOURNAL_SINCE,
    SELECT_LAST_SEQS,
    SELECT_RECORDS,
    SELECT_TASK_EVENTS_AFTER,
    SELECT_TASKS,
    SELECT_TOKENS,
    SELECT_TRAJECTORY,
)


class StoreReads:
    """The reads of :class:`hub.store.sqlite.SqliteStore` (which sets these attributes)."""

    _reader: aiosqlite.Connection
    path: Path

    async def load_tasks(self) -> list[RawTask]:
        # As bytes: text that is not UTF-8 would make SQLite's driver fail the whole query, not just that row.
        return await self.fetch_all(SELECT_TASKS)

    async def load_tokens(self, known_roles: Collection[str]) -> list[TokenRow]:
        rows = [TokenRow(*row) for row in await self.fetch_all(SELECT_TOKENS)]
        for row in rows:
            if row.role not in known_roles:
                raise StoreError(unknown_role(self.path, row.role, known_roles))
        return rows

    async def last_trajectory_seqs(self) -> dict[str, int]:
        return dict(await self.fetch_all(SELECT_LAST_SEQS))

    async def read_trajectory(self, task_id: str, after_seq: int, limit: int) -> list[TrajectoryRow]:
        return [TrajectoryRow(*row) for row in await self.fetch_all(SELECT_TRAJECTORY, (task_id, after_seq, limit))]

    async def read_events(self, after_seq: int, limit: int, task_id: str | None = None) -> list[EventRow]:
        if task_id is None:
            rows = await self.fetch_all(SELECT_EVENTS_AFTER, (after_seq, limit))
        else:
            rows = await self.fetch_all(SELECT_TASK_EVENTS_AFTER, (task_id, after_seq, limit))
        return [EventRow(seq, ts, tid, kind, body) for seq, ts, tid, kind, body in rows]

    async def last_event_seq(self) -> int:
        rows = await self.fetch_all(SELECT_EVENT_SEQ_HIGH)
        return int(rows[0][0] or 0) if rows else 0

    async def load_records(self, kind: str) -> list[RecordRow]:
        return [RecordRow(*row) for row in await self.fetch_all(SELECT_RECORDS, (kind,))]

    async def read_journal(
        self, kind: str, after_seq: int = 0, limit: int = 1000, since_ts: int | None = None
    ) -> list[JournalRow]:
        if since_ts is None:
            rows = await self.fetch_all(SELECT_JOURNAL_AFTER, (kind, after_seq, limit))
        else:
            rows = await self.fetch_all(SELECT_JOURNAL_SINCE, (kind, since_ts, after_seq, limit))
        return [JournalRow(*row) for row in rows]

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            async with self._reader.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc
