"""Retries as users expect, against a real hub driven by a manual clock: a failed attempt waits out a backoff with
a countdown, the next attempt prefers another agent, history is grouped per attempt, and a finished task re-runs as
a new linked task."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.clock import ManualClock
from hub.retry_backoff import backoff_ms
from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle, wait_tasks

BACKOFF_S = 30.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def start(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Callable[..., Awaitable[HubHandle]]]:
    """Factory: a real hub on 127.0.0.1 port 0 whose time is ``clock``."""
    handles: list[HubHandle] = []

    async def run(data_dir: Path | None = None, **overrides: Any) -> HubHandle:
        settings = HubSettings(
            host="127.0.0.1",
            port=0,
            data_dir=data_dir or tmp_path / f"hub-{len(handles)}",
            retry_backoff_base_s=BACKOFF_S,
            presence_ttl_s=10.0**6,  # the clock jumps: keep the sweeps out of the way
            acceptance_timeout_s=10.0**6,
            stuck_after_s=10.0**6,
            stuck_working_after_s=10.0**6,
            **overrides,
        )
        server = HubServer(settings, clock)
        await server.start()
        handle = HubHandle(server, settings.data_dir)
        handles.append(handle)
        return handle

    yield run
    for handle in handles:
        if not handle.http.is_closed:
            await handle.http.aclose()
            await handle.server.stop()


@pytest.fixture
async def agents(start: Any) -> AsyncIterator[Callable[..., Awaitable[AgentSim]]]:
    sims: list[AgentSim] = []

    async def connect(handle: HubHandle, behaviour: str) -> AgentSim:
        agent_id = f"sim-{uuid.uuid4().hex[:8]}"
        sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id), behaviour=behaviour)  # type: ignore[arg-type]
        await sim.connect()
        sims.append(sim)
        return sim

    yield connect
    for sim in sims:
        await sim.close()


async def until(predicate: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait (bounded) until ``predicate`` holds, looking again at every turn of the event loop's timers."""
    async with asyncio.timeout(timeout_s * SCALE):
        while not predicate():
            await asyncio.sleep(0.005)


def test_backoff_doubles_up_to_the_cap():
    """The wait doubles per ended attempt and stops at the cap; a zero base turns it off."""
    assert [backoff_ms(n, 5, 60) for n in range(0, 6)] == [0, 5000, 10000, 20000, 40000, 60000]
    assert backoff_ms(3, 0, 60) == 0
    assert backoff_ms(10_000, 5, 300) == 300_000


async def test_failed_attempt_waits_then_goes_to_another_agent(start, agents, clock):
    """After a failure the task is queued with retry_at and a 'retry in Ns' reason that counts down; no agent gets
    it before then, not even a fresh idle one; once due it goes to the agent that has not failed it (though the
    one that failed has been idle longer); GET shows both attempts."""
    hub = await start()
    bad = await agents(hub, "fail")
    tid = await hub.submit(description="flaky", max_retries=3)
    await until(lambda: hub.hub.queue.tasks[tid].retry_count == 1)
    failed_at = clock.now_ms()
    shown = await hub.task(tid)
    assert shown["status"] == "queued"
    assert shown["retry_at"] == failed_at + int(BACKOFF_S * 1000)
    assert shown["failed_on"] == [bad.agent_id]
    assert shown["waiting_reason"] == {"code": "retry_backoff", "detail": "retry in 30s (attempt 2 of 3)"}

    rounds = hub.hub.fleet.scheduler.n_rounds
    good = await agents(hub, "complete")  # its arrival runs a round: the task is held back
    await until(lambda: hub.hub.fleet.scheduler.n_rounds > rounds)
    clock.advance(10)
    shown = await hub.task(tid)
    assert shown["status"] == "queued" and good.received == [] and len(bad.received) == 1
    assert shown["waiting_reason"]["detail"] == "retry in 20s (attempt 2 of 3)"

    clock.advance(21)
    await wait_tasks(hub, [tid], {"completed"})
    assert [r.task_id for r in good.received] == [tid]
    assert len(bad.received) == 1
    shown = await hub.task(tid)
    assert shown["retry_at"] is None and shown["waiting_reason"] is None
    first, second = shown["attempts"]
    assert (first["attempt"], first["agent_id"], first["result"], first["reason"]) == (
        1,
        bad.agent_id,
        "retried",
        "agent_error",
    )
    assert first["retry_at"] == failed_at + 30_000 and first["error"] == "smoke-test-failure"
    assert (second["attempt"], second["agent_id"], second["result"], second["outcome"]) == (
        2,
        good.agent_id,
        "completed",
        "unverified",
    )
    assert second["assigned_at"] >= failed_at + 30_000


async def test_retry_returns_to_the_same_agent_when_no_other_can_run_it(start, agents, clock):
    """With one agent only, the retry goes back to it once the backoff is over (and waits twice as long the second
    time), and the third failure dead-letters the task."""
    hub = await start()
    only = await agents(hub, "fail")
    tid = await hub.submit(description="doomed", max_retries=3)
    await until(lambda: hub.hub.queue.tasks[tid].retry_count == 1)
    clock.advance(BACKOFF_S)
    await until(lambda: hub.hub.queue.tasks[tid].retry_count == 2)
    assert (await hub.task(tid))["retry_at"] == clock.now_ms() + int(2 * BACKOFF_S * 1000)
    clock.advance(2 * BACKOFF_S)
    await wait_tasks(hub, [tid], {"dead_letter"})
    assert [r.task_id for r in only.received] == [tid] * 3
    assert [a["result"] for a in (await hub.task(tid))["attempts"]] == ["retried", "retried", "dead_letter"]


async def test_retry_state_survives_a_restart(start, agents, clock):
    """retry_at and failed_on are stored: a restarted hub still holds the retry back until it is due."""
    hub = await start()
    await agents(hub, "fail")
    tid = await hub.submit(description="flaky")
    await until(lambda: hub.hub.queue.tasks[tid].retry_count == 1)
    await hub.http.aclose()
    await hub.server.stop()
    again = await start(data_dir=hub.data_dir)
    fresh = await agents(again, "complete")
    shown = await again.task(tid)
    assert shown["waiting_reason"]["code"] == "retry_backoff" and len(shown["failed_on"]) == 1
    assert fresh.received == []
    clock.advance(BACKOFF_S + 1)
    await wait_tasks(again, [tid], {"completed"})
    assert [r.task_id for r in fresh.received] == [tid]


async def test_rerun_makes_a_linked_copy_of_a_finished_task(make_hub):
    """POST /rerun on a finished task queues a new task doing the same work, linked by rerun_of, with a fresh
    retry budget and an optional new priority; a live task is 409, an unknown one 404; an agent may re-run only
    what it submitted."""
    hub = await make_hub()
    r = await hub.http.post(
        "/api/tasks",
        json={"description": "count", "metadata": {"shell_command": "true"}, "priority": "low", "max_retries": 2},
    )
    tid = r.json()["task_id"]
    assert (await hub.http.post(f"/api/tasks/{tid}/rerun")).json()["error"] == "invalid_state"
    assert (await hub.http.post(f"/api/tasks/{tid}/cancel")).status_code == 200

    r = await hub.http.post(f"/api/tasks/{tid}/rerun", json={"priority": "high"})
    assert r.status_code == 201, r.text
    new_id = r.json()["task_id"]
    assert new_id != tid and r.json()["rerun_of"] == tid
    copy = await hub.task(new_id)
    assert (copy["description"], copy["metadata"], copy["max_retries"]) == ("count", {"shell_command": "true"}, 2)
    assert (copy["priority_name"], copy["rerun_of"], copy["retry_count"]) == ("high", tid, 0)
    assert (await hub.task(tid))["status"] == "cancelled"

    assert (await hub.http.post(f"/api/tasks/{tid}/rerun", json={"priority": "soon"})).status_code == 422
    assert (await hub.http.post("/api/tasks/task-nope/rerun")).status_code == 404
    other = await hub.mint_token("someone-else")
    r = await hub.http.post(f"/api/tasks/{tid}/rerun", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403
