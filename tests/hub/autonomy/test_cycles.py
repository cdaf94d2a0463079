"""The original's cycles against a real hub (manual clock, simulated agents, real git repositories)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from hub.autonomy import improving
from hub.autonomy.states import State
from hub.clock import ManualClock
from shared.agent_sim import AgentSim
from tests.conftest import HubHandle, wait_tasks
from tests.hub.autonomy.conftest import WAIT_S, auto_of, commit, git, make_repo, transitions

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
    held = await agent(handle, "ignore")
    await handle.submit(description="it never reports")
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
    await held.close()


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


async def test_a_registered_bare_repository_is_scanned_at_its_head(start: Start, tmp_path: Path) -> None:
    """A repository registered by the path of a bare repository (a shared remote, as the demo's) is scanned in a clone
    of its HEAD: its files give findings and its test command runs on them (passing: main is not broken); the bare
    repository itself is left as it was."""
    work = make_repo(
        tmp_path / "work",
        {
            "calc.py": "def add(a, b):\n    return a + b  # TODO: floats\n",
            "test_calc.py": "from calc import add\n\nassert add(2, 3) == 5\n",
        },
    )
    bare = tmp_path / "calc.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    before = sorted(p.name for p in bare.iterdir())
    handle = await start(autonomy_submit_goals=False)
    spec = {"name": "calc", "url": str(bare), "test_command": "python3 test_calc.py"}
    assert (await handle.http.post("/api/repos", json=spec)).status_code == 201
    auto = auto_of(handle)
    await auto.tick()
    await auto.fsm.wait_until(lambda: "calc" in auto.scanned and auto.fsm.current is State.RESTING, WAIT_S)
    assert auto.scanned["calc"]["skipped"] == [] and auto.broken_main == {}
    findings = {r.key for r in await handle.hub.store.load_records("finding")}
    assert findings == {"calc:calc.py:todo"}
    assert sorted(p.name for p in bare.iterdir()) == before


async def test_a_broken_main_whose_fix_awaits_review_gets_no_second_fix(start: Start, tmp_path: Path) -> None:
    """Main's tests fail, but a verified change to the repository waits in a pull request: healing records that it
    left the fix to the reviewer and submits no fix goal of its own."""
    repo = make_repo(tmp_path / "demo", {"calc.py": "x = 1\n"})
    failing = ("python3", "-c", "raise SystemExit(3)")
    handle = await start(autonomy_scan_paths=(repo,), autonomy_scan_test_command=failing)
    pr_url = "http://forge.invalid/acme/demo/pull/7"
    change = {
        "repo": "demo",
        "branch": "agentcom/fix",
        "base_commit": "abc123",
        "commit": "def456",
        "published": "pull_request",
        "pr_url": pr_url,
    }
    sim = AgentSim(handle.ws_url, "fixer", await handle.mint_token("fixer"), behaviour="ignore")
    await sim.connect()
    try:
        tid = await handle.submit(description="fix calc", assign_to="fixer", repo="demo")
        rec = await sim.wait_for(lambda m: m.get("type") == "task_assign")
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": rec["generation"]})
        passed = {"name": "tests", "status": "pass", "output": "ok"}
        await sim.send(
            {
                "type": "task_complete",
                "task_id": tid,
                "generation": rec["generation"],
                "result": {"status": "success", "outcome": "verified", "output": "fixed", "change": change},
                "verification_report": {"outcome": "verified", "checks": [passed]},
            }
        )
        await wait_tasks(handle, [tid], {"completed"})
    finally:
        await sim.close()
    auto = auto_of(handle)
    await auto.fsm.wait_for(State.RESTING, WAIT_S)
    await auto.tick()
    await auto.fsm.wait_until(lambda: ("healing", "resting") in transitions(handle), WAIT_S)
    actions = [(e["action"], e["target"], e["result"]) for e in auto.healing_log]
    assert actions == [("fix_goal", "demo", f"skipped: a verified fix awaits review ({pr_url})")], actions
    assert [g for g in handle.hub.goals.list_goals() if g.source == "healing"] == []


async def test_a_broken_main_fixed_meanwhile_is_scanned_again_not_healed(
    start: Start, tmp_path: Path, clock: ManualClock
) -> None:
    """Main was found broken, but before healing acts a commit lands (a person's fix): the old finding is not acted
    on; main is scanned again at its new HEAD, found passing, and no fix goal is submitted."""
    repo = make_repo(tmp_path / "demo", {"ok.txt": "no\n"})
    check = ("python3", "-c", "import pathlib, sys; sys.exit(pathlib.Path('ok.txt').read_text() != 'yes\\n')")
    handle = await start(
        autonomy_scan_paths=(repo,), autonomy_scan_test_command=check, autonomy_healing_cooldown_s=0,
        autonomy_improve_cooldown_s=0,
    )  # fmt: skip
    auto = auto_of(handle)
    await improving.run_cycle(auto)  # the scan alone (the machine rests: it ticks only when told)
    assert "demo" in auto.broken_main
    commit(repo, {"ok.txt": "yes\n"}, "fix")
    await auto.tick()
    await auto.fsm.wait_until(lambda: "demo" not in auto.broken_main and auto.fsm.current is State.RESTING, WAIT_S)
    await auto.tick()
    await auto.fsm.wait_until(lambda: auto.scanned["demo"]["head"] == git(repo, "rev-parse", "HEAD").strip(), WAIT_S)
    await auto.fsm.wait_for(State.RESTING, WAIT_S)
    assert [(e["action"], e["result"]) for e in auto.healing_log] == [
        ("rescan", "main moved since it was found broken")
    ]
    assert "demo" not in auto.broken_main and handle.hub.goals.list_goals() == []


async def test_a_broken_main_with_an_open_goal_on_it_waits_for_that_goal(start: Start, tmp_path: Path) -> None:
    """A person's goal on the repository is open when its main is found broken (a scan that started just before the
    goal came): the hub goes on with that goal instead of healing, and submits no fix goal of its own."""
    work = make_repo(tmp_path / "work", {"calc.py": "x = 1\n"})
    bare = tmp_path / "calc.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    handle = await start()
    spec = {"name": "calc", "url": str(bare), "test_command": "python3 -c 'raise SystemExit(1)'"}
    assert (await handle.http.post("/api/repos", json=spec)).status_code == 201
    auto = auto_of(handle)
    r = await handle.http.post("/api/goals", json={"description": "Fix calc", "repo": "calc"})
    assert r.status_code == 201, r.text
    await auto.tick()
    await auto.fsm.wait_for(State.EXECUTING, WAIT_S)
    await improving.run_cycle(auto)  # the scan, as if it had started just before the goal came
    assert "calc" in auto.broken_main
    await auto.tick()
    assert auto.fsm.current is State.EXECUTING
    assert ("resting", "healing") not in transitions(handle) and list(auto.healing_log) == []
    assert "healing" not in [g.source for g in handle.hub.goals.list_goals()]
