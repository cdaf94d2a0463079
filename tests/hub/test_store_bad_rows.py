"""The store's last line of defence: a row it cannot encode, or a deferred row whose build raises, fails only its own
batch (StoreError "unencodable row: ...", logged); the rest of the transaction commits and the writer keeps going."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from hub.store import StoreError
from hub.store.sqlite import INSERT_TRAJECTORY, UPSERT_TASK, Deferred, SqliteStore, Write


def row(task_id: str, body: Any = "{}", priority: Any = 2) -> Write:
    return (UPSERT_TASK, (task_id, "queued", priority, 1, 1, None, None, body))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, asyncio.Task[None]]]:
    """An open store and its running writer; closed after the test."""
    s = await SqliteStore.open(tmp_path / "store.db")
    writer = asyncio.create_task(s.run_writer())
    yield s, writer
    await s.close()
    await writer


def stored(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {r[0] for r in db.execute("SELECT id FROM tasks")}


async def one_group(s: SqliteStore, batches: Sequence[list[Write]]) -> list[BaseException | None]:
    """Queue ``batches`` in the same turn (so they share one transaction) and return each one's outcome."""
    futures = [s.enqueue(batch) for batch in batches]
    return await asyncio.gather(*futures, return_exceptions=True)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (row("bad", body="lone \ud800 surrogate"), "a string holds surrogates not allowed at index 5"),
        (row("bad", priority=2**64), "an integer is past SQLite's 64-bit range"),
        (row("bad", body={"a": "dict"}), "a dict is not storable"),
        ((UPSERT_TASK, ("bad", "queued")), "a tasks row does not have 8 parameters"),
    ],
)
async def test_an_unencodable_row_fails_only_its_batch(
    store: tuple[SqliteStore, asyncio.Task[None]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bad: Write,
    reason: str,
) -> None:
    """A batch holding a row SQLite cannot bind fails alone with StoreError naming why (not the value); the
    batches around it commit in the same transaction, and the writer keeps committing."""
    s, writer = store
    with caplog.at_level(logging.ERROR, logger="hub.store"):
        before, refused, after = await one_group(s, [[row("a")], [row("b"), bad], [row("c")]])
    assert before is None and after is None
    assert isinstance(refused, StoreError)
    assert str(refused).startswith("unencodable row: ") and reason in str(refused)
    assert "\ud800" not in str(refused)
    assert s.n_commits == 1, "the others still shared one transaction"
    assert stored(tmp_path / "store.db") == {"a", "c"}, "nothing of the refused batch, all of the others"
    assert any("unencodable row" in r.getMessage() for r in caplog.records)
    await s.write([row("d")])
    assert not writer.done()
    assert stored(tmp_path / "store.db") == {"a", "c", "d"}
    assert s.stats()["refused_batches"] == 1


async def test_a_deferred_build_that_raises_fails_only_its_batch(
    store: tuple[SqliteStore, asyncio.Task[None]], tmp_path: Path
) -> None:
    """A Deferred whose build raises fails the batch holding it (its other rows are not written); another deferred
    row and the other batches commit."""
    s, writer = store

    def broken() -> Sequence[Any]:
        raise ValueError("cannot serialise")

    def good() -> Sequence[Any]:
        return ("ok", "queued", 2, 1, 1, None, None, "{}")

    trajectory = (INSERT_TRAJECTORY, ("t", 1, 1, "note", "{}"))
    fine, refused = await one_group(
        s, [[(UPSERT_TASK, Deferred("ok", good))], [trajectory, (UPSERT_TASK, Deferred("broken", broken))]]
    )
    assert fine is None
    assert isinstance(refused, StoreError)
    assert str(refused) == "unencodable row: building the tasks row 'broken' raised ValueError('cannot serialise')"
    assert stored(tmp_path / "store.db") == {"ok"}
    assert await s.fetch_all("SELECT task_id FROM trajectory") == [], "the refused batch's other row is not written"
    await s.write([row("next")])
    assert not writer.done()
