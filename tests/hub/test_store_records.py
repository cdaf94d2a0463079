"""The store seen through its Store protocol (hub/store/__init__.py): records in, records out, in real SQLite."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.store import (
    AppendTrajectory,
    DeleteTask,
    DeleteToken,
    DeleteTrajectory,
    PutTask,
    PutToken,
    Store,
    StoreError,
    TaskRow,
    TokenRow,
    TrajectoryRow,
)
from hub.store.sqlite import SqliteStore


def task_row(task_id: str, status: str = "queued", body: str = "{}", created_at: int = 1) -> TaskRow:
    return TaskRow(task_id, status, 2, created_at, created_at, None, None, body)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An open SQLite store, typed as the protocol, with its writer running; closed after the test."""
    s: Store = await SqliteStore.open(tmp_path / "store.db")
    writer = asyncio.create_task(s.run_writer())
    yield s
    await s.close()
    await writer


async def test_tasks_put_load_and_delete(store: Store) -> None:
    """Put tasks come back from load_tasks as raw (id, body) bytes in order of creation; deleted ones do not."""
    await store.write(
        [
            PutTask("t2", lambda: task_row("t2", body='{"n":2}', created_at=2)),
            PutTask("t1", lambda: task_row("t1", body='{"n":1}', created_at=1)),
        ]
    )
    assert await store.load_tasks() == [(b"t1", b'{"n":1}'), (b"t2", b'{"n":2}')]
    await store.write([DeleteTask("t1")])
    assert await store.load_tasks() == [(b"t2", b'{"n":2}')]


async def test_a_task_put_twice_in_one_commit_is_built_once_in_its_latest_state(store: Store) -> None:
    """Two puts of one task queued before one commit build one row, from the later put, at commit time."""
    builds: list[str] = []
    state = {"status": "queued"}

    def build() -> TaskRow:
        builds.append(state["status"])
        return task_row("t", body=json.dumps(state, separators=(",", ":")))

    first = store.enqueue([PutTask("t", build)])
    state["status"] = "assigned"
    second = store.enqueue([PutTask("t", build)])
    await asyncio.gather(first, second)
    assert builds == ["assigned"]
    assert await store.load_tasks() == [(b"t", b'{"status":"assigned"}')]


async def test_a_delete_after_a_put_in_one_commit_removes_the_task(store: Store) -> None:
    """A put and a delete of one task pending together: the delete runs after the put, so the task is gone."""
    put = store.enqueue([PutTask("t", lambda: task_row("t"))])
    delete = store.enqueue([DeleteTask("t"), DeleteTrajectory("t")])
    await asyncio.gather(put, delete)
    assert await store.load_tasks() == []


async def test_tokens_put_load_delete(store: Store) -> None:
    """Tokens put are loaded back as rows; a deleted one is gone."""
    await store.write(
        [
            PutToken(TokenRow("h1", "a1", "agent", "abcd1234", 5)),
            PutToken(TokenRow("h2", "a2", "viewer", "efgh5678", 6)),
        ]
    )
    assert sorted(await store.load_tokens(("admin", "agent", "viewer"))) == [
        TokenRow("h1", "a1", "agent", "abcd1234", 5),
        TokenRow("h2", "a2", "viewer", "efgh5678", 6),
    ]
    await store.write([DeleteToken("h1")])
    assert [r.token_hash for r in await store.load_tokens(("agent", "viewer"))] == ["h2"]


async def test_a_token_of_an_unknown_role_fails_the_load_naming_the_fix(store: Store, tmp_path: Path) -> None:
    """load_tokens refuses a row whose role is not known, with the role and the statement that removes it."""
    await store.write([PutToken(TokenRow("h1", "boss", "superuser", "abcd1234", 1))])
    with pytest.raises(StoreError) as refused:
        await store.load_tokens(("admin", "agent"))
    message = str(refused.value)
    assert "'superuser' is not a valid Role" in message
    assert "DELETE FROM tokens WHERE role NOT IN ('admin', 'agent')" in message and str(tmp_path) in message


async def test_trajectory_append_read_last_seq_and_delete(store: Store) -> None:
    """Execution events are read back in order after a seq, up to a limit; the last seq per task is known; a second
    event under the same (task, seq) is ignored; a task's events go together."""
    rows = [TrajectoryRow("t1", seq, 100 + seq, "tool_call", f'{{"n":{seq}}}') for seq in (1, 2, 3)]
    await store.write([AppendTrajectory(r) for r in rows] + [AppendTrajectory(TrajectoryRow("t2", 1, 7, "k", "{}"))])
    await store.write([AppendTrajectory(TrajectoryRow("t1", 2, 999, "dup", "{}"))])
    assert await store.read_trajectory("t1", 0, 10) == rows
    assert await store.read_trajectory("t1", 1, 1) == rows[1:2]
    assert await store.last_trajectory_seqs() == {"t1": 3, "t2": 1}
    await store.write([DeleteTrajectory("t1")])
    assert await store.read_trajectory("t1", 0, 10) == []
    assert await store.last_trajectory_seqs() == {"t2": 1}


async def test_a_batch_is_all_or_nothing(store: Store) -> None:
    """A batch holding a row SQLite cannot store fails whole (StoreError), the other rows of it are not written, and
    a batch beside it commits."""
    fine = store.enqueue([PutTask("ok", lambda: task_row("ok"))])
    bad = store.enqueue([PutToken(TokenRow("h", "a", "agent", "p", 1)), PutTask("bad", lambda: task_row("bad\ud800"))])
    results = await asyncio.gather(fine, bad, return_exceptions=True)
    assert results[0] is None and isinstance(results[1], StoreError)
    assert await store.load_tasks() == [(b"ok", b"{}")]
    assert await store.load_tokens(("agent",)) == []
