"""The original's cycles against a real hub (manual clock, simulated agents, real git repositories)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from hub.autonomy.states import State
from hub.clock import ManualClock
from shared.agent_sim import AgentSim
from tests.conftest import HubHandle, wait_tasks
from tests.hub.autonomy.conftest import WAIT_S, auto_of, commit, make_repo, transitions

Start = Callable[..., Awaitable[HubHandle]]


async def agent(handle: HubHandle, behaviour: str = "complete") -> AgentSim:
    agent_id = f"sim-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id), behaviour=behaviour)  # type: ignore[arg-type]
    await sim.connect()
    return sim


async def test_resting_executing_resting(start: Start) -> None:
    """Queued work wakes the machine into executing; once the task completes it rests again, with durations."""
    handle = await start()
    auto = auto_of(handle)
    sim = await agent(handle, "ignore")
    try:
        tid = await handle.submit(description="work", assign_to=sim.agent_id)
        await auto.fsm.wait_for(State.EXECUTING, WAIT_S)
        rec = await sim.wait_for(lambda m: m.get("type") == "task_assign")
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": rec["generation"]})
        sim.behaviour = "complete"
        await sim.finish(sim.received[0])
        await wait_tasks(handle, [tid], {"completed"})
        await auto.fsm.wait_for(State.RESTING, WAIT_S)
    finally:
        await sim.close()
    assert transitions(handle)[-2:] == [("resting", "executing"), ("executing", "resting")]
    body = (await handle.http.get("/api/hub/history")).json()
    assert body["transitions"][0]["reason"] == "no work left" and body["transitions"][0]["duration_ms"] >= 0
    assert (await handle.http.get("/api/hub/state")).json()["cycle_count"] == 1


async def test_improving_contemplating_resting(start: Start, tmp_path: Path, clock: ManualClock) -> None:
    """A new repository is scanned (TODO and a module without tests found and recorded), then the hub contemplates
    (a scalability report listed at /api/hub/proposals) and rests; the unchanged repository is not scanned again."""
    repo = make_repo(
        tmp_path / "demo",
        {
            "calc.py": "def add(a, b):\n    return a + b  # TODO: floats\n",
            "util.py": "import os\n",
            "tests/test_util.py": "",
        },
    )
    handle = await start(autonomy_scan_paths=(repo,), autonomy_improve_cooldown_s=0, autonomy_submit_goals=False)
    auto = auto_of(handle)
    await auto.tick()
    await auto.fsm.wait_for(State.RESTING, WAIT_S)
    assert transitions(handle)[-3:] == [
        ("resting", "improving"),
        ("improving", "contemplating"),
        ("contemplating", "resting"),
    ]
    findings = {r.key: json.loads(r.body) for r in await handle.hub.store.load_records("finding")}
    assert set(findings) == {"demo:calc.py:todo", "demo:calc.py:missing_tests", "demo:util.py:ruff"}
    assert "F401" in findings["demo:util.py:ruff"]["detail"]
    assert auto.scanned["demo"]["skipped"] == ["tests: no test command"]
    assert findings["demo:calc.py:todo"]["goal"] == "goals_off"  # goals off in this hub: kept as a record
    proposals = (await handle.http.get("/api/hub/proposals")).json()["proposals"]
    assert [p for p in proposals if p["type"] == "scalability"][0]["recommendation"] == "no scaling action needed"
    before = len(auto.fsm.history)
    clock.advance(3600)
    await auto.tick()
    assert len(auto.fsm.history) == before and auto.fsm.current is State.RESTING


async def test_changed_repository_rescanned_without_repeating_findings(
    start: Start, tmp_path: Path, clock: ManualClock
) -> None:
    """A new commit makes the repository due again; a file whose finding was raised within the file cooldown is not
    raised again, a new file is."""
    repo = make_repo(tmp_path / "demo", {"calc.py": "x = 1  # FIXME\n"})
    handle = await start(
        autonomy_scan_paths=(repo,), autonomy_improve_cooldown_s=60, autonomy_contemplate_cooldown_s=10**6,
        autonomy_submit_goals=False,
    )  # fmt: skip
    auto = auto_of(handle)
    await auto.tick()
    await auto.fsm.wait_until(lambda: len(auto.fsm.history) >= 4, WAIT_S)  # improved, contemplated, rests
    commit(repo, {"calc.py": "x = 2  # FIXME\n", "extra.py": "y = 1\n"}, "more")
    await auto.tick()
    assert auto.fsm.current is State.RESTING  # within the repository's cooldown
    clock.advance(61)
    await auto.tick()
    await auto.fsm.wait_until(lambda: len(auto.fsm.history) >= 6, WAIT_S)
    assert transitions(handle)[-2:] == [("resting", "improving"), ("improving", "resting")]  # contemplated lately
    scan = auto.scanned["demo"]
    assert scan["findings"] == 3 and scan["raised"] == 1  # calc.py todo + missing tests again, extra.py new


async def test_healing_requeues_stuck_tasks(start: Start, clock: ManualClock) -> None:
    """Three tasks with no update for longer than the stuck limit make the hub heal: each is requeued through the
    queue (an attempt counted), every action is in the healing journal, and the hub rests with a cooldown."""
    handle = await start()
    auto = auto_of(handle)
    sims = [await agent(handle, "ignore") for _ in range(3)]
    try:
        tids = [await handle.submit(description=f"t{i}", assign_to=s.agent_id) for i, s in enumerate(sims)]
        await wait_tasks(handle, tids, {"assigned"})
        await auto.fsm.wait_for(State.EXECUTING, WAIT_S)
        clock.advance(400)
        await auto.tick()
        await auto.fsm.wait_until(lambda: ("healing", "resting") in transitions(handle), WAIT_S)
    finally:
        for sim in sims:
            await sim.close()
    log = (await handle.http.get("/api/hub/healing-history")).json()["history"]
    assert sorted((e["action"], e["target"], e["result"]) for e in log) == sorted(
        ("requeue", t, "retried") for t in tids
    )
    assert all(handle.hub.queue.get(t).retry_count == 1 for t in tids)
    stored = await handle.hub.store.read_journal("healing")
    assert len(stored) == 3
    assert auto.fsm.healing_cooldown_until > clock.now_ms()


async def test_global_watchdog(start: Start, clock: ManualClock) -> None:
    """Executing for more than 2 hours is forced to resting with a critical alert (stored, on the bus)."""
    handle = await start()
    auto = auto_of(handle)
    await handle.submit(description="nobody runs this")
    await auto.fsm.wait_for(State.EXECUTING, WAIT_S)
    clock.advance(7199)
    await auto.tick()
    assert auto.fsm.current is State.EXECUTING
    with handle.hub.bus.subscribe() as events:
        clock.advance(2)
        await auto.tick()
        seen = [events.get_nowait() for _ in range(events.qsize())]
    forced = [h for h in auto.fsm.history if "watchdog" in h["reason"]]
    assert [(h["from"], h["to"], h["duration_ms"]) for h in forced] == [("executing", "resting", 7_201_000)]
    alerts = [json.loads(r.body) for r in await handle.hub.store.load_records("alert")]
    assert [a["severity"] for a in alerts] == ["critical"]
    assert any(e.get("kind") == "alert" for e in seen)


async def test_healing_watchdog(start: Start, clock: ManualClock) -> None:
    """Healing held past 5 minutes with its cycle not done is forced to resting: the cycle is cancelled (nothing
    requeued), a critical alert, a ``watchdog_timeout`` healing entry and a cooldown."""
    handle = await start()
    auto = auto_of(handle)
    sims = [await agent(handle, "ignore") for _ in range(3)]
    try:
        tids = [await handle.submit(description=f"t{i}", assign_to=s.agent_id) for i, s in enumerate(sims)]
        await wait_tasks(handle, tids, {"assigned"})
        await auto.fsm.wait_for(State.EXECUTING, WAIT_S)
        clock.advance(400)
        await auto.tick()  # enters healing; its cycle is created but has not run (no await since)
        assert auto.fsm.current is State.HEALING
        clock.advance(301)
        await auto.tick()
    finally:
        for sim in sims:
            await sim.close()
    i = transitions(handle).index(("executing", "healing"))
    assert transitions(handle)[i + 1] == ("healing", "resting")  # then executing again: the tasks are still there
    assert "healing watchdog" in auto.fsm.history[i + 1]["reason"]
    assert [e["action"] for e in auto.healing_log] == ["watchdog_timeout"]
    assert all(handle.hub.queue.get(t).retry_count == 0 for t in tids)
    alerts = [json.loads(r.body) for r in await handle.hub.store.load_records("alert")]
    assert len(alerts) == 1 and alerts[0]["source"] == "hub_fsm_watchdog"
    assert auto.fsm.healing_cooldown_until == clock.now_ms() + 300_000


async def test_idle_hub_rests_without_spinning(start: Start, tmp_path: Path, clock: ManualClock) -> None:
    """Over 30 simulated minutes of ticks every 30 s an idle hub (its one repository scanned, unchanged, no repo
    cooldown) makes no transition and starts no cycle: it rests."""
    repo = make_repo(tmp_path / "demo", {"calc.py": "x = 1\n"})
    handle = await start(autonomy_scan_paths=(repo,), autonomy_improve_cooldown_s=0, autonomy_submit_goals=False)
    auto = auto_of(handle)
    await auto.tick()
    await auto.fsm.wait_until(lambda: len(auto.fsm.history) >= 4, WAIT_S)  # the first scan of the new repository
    assert auto.fsm.current is State.RESTING
    before, cycles, ticks = len(auto.fsm.history), auto.n_cycles, auto.n_ticks
    for _ in range(60):
        clock.advance(30)
        await auto.tick()
    assert len(auto.fsm.history) == before and auto.n_cycles == cycles
    assert 60 <= auto.n_ticks - ticks <= 62  # ours, plus at most the loop's own stray wake-ups
    assert (await handle.hub.store.read_journal("hub_transition"))[-1].seq == before


async def test_broken_main_heals_into_a_fix_goal(start: Start, tmp_path: Path) -> None:
    """A scanned repository whose tests fail on main makes the hub heal: one ``fix_goal`` action for it (kept as an
    audit row; this hub keeps findings as records), then it rests and does not heal the same breakage again."""
    repo = make_repo(tmp_path / "demo", {"calc.py": "x = 1\n"})
    failing = ("python3", "-c", "raise SystemExit(3)")
    handle = await start(autonomy_scan_paths=(repo,), autonomy_scan_test_command=failing, autonomy_submit_goals=False)
    auto = auto_of(handle)
    await auto.tick()
    await auto.fsm.wait_until(lambda: ("healing", "resting") in transitions(handle), WAIT_S)
    assert transitions(handle)[1:3] == [("resting", "improving"), ("improving", "healing")]
    assert "broken main on demo" in auto.fsm.history[2]["reason"]
    assert [(e["action"], e["target"], e["result"]) for e in auto.healing_log] == [("fix_goal", "demo", "goals_off")]
    assert "exit 3" in auto.broken_main["demo"]
    before = len(auto.fsm.history)
    await auto.tick()
    assert len(auto.fsm.history) == before


async def test_files_a_goal_touched_are_not_raised(start: Start, tmp_path: Path) -> None:
    """Anti-oscillation: a file a goal's task changed lately (its reported change) gets no finding; others do."""
    repo = make_repo(tmp_path / "demo", {"calc.py": "x = 1  # TODO\n", "other.py": "y = 1  # TODO\n"})
    handle = await start(autonomy_scan_paths=(repo,), autonomy_submit_goals=False)
    change = {
        "repo": "demo",
        "branch": "fix",
        "base_commit": "abc123",
        "commit": "def456",
        "files": [{"path": "calc.py"}],
    }
    sim = AgentSim(
        handle.ws_url,
        "fixer",
        await handle.mint_token("fixer"),
        result={"status": "success", "outcome": "unverified", "output": "done", "change": change},
    )
    await sim.connect()
    try:
        tid = await handle.submit(description="fix calc", assign_to="fixer", goal_id="g1", repo="demo")
        await wait_tasks(handle, [tid], {"completed"})
    finally:
        await sim.close()
    auto = auto_of(handle)
    await auto.fsm.wait_for(State.RESTING, WAIT_S)
    await auto.tick()
    await auto.fsm.wait_until(lambda: ("contemplating", "resting") in transitions(handle), WAIT_S)
    files = {json.loads(r.body)["file"] for r in await handle.hub.store.load_records("finding")}
    assert files == {"other.py"}


async def test_findings_and_a_broken_main_become_goals(start: Start, tmp_path: Path) -> None:
    """With the goal backlog on (the default), a scan's findings become low-priority scanner goals, a failing main an
    urgent fix goal, and the hub goes on to execute them."""
    repo = make_repo(tmp_path / "demo", {"calc.py": "x = 1  # TODO: floats\n"})
    failing = ("python3", "-c", "raise SystemExit(3)")
    handle = await start(autonomy_scan_paths=(repo,), autonomy_scan_test_command=failing)
    auto = auto_of(handle)
    await auto.tick()
    await auto.fsm.wait_until(lambda: ("healing", "resting") in transitions(handle), WAIT_S)
    goals = handle.hub.goals.list_goals()
    by_source = {g.source: g for g in goals}
    assert {"scanner", "healing"} <= set(by_source), [(g.source, g.description) for g in goals]
    assert by_source["healing"].priority == 0 and "Fix main of demo" in by_source["healing"].description
    assert min(g.priority for g in goals if g.source == "scanner") == 3
    assert ("fix_goal", "demo", "submitted") in [(e["action"], e["target"], e["result"]) for e in auto.healing_log]
    await auto.tick()
    await auto.fsm.wait_for(State.EXECUTING, WAIT_S)  # goals pending: the hub works on them
