"""Merge-aware scheduling: tasks on one repository whose predicted files overlap are not run at the same time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.repos.conflicts import ConflictGate, first_conflict, predicted_files
from hub.scheduler import Candidate, plan
from hub.task_submit import TaskSubmit
from hub.tasks import Task, TaskStatus
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle, wait_tasks
from tests.hub.repos.conftest import AgentFactory, Remote, answer_registry


def task(repo: str | None = "app", hints: tuple[str, ...] = (), change: list[str] | None = None) -> Task:
    body: dict[str, Any] = {"description": "edit", "file_hints": [{"path": p} for p in hints]}
    if repo is not None:
        body["repo"] = repo
    t = TaskSubmit.model_validate(body).to_task("t", 1)
    if change is not None:
        t.change = {"files": [{"path": p} for p in change]}
    return t


@pytest.mark.parametrize(
    ("hints", "change", "expected"),
    [
        (("a.py", "b.py"), None, {"a.py", "b.py"}),
        ((), ["c.py"], {"c.py"}),  # no hints: what its own earlier attempt touched
        (("a.py",), ["c.py"], {"a.py"}),  # hints win
        ((), None, set()),  # no prediction: conflicts with nothing
    ],
)
def test_predicted_files(hints: tuple[str, ...], change: list[str] | None, expected: set[str]) -> None:
    """Predicted files are the file_hints, else the files the task's earlier attempts touched."""
    assert predicted_files(task(hints=hints, change=change)) == expected


@pytest.mark.parametrize(
    ("mine", "running", "expected"),
    [
        ({"a.py"}, [("t1", {"b.py"}), ("t2", {"a.py", "c.py"})], ("t2", {"a.py"})),
        ({"a.py"}, [("t1", {"b.py"})], None),
        (set(), [("t1", {"a.py"})], None),
        ({"a.py", "b.py"}, [("t1", {"b.py", "a.py"})], ("t1", {"a.py", "b.py"})),
    ],
)
def test_first_conflict_table(mine: set[str], running: list[tuple[str, set[str]]], expected: Any) -> None:
    """The first running task sharing a file is the conflict, with the shared files."""
    got = first_conflict(task(), frozenset(mine), [(i, frozenset(f)) for i, f in running])
    assert got == (None if expected is None else (expected[0], frozenset(expected[1])))


def test_plan_holds_back_overlapping_tasks_in_one_round() -> None:
    """Of two queued tasks sharing a file only the first starts; a task on another repo or other files starts."""
    in_flight = task(hints=("x.py",))
    first, clash, elsewhere, other_files, clash_running = (
        task(hints=("a.py",)),
        task(hints=("a.py", "b.py")),
        task(repo="lib", hints=("a.py",)),
        task(hints=("b2.py",)),
        task(hints=("x.py",)),
    )
    waited: list[Task] = []
    gate = ConflictGate([in_flight], waited.append)
    agents = [Candidate(f"a{i}", frozenset()) for i in range(5)]
    queued = [first, clash, elsewhere, other_files, clash_running]
    started = [m.task for m in plan(queued, agents, lambda t: True, gate)]
    assert started == [first, elsewhere, other_files]
    assert clash.waiting_reason is not None and clash.waiting_reason["code"] == "file_conflict"
    assert clash.waiting_reason["detail"] == f"file_conflict with {first.id}: both touch a.py"
    assert clash_running.waiting_reason is not None and in_flight.id in clash_running.waiting_reason["detail"]
    assert waited == [clash, clash_running]
    again = ConflictGate([], waited.append)
    assert [m.task for m in plan([clash], agents, lambda t: True, again)] == [clash]
    assert clash.waiting_reason is None, "a conflict that is gone is cleared"


async def test_second_task_on_same_files_waits_for_the_first(
    hub: HubHandle, make_agent: AgentFactory, make_remote: Any
) -> None:
    """With two free agents, the second task touching the same file waits (file_conflict) until the first ends."""
    remote: Remote = make_remote("app")
    assert (await hub.http.post("/api/repos", json={"name": "app", "url": remote.url})).status_code == 201
    sims: list[AgentSim] = [await make_agent(behaviour="ignore") for _ in range(2)]
    for sim in sims:
        await answer_registry(sim)
    queue = hub.hub.queue
    with hub.hub.bus.subscribe() as events:
        first = await hub.submit(description="one", repo="app", file_hints=[{"path": "src/a.py"}])
        async with asyncio.timeout(10 * SCALE):  # both agents have reached the repo once the first is assigned
            while queue.tasks[first].status is TaskStatus.QUEUED:
                await events.get()
        second = await hub.submit(description="two", repo="app", file_hints=[{"path": "src/a.py"}])
        async with asyncio.timeout(10 * SCALE):
            while (queue.tasks[second].waiting_reason or {}).get("code") != "file_conflict":
                await events.get()
    assert first in queue.tasks[second].waiting_reason["detail"]  # type: ignore[index]
    shown = await hub.task(second)
    assert shown["status"] == "queued" and shown["waiting_reason"]["code"] == "file_conflict"
    holder = next(s for s in sims if s.received)
    assert len(holder.received) == 1 and sum(len(s.received) for s in sims) == 1
    rec = holder.received[0]
    await holder.send({"type": "task_accepted", "task_id": rec.task_id, "generation": rec.generation})
    await holder.send(
        {"type": "task_complete", "task_id": rec.task_id, "generation": rec.generation, "result": {"status": "success"}}
    )
    await wait_tasks(hub, [first], {"completed"})
    await wait_tasks(hub, [second], {"assigned", "working"})
    assert hub.hub.queue.tasks[second].waiting_reason is None
