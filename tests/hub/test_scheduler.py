"""The scheduler's matching rules (hub/scheduler.plan and eligible) as tables, then against a real hub."""

from __future__ import annotations

from typing import Any

import pytest

from hub.scheduler import Candidate, eligible, plan
from hub.tasks import Task
from tests.conftest import wait_tasks

NOW = 1_700_000_000_000


def task(
    tid: str,
    needs: tuple[str, ...] = (),
    assign_to: str | None = None,
    depends_on: tuple[str, ...] = (),
    priority: int = 2,
    tier: str | None = None,
    **fields: Any,
) -> Task:
    return Task(
        id=tid,
        description=tid,
        created_at=NOW,
        updated_at=NOW,
        priority=priority,
        needed_capabilities=list(needs),
        assign_to=assign_to,
        depends_on=list(depends_on),
        complexity={"effective_tier": tier} if tier else None,
        **fields,
    )


def agent(aid: str, *caps: str) -> Candidate:
    return Candidate(aid, frozenset(caps))


def runs(aid: str, executors: str, *models: str) -> Candidate:
    """An agent that said what it runs: ``runs("a", "shell ollama", "qwen")``."""
    return Candidate(aid, frozenset(), frozenset(executors.split()), models)


ELIGIBLE: list[tuple[str, Task, Candidate, bool]] = [
    ("empty needs match an agent without capabilities", task("t"), agent("a"), True),
    ("empty needs match any agent", task("t"), agent("a", "code", "gpu"), True),
    ("exact capabilities", task("t", ("code",)), agent("a", "code"), True),
    ("superset of the needs", task("t", ("code", "python")), agent("a", "code", "python", "gpu"), True),
    ("one need missing", task("t", ("code", "gpu")), agent("a", "code"), False),
    ("no capabilities at all", task("t", ("code",)), agent("a"), False),
    ("capability names are exact", task("t", ("Code",)), agent("a", "code"), False),
    ("pinned to this agent", task("t", assign_to="a"), agent("a"), True),
    ("pinned to another agent", task("t", assign_to="b"), agent("a", "code"), False),
    ("pinned, but missing a need", task("t", ("gpu",), assign_to="a"), agent("a"), False),
    ("pinned and capable", task("t", ("gpu",), assign_to="a"), agent("a", "gpu"), True),
]


@pytest.mark.parametrize(("case", "t", "a", "ok"), ELIGIBLE, ids=[c for c, *_ in ELIGIBLE])
def test_eligible(case: str, t: Task, a: Candidate, ok: bool) -> None:
    """An agent may take a task when it is the pinned agent (if any) and has a superset of the needed capabilities."""
    assert eligible(t, a) is ok


PLANS: list[tuple[str, list[Task], list[Candidate], set[str], list[tuple[str, str]]]] = [
    ("nothing queued", [], [agent("a")], set(), []),
    ("no idle agent", [task("t1")], [], set(), []),
    (
        "one task per agent",
        [task("t1"), task("t2"), task("t3")],
        [agent("a"), agent("b")],
        set(),
        [("t1", "a"), ("t2", "b")],
    ),
    (
        "queue order kept, longest idle agent first",
        [task("t1"), task("t2")],
        [agent("old"), agent("new")],
        set(),
        [("t1", "old"), ("t2", "new")],
    ),
    (
        "spread: every idle agent gets one",
        [task(f"t{n}") for n in range(4)],
        [agent(x) for x in "abcd"],
        set(),
        [("t0", "a"), ("t1", "b"), ("t2", "c"), ("t3", "d")],
    ),
    (
        "capable agent chosen over the longer idle one",
        [task("t1", ("gpu",))],
        [agent("a"), agent("b", "gpu")],
        set(),
        [("t1", "b")],
    ),
    (
        "no capable agent: the task waits, the next one goes",
        [task("t1", ("gpu",)), task("t2")],
        [agent("a")],
        set(),
        [("t2", "a")],
    ),
    (
        "specialist left for the task that needs it",
        [task("t1"), task("t2", ("gpu",))],
        [agent("a"), agent("g", "gpu")],
        set(),
        [("t1", "a"), ("t2", "g")],
    ),
    (
        "pinned task skips other agents",
        [task("t1", assign_to="b"), task("t2")],
        [agent("a"), agent("b")],
        set(),
        [("t1", "b"), ("t2", "a")],
    ),
    (
        "pinned to an absent agent: it waits",
        [task("t1", assign_to="z"), task("t2")],
        [agent("a")],
        set(),
        [("t2", "a")],
    ),
    (
        "dependency not done: skipped",
        [task("t1", depends_on=("d1",)), task("t2")],
        [agent("a"), agent("b")],
        set(),
        [("t2", "a")],
    ),
    ("dependency done: scheduled", [task("t1", depends_on=("d1",))], [agent("a")], {"d1"}, [("t1", "a")]),
    ("every dependency must be done", [task("t1", depends_on=("d1", "d2"))], [agent("a")], {"d1"}, []),
    (
        "complex: the agent with claude, over the longer idle one without",
        [task("t1", tier="complex")],
        [runs("local", "shell ollama", "qwen"), runs("cloud", "shell claude")],
        set(),
        [("t1", "cloud")],
    ),
    (
        "complex, nobody idle has claude: a local model",
        [task("t1", tier="complex")],
        [runs("bare", "shell"), runs("local", "shell ollama", "qwen")],
        set(),
        [("t1", "local")],
    ),
    (
        "complex, nobody idle can run it: it waits, the next one goes",
        [task("t1", tier="complex"), task("t2", metadata={"shell_command": "true"})],
        [runs("bare", "shell")],
        set(),
        [("t2", "bare")],
    ),
    (
        "standard prefers the local model",
        [task("t1", tier="standard")],
        [runs("cloud", "claude"), runs("local", "ollama", "qwen")],
        set(),
        [("t1", "local")],
    ),
    ("an explicit executor has no fallback", [task("t1", executor="ollama")], [runs("cloud", "claude")], set(), []),
    (
        "a pinned model needs an agent serving it",
        [task("t1", metadata={"model": "llama3"})],
        [runs("q", "ollama", "qwen"), runs("l", "ollama", "qwen", "llama3")],
        set(),
        [("t1", "l")],
    ),
    ("ollama without a model runs nothing on it", [task("t1")], [runs("a", "shell ollama")], set(), []),
    (
        "agents that did not say are handed anything",
        [task("t1", tier="complex", executor="claude")],
        [agent("a")],
        set(),
        [("t1", "a")],
    ),
    (
        "impossible shapes are passed over, the others still placed",
        [*(task(f"x{n}", executor="claude") for n in range(3)), task("t1")],
        [runs("a", "ollama", "qwen")],
        set(),
        [("t1", "a")],
    ),
    (
        "a fallback taken leaves the preferred agent to the next task",
        [task("t1", tier="complex"), task("t2", tier="complex")],
        [runs("local", "ollama", "qwen"), runs("cloud", "claude")],
        set(),
        [("t1", "cloud"), ("t2", "local")],
    ),
]


@pytest.mark.parametrize(("case", "queued", "idle", "done", "pairs"), PLANS, ids=[c for c, *_ in PLANS])
def test_plan(
    case: str, queued: list[Task], idle: list[Candidate], done: set[str], pairs: list[tuple[str, str]]
) -> None:
    """Queued tasks are paired, in queue order, with the first idle agent that may and can run them (on the preferred
    target when one can, else on a fallback), one task per agent."""
    out = plan(queued, idle, lambda t: all(d in done for d in t.depends_on))
    assert [(m.task.id, m.agent_id) for m in out] == pairs


def test_plan_stops_when_agents_run_out() -> None:
    """Planning does not walk the rest of a long queue once every idle agent has a task."""
    seen: list[str] = []

    def queued() -> Any:
        for n in range(1000):
            seen.append(f"t{n}")
            yield task(f"t{n}")

    assert len(plan(queued(), [agent("a")], lambda t: True)) == 1
    assert len(seen) <= 2


# --- against a real hub ------------------------------------------------------------------------------------------


async def test_priority_then_fifo(hub, make_agent):
    """With one agent, tasks are handed out most urgent lane first and first-in-first-out within a lane."""
    lanes = ["low", "normal", "urgent", "high", "normal", "urgent", "low", "high"]
    ids = [await hub.submit(description=f"p{n}", priority=p) for n, p in enumerate(lanes)]
    queued = [t.id for t in hub.hub.queue.queued_in_order()]
    rank = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
    ranked = sorted((rank[p], n, tid) for n, (p, tid) in enumerate(zip(lanes, ids, strict=True)))
    expected = [tid for _, _, tid in ranked]
    assert queued == expected
    sim = await make_agent()
    await wait_tasks(hub, ids, {"completed"})
    assert [r.task_id for r in sim.received] == expected


async def test_capabilities_decide_who_gets_the_task(hub, make_agent):
    """A task needing a capability goes only to an agent that has it; one nobody has stays queued."""
    plain = await make_agent(behaviour="ignore")
    coder = await make_agent(behaviour="ignore", capabilities=["code", "python"])
    needy = await hub.submit(description="needs code", needed_capabilities=["code"])
    await wait_tasks(hub, [needy], {"assigned"})
    assert hub.hub.queue.tasks[needy].assigned_to == coder.agent_id
    impossible = await hub.submit(description="needs gpu", needed_capabilities=["gpu"])
    anyone = await hub.submit(description="needs nothing")
    await wait_tasks(hub, [anyone], {"assigned"})
    assert hub.hub.queue.tasks[anyone].assigned_to == plain.agent_id
    assert hub.hub.queue.tasks[impossible].status == "queued"


async def test_assign_to_pins_the_agent(hub, make_agent):
    """A task pinned with assign_to (or metadata.assign_to) waits for that agent even when others are idle."""
    other = await make_agent(behaviour="ignore")
    pinned = await hub.submit(description="for target", assign_to="target")
    via_metadata = await hub.submit(description="also for target", metadata={"assign_to": "target"})
    target = await make_agent("target")
    await wait_tasks(hub, [pinned, via_metadata], {"completed"})
    assert [r.task_id for r in target.received] == [pinned, via_metadata]
    assert other.received == []


async def test_one_task_per_agent_and_spread(hub, make_agent):
    """Three idle agents and three tasks: each agent holds exactly one, in order of how long it was idle."""
    sims = [await make_agent(behaviour="ignore") for _ in range(3)]
    ids = [await hub.submit(description=f"s{n}") for n in range(3)]
    await wait_tasks(hub, ids, {"assigned"})
    holders = [hub.hub.queue.tasks[t].assigned_to for t in ids]
    assert holders == [s.agent_id for s in sims]
    extra = await hub.submit(description="nobody free")
    assert hub.hub.queue.tasks[extra].status == "queued"
    for s in sims:
        await s.wait_for(lambda m: m.get("type") == "task_assign")
        assert len(s.received) == 1


async def test_longest_idle_agent_gets_the_next_task(hub, make_agent):
    """The agent that finished first (idle longest) is handed the next task."""
    first = await make_agent()
    second = await make_agent()
    t1 = await hub.submit(description="one")
    await wait_tasks(hub, [t1], {"completed"})
    await first.settled()
    assert [r.task_id for r in first.received] == [t1]
    t2 = await hub.submit(description="two")
    await wait_tasks(hub, [t2], {"completed"})
    assert [r.task_id for r in second.received] == [t2]


async def test_dependencies_are_respected(hub, make_agent):
    """A task is not handed out before every task it depends on has completed, whatever its priority."""
    a = await hub.submit(description="first", priority="low")
    b = await hub.submit(description="second", priority="urgent", depends_on=[a])
    c = await hub.submit(description="third", priority="urgent", depends_on=[a, b])
    sim = await make_agent()
    await wait_tasks(hub, [a, b, c], {"completed"})
    assert [r.task_id for r in sim.received] == [a, b, c]
    history = {t: hub.hub.queue.tasks[t].history for t in (a, b, c)}
    done_a = next(h["timestamp"] for h in history[a] if h["event"] == "completed")
    assert all(h["timestamp"] >= done_a for h in history[b] if h["event"] == "assigned")


async def test_agent_joining_an_empty_queue_stays_idle(hub, make_agent):
    """An agent that joins with nothing queued stays idle, and takes the first task submitted afterwards."""
    sim = await make_agent()
    assert hub.hub.agents.get(sim.agent_id).state == "idle"
    tid = await hub.submit(description="late")
    await wait_tasks(hub, [tid], {"completed"})
    assert [r.task_id for r in sim.received] == [tid]
