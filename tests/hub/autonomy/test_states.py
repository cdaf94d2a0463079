"""The transition table and its guards: every row of :func:`hub.autonomy.states.decide` and the watchdogs."""

from __future__ import annotations

import pytest

from hub.autonomy.states import ALLOWED, Signals, State, decide
from hub.autonomy.watchdogs import overdue

R, E, IM, C, H = State.RESTING, State.EXECUTING, State.IMPROVING, State.CONTEMPLATING, State.HEALING
S = Signals

ROWS: list[tuple[str, State, Signals, State | None]] = [
    # paused freezes every state
    ("paused resting with work", R, S(paused=True, pending_goals=2), None),
    ("paused healing with cycle done", H, S(paused=True, cycle_done=True), None),
    ("paused executing with stuck tasks", E, S(paused=True, stuck_tasks=9), None),
    # healing only ends with its cycle
    ("healing stays while its cycle runs", H, S(stuck_tasks=5), None),
    ("healing rests once its cycle is done", H, S(cycle_done=True, pending_goals=3), R),
    # health problems heal from any other state unless a cooldown holds
    ("3 stuck tasks heal", R, S(stuck_tasks=3), H),
    ("2 stuck tasks do not", R, S(stuck_tasks=2), None),
    ("threshold is a setting", E, S(stuck_tasks=2, stuck_threshold=2, running_tasks=2), H),
    ("all endpoints unhealthy heal", E, S(endpoints_all_unhealthy=True, running_tasks=1), H),
    ("broken main heals", IM, S(broken_main=("demo",)), H),
    ("broken main heals from contemplating", C, S(broken_main=("demo",)), H),
    ("cooldown holds healing off", R, S(stuck_tasks=4, healing_cooldown=True), None),
    ("cooldown: work still runs", R, S(stuck_tasks=4, healing_cooldown=True, queued_tasks=1), E),
    # resting
    ("pending goals execute", R, S(pending_goals=1), E),
    ("queued tasks execute", R, S(queued_tasks=1), E),
    ("running tasks execute", R, S(running_tasks=1), E),
    ("no executing budget: stay resting", R, S(pending_goals=1, executing_budget=False), None),
    ("something to scan: improve", R, S(scan_due=True), IM),
    ("nothing to scan: rest", R, S(), None),
    ("active goals hold improving off", R, S(scan_due=True, active_goals=1), None),
    ("no improving budget: rest", R, S(scan_due=True, improving_budget=False), None),
    # executing
    ("executing with work stays", E, S(queued_tasks=2), None),
    ("executing with active goals stays", E, S(active_goals=1), None),
    ("executing rests when work is done", E, S(), R),
    ("executing rests when its budget runs out", E, S(queued_tasks=3, executing_budget=False), R),
    # improving
    ("goals beat improving", IM, S(pending_goals=1), E),
    ("goals beat an exhausted improving budget", IM, S(pending_goals=1, improving_budget=False), E),
    ("improving budget exhausted rests", IM, S(improving_budget=False), R),
    ("improving cycle running stays", IM, S(), None),
    ("improving done contemplates when due", IM, S(cycle_done=True, contemplate_due=True), C),
    ("improving done rests when contemplating is not due", IM, S(cycle_done=True), R),
    (
        "improving done rests without contemplating budget",
        IM,
        S(cycle_done=True, contemplate_due=True, contemplating_budget=False),
        R,
    ),
    # contemplating
    ("goals beat contemplating", C, S(pending_goals=2), E),
    ("contemplating budget exhausted rests", C, S(contemplating_budget=False), R),
    ("contemplating cycle running stays", C, S(), None),
    ("contemplating done rests", C, S(cycle_done=True, contemplate_due=True), R),
]


@pytest.mark.parametrize(("state", "signals", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_transition_table(state: State, signals: Signals, expected: State | None) -> None:
    """Each row: from ``state`` with ``signals`` the tick moves to ``expected`` (None: stays)."""
    decision = decide(state, signals)
    assert (decision.to if decision else None) == expected
    if decision is not None:
        assert decision.to in ALLOWED[state] and decision.reason


def test_every_allowed_transition_has_a_row() -> None:
    """The table test reaches every transition the machine allows."""
    reached = {(r[1], r[3]) for r in ROWS if r[3] is not None}
    assert reached == {(src, dst) for src, dsts in ALLOWED.items() for dst in dsts}


@pytest.mark.parametrize(
    ("state", "held_s", "paused", "expected"),
    [
        (H, 299, False, None),
        (H, 300, False, R),
        (E, 7199, False, None),
        (E, 7200, False, R),
        (IM, 7200, False, R),
        (C, 7200, False, R),
        (R, 10**6, False, None),
        (E, 10**6, True, None),
    ],
)
def test_watchdogs(state: State, held_s: int, paused: bool, expected: State | None) -> None:
    """Healing held 5 min or any other non-resting state held 2 h is forced to resting; never while paused."""
    decision = overdue(state, 0, held_s * 1000, paused, global_s=7200, healing_s=300)
    assert (decision.to if decision else None) == expected
