"""The fleet end to end: a real hub process and real sidecar processes running shell tasks in their sandboxes.

TEST-01/02/03 of the original smoke suite with real processes, a sidecar killed with SIGKILL mid-task, and the hub
killed and restarted mid-task: every task completes exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from tests.conftest import SCALE
from tests.e2e.conftest import Fleet, free_port

pytestmark = pytest.mark.slow

FAST_RECLAIM = {"reconnect_grace_s": 1}


def completed_events(task: dict) -> int:
    return sum(1 for h in task["history"] if h["event"] == "completed")


def is_working_on(agent_id: str):
    return lambda task: task["assigned_to"] == agent_id


async def test_01_two_sidecars_complete_ten_verified_tasks(fleet: Fleet) -> None:
    """TEST-01: two sidecar processes complete ten shell tasks, each verified, assigned within 5 s, both get work."""
    await fleet.start_hub()
    a, b = await fleet.add_sidecar(), await fleet.add_sidecar()
    ids = [
        await fleet.submit_shell(
            f"sleep 0.2; echo {n} > number.txt",
            verification_steps=[{"type": "command_succeeds", "target": f"grep -qx {n} number.txt"}],
        )
        for n in range(1, 11)
    ]
    tasks = await fleet.wait_status(ids, {"completed"}, timeout_s=60)
    for task in tasks:
        assert task["outcome"] == "verified", task
        assert task["result"]["exit_code"] == 0
        assert task["assigned_at"] - task["created_at"] < 5000
        assert completed_events(task) == 1
    per_agent = Counter(task["assigned_to"] for task in tasks)
    assert per_agent[a.name] >= 1 and per_agent[b.name] >= 1, per_agent


async def test_01b_failing_command_is_never_a_success(fleet: Fleet) -> None:
    """A command that exits non-zero on every attempt ends in dead-letter, with its exit code, never completed."""
    await fleet.start_hub()
    await fleet.add_sidecar()
    tid = await fleet.submit_shell("echo nope >&2; exit 4", max_retries=2)
    [task] = await fleet.wait_status([tid], {"dead_letter"}, timeout_s=60)
    assert task["retry_count"] == 2
    assert completed_events(task) == 0
    assert "4" in (task["last_error"] or "")


async def test_02_sigkilled_sidecar_task_is_retried_elsewhere_and_completes_once(fleet: Fleet) -> None:
    """TEST-02: the sidecar running a task is SIGKILLed; the task completes exactly once, on the survivor."""
    await fleet.start_hub(**FAST_RECLAIM)
    victim = await fleet.add_sidecar("victim")
    tid = await fleet.submit_shell(
        "sleep 5; echo done > out.txt", verification_steps=[{"type": "file_exists", "target": "out.txt"}]
    )
    await fleet.wait_status([tid], {"working"}, where=is_working_on("victim"))
    survivor = await fleet.add_sidecar("survivor")
    victim.kill9()
    [task] = await fleet.wait_status([tid], {"completed"}, timeout_s=60)
    assert task["assigned_to"] == survivor.name
    assert completed_events(task) == 1
    assert task["retry_count"] == 1, "the lost attempt counts"
    assert task["outcome"] == "verified"


async def test_02c_killed_sidecar_comes_back_and_does_not_complete_twice(fleet: Fleet) -> None:
    """A SIGKILLed sidecar restarted on its old state asks the hub, drops or fails its task, and nothing runs twice."""
    await fleet.start_hub(**FAST_RECLAIM)
    victim = await fleet.add_sidecar("victim")
    tid = await fleet.submit_shell("sleep 3; echo once >> /dev/null")
    await fleet.wait_status([tid], {"working"}, where=is_working_on("victim"))
    victim.kill9()
    await fleet.add_sidecar("victim")  # same config and state dir: recovery path
    survivor = await fleet.add_sidecar("survivor")
    [task] = await fleet.wait_status([tid], {"completed"}, timeout_s=60)
    assert completed_events(task) == 1
    assert task["retry_count"] == 1
    assert survivor.alive and fleet.sidecars["victim"].alive


async def test_03_four_sidecars_share_twenty_tasks(fleet: Fleet) -> None:
    """TEST-03: four sidecars, twenty tasks in four lanes: all complete, each sidecar does 3-7, urgent goes first."""
    await fleet.start_hub()
    for _ in range(4):
        await fleet.add_sidecar()
    lanes = ["urgent"] * 4 + ["high"] * 4 + ["normal"] * 8 + ["low"] * 4
    ids = [await fleet.submit_shell("sleep 0.5", priority=lane) for lane in lanes]
    tasks = await fleet.wait_status(ids, {"completed"}, timeout_s=60)
    per_agent = Counter(task["assigned_to"] for task in tasks)
    assert len(per_agent) == 4 and all(3 <= n <= 7 for n in per_agent.values()), per_agent
    assert all(completed_events(task) == 1 for task in tasks)

    def mean(lane: str) -> float:
        return sum(t["assigned_at"] for t, p in zip(tasks, lanes, strict=True) if p == lane) / lanes.count(lane)

    assert mean("urgent") <= mean("low")


async def test_hub_killed_mid_task_result_is_delivered_exactly_once(fleet: Fleet) -> None:
    """The hub is SIGKILLed while a task runs and comes back; the sidecar reconnects and the task completes once."""
    port = free_port()
    hub = await fleet.start_hub(port=port)
    await fleet.add_sidecar("steady")
    tid = await fleet.submit_shell("sleep 2; echo finished")
    await fleet.wait_status([tid], {"working"})
    hub.kill9()
    state_file = fleet.home / "steady" / "state" / "state.json"

    def outbox() -> list:
        return json.loads(state_file.read_text()).get("outbox", []) if state_file.exists() else []

    async with asyncio.timeout(30 * SCALE):  # the command finishes while the hub is down: its result waits
        while not outbox():
            await asyncio.sleep(0.05)
    assert [e["task_id"] for e in outbox()] == [tid]
    await fleet.start_hub(port=port)
    [task] = await fleet.wait_status([tid], {"completed"}, timeout_s=60)
    assert completed_events(task) == 1
    assert task["retry_count"] == 0
    assert task["result"]["output"] == "finished\n"
    assert fleet.sidecars["steady"].alive
    async with asyncio.timeout(10 * SCALE):  # the hub's ack empties the outbox
        while outbox():
            await asyncio.sleep(0.05)
    assert "resending 1 unacknowledged result" in fleet.sidecars["steady"].text()


async def test_hub_restarted_while_task_keeps_running(fleet: Fleet) -> None:
    """The hub restarts (SIGTERM) during a long task; the sidecar's state_report keeps the task and it completes."""
    port = free_port()
    hub = await fleet.start_hub(port=port)
    await fleet.add_sidecar("steady")
    tid = await fleet.submit_shell("sleep 4; echo survived")
    await fleet.wait_status([tid], {"working"})
    await hub.stop()
    await fleet.start_hub(port=port)
    [task] = await fleet.wait_status([tid], {"completed"}, timeout_s=60)
    assert completed_events(task) == 1
    assert task["retry_count"] == 0
    assert task["result"]["output"] == "survived\n"


async def test_sidecar_identifies_with_sandbox_level_and_reports_resources(fleet: Fleet) -> None:
    """The hub sees the sidecar's client type, sandbox level and a resource report right after it connects."""
    await fleet.start_hub()
    await fleet.add_sidecar("reporter")
    assert fleet.http is not None
    async with asyncio.timeout(10):
        while not (agent := (await fleet.http.get("/api/agents/reporter")).json()).get("resources"):
            await asyncio.sleep(0.1)
    assert agent["client_type"] == "sidecar" and agent["sandbox_level"] == "bwrap"
    assert agent["resources"]["ram_total_bytes"] > 0


async def test_sigterm_says_goodbye_and_exits_zero(fleet: Fleet) -> None:
    """SIGTERM makes the sidecar send agent_restarting and exit 0; the token never appears in any log."""
    await fleet.start_hub()
    sidecar = await fleet.add_sidecar("polite")
    assert await sidecar.stop() == 0, "stop() sends SIGTERM"
    assert "stopped (sigterm)" in sidecar.text()
    token = (fleet.home / "polite" / "sidecar.json").read_text().split('"token": "')[1].split('"')[0]
    assert all(token not in proc.text() for proc in fleet.processes)
