"""The store's subsystem documents and journals (PutRecord, AppendJournal): written, read back after a reopen,
replaced, deleted and pruned, against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from hub.store import AppendJournal, DeleteRecord, PruneJournal, PutRecord, RecordRow
from hub.store.sqlite import SqliteStore


async def _with_writer(path: Path, changes: list) -> SqliteStore:  # type: ignore[type-arg]
    import asyncio

    store = await SqliteStore.open(path)
    writer = asyncio.create_task(store.run_writer())
    try:
        await store.write(changes)
    finally:
        await store.close()
        await asyncio.gather(writer, return_exceptions=True)
    return await SqliteStore.open(path)


async def test_records_survive_a_reopen_and_are_replaced_and_deleted(tmp_path: Path) -> None:
    """A document put twice keeps the last body; a deleted one is gone; other kinds are not read."""
    db = tmp_path / "hub.db"
    store = await _with_writer(
        db,
        [
            PutRecord(RecordRow("repo", "a", 1, '{"v": 1}')),
            PutRecord(RecordRow("repo", "a", 2, '{"v": 2}')),
            PutRecord(RecordRow("repo", "b", 1, "{}")),
            PutRecord(RecordRow("goal", "a", 1, "{}")),
            DeleteRecord("repo", "b"),
        ],
    )
    try:
        assert await store.load_records("repo") == [RecordRow("repo", "a", 2, '{"v": 2}')]
        assert [r.key for r in await store.load_records("goal")] == ["a"]
    finally:
        await store.close()


async def test_journal_rows_are_numbered_paged_and_pruned(tmp_path: Path) -> None:
    """Appended rows come back in order with increasing seq, by page and by time; pruning drops the old ones only."""
    db = tmp_path / "hub.db"
    rows = [AppendJournal("cost", ts, f'{{"n": {ts}}}') for ts in range(1, 6)]
    store = await _with_writer(db, [*rows, AppendJournal("audit", 3, "{}"), PruneJournal("cost", 3)])
    try:
        kept = await store.read_journal("cost")
        assert [r.ts for r in kept] == [3, 4, 5]
        assert [r.seq for r in kept] == sorted(r.seq for r in kept)
        assert [r.ts for r in await store.read_journal("cost", after_seq=kept[0].seq, limit=1)] == [4]
        assert [r.ts for r in await store.read_journal("cost", since_ts=5)] == [5]
        assert len(await store.read_journal("audit")) == 1
    finally:
        await store.close()
