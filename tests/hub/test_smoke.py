"""The original AgentCom smoke suite (TEST-01, 02, 02b, 03, 03b), with its numbers, against a real hub."""

from __future__ import annotations

from collections import Counter

from tests.conftest import wait_tasks


def completed_events(task: dict) -> int:
    return sum(1 for h in task["history"] if h["event"] == "completed")


async def test_01_basic_two_agents_complete_ten_tasks(hub, make_agent):
    """TEST-01: two agents complete ten tasks, each assigned within 5 s, and both agents get work."""
    a, b = await make_agent(), await make_agent()
    ids = [await hub.submit(description=f"Write number {n} to file", priority="normal") for n in range(1, 11)]
    await wait_tasks(hub, ids, {"completed"}, timeout_s=30)
    await a.settled(), await b.settled()
    for tid in ids:
        task = await hub.task(tid)
        assert task["status"] == "completed"
        assert task["assigned_at"] - task["created_at"] < 5000
        assert (task["tokens_used"] or 0) < 500
        assert task["result"] == {"status": "success", "outcome": "unverified", "output": "smoke-test-result"}
        assert task["outcome"] == "unverified"
    assert a.completed_count >= 1 and b.completed_count >= 1
    assert a.completed_count + b.completed_count == 10


async def test_02_killed_agent_task_completes_once_on_survivor(make_hub, tmp_path):
    """TEST-02: the victim's connection dies mid-task; the task completes exactly once, on the survivor."""
    hub = await make_hub(reconnect_grace_s=0.5)
    from shared.agent_sim import AgentSim

    victim = AgentSim(hub.ws_url, "victim", await hub.mint_token("victim"), behaviour="delay", delay_s=10)
    await victim.connect()
    tid = await hub.submit(description="survive a crash")
    await victim.wait_for(lambda m: m.get("type") == "task_assign")
    survivor = AgentSim(hub.ws_url, "survivor", await hub.mint_token("survivor"))
    await survivor.connect()
    await victim.kill_connection()
    await wait_tasks(hub, [tid], {"completed"}, timeout_s=60)
    await survivor.settled()
    task = await hub.task(tid)
    assert completed_events(task) == 1
    assert task["assigned_to"] == "survivor"
    assert survivor.completed_count == 1
    assert task["retry_count"] == 1, "the lost attempt counts"
    await survivor.close()


async def test_02b_five_tasks_survive_a_victim(make_hub):
    """TEST-02b: five tasks, the victim dies after its first assignment; all complete exactly once."""
    hub = await make_hub(reconnect_grace_s=0.5)
    from shared.agent_sim import AgentSim

    victim = AgentSim(hub.ws_url, "victim", await hub.mint_token("victim"), behaviour="delay", delay_s=5)
    await victim.connect()
    ids = [await hub.submit(description=f"task {n}") for n in range(5)]
    await victim.wait_for(lambda m: m.get("type") == "task_assign")
    survivor = AgentSim(hub.ws_url, "survivor", await hub.mint_token("survivor"))
    await survivor.connect()
    await victim.kill_connection()
    await wait_tasks(hub, ids, {"completed"}, timeout_s=60)
    await survivor.settled()
    for tid in ids:
        assert completed_events(await hub.task(tid)) == 1
    assert victim.completed_count + survivor.completed_count == 5
    await survivor.close()


async def test_03_scale_four_agents_twenty_tasks(hub, make_agent):
    """TEST-03: 4 agents, 20 tasks in four lanes; each agent completes 3-7 and urgent goes before low."""
    agents = [await make_agent() for _ in range(4)]
    lanes = ["urgent"] * 4 + ["high"] * 4 + ["normal"] * 8 + ["low"] * 4
    ids = [await hub.submit(description=f"scale {i}", priority=p) for i, p in enumerate(lanes)]
    await wait_tasks(hub, ids, {"completed"}, timeout_s=30)
    for a in agents:
        await a.settled()
    for a in agents:
        assert 3 <= a.completed_count <= 7, [x.completed_count for x in agents]
    tasks = [await hub.task(t) for t in ids]
    assert all(t["status"] == "completed" for t in tasks)
    mean = lambda p: sum(t["assigned_at"] for t in tasks if t["priority_name"] == p) / lanes.count(p)  # noqa: E731
    assert mean("urgent") <= mean("low")


async def test_03b_no_starvation_of_low_priority(hub, make_agent):
    """TEST-03b: 12 tasks alternating urgent and low, one by one; every one completes, low included."""
    for _ in range(4):
        await make_agent()
    ids = []
    for i in range(12):
        ids.append(await hub.submit(description=f"alt {i}", priority="urgent" if i % 2 == 0 else "low"))
    await wait_tasks(hub, ids, {"completed"}, timeout_s=30)
    tasks = [await hub.task(t) for t in ids]
    assert Counter(t["priority_name"] for t in tasks if t["status"] == "completed") == {"urgent": 6, "low": 6}
