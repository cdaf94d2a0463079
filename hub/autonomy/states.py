"""The hub's five states, which may follow which, and the decision of each tick, as pure functions over
:class:`Signals`.

The order of the checks is the policy: pause freezes everything; healing only ends when its cycle is done (or a
watchdog forces it out); any other state heals on a health problem unless a cooldown holds; then each state has its
own rules. Improving needs *something new to scan* (``scan_due``), not just budget, so an idle hub rests instead of
cycling through scans that cannot find anything new.

Stranded work (hub/autonomy/stranded.py): queued tasks no connected agent can run (their waiting reason says so, or
they depend on such a task) and active goals whose remaining tasks are all stranded. The rule: stranded work is
neither work nor a blocker of idleness. It does not hold executing (the hub would sit there until the watchdog
rested it, and go straight back: the original's loop); executing rests naming it ("3 queued tasks no agent can run:
no_agent_with_executor"), and resting stays. It does not keep improving off either: ``scan_due``'s idleness and the
resting -> improving guard ask only that no *runnable* work is left. Improving cannot loop on it: it needs a
repository that changed since its last scan, so goals it files that strand in turn cost one cycle per change. When
an agent that can run stranded tasks connects, they are runnable work again and the hub executes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    RESTING = "resting"
    EXECUTING = "executing"
    IMPROVING = "improving"
    CONTEMPLATING = "contemplating"
    HEALING = "healing"


ALLOWED: dict[State, frozenset[State]] = {
    State.RESTING: frozenset({State.EXECUTING, State.IMPROVING, State.HEALING}),
    State.EXECUTING: frozenset({State.RESTING, State.HEALING}),
    State.IMPROVING: frozenset({State.RESTING, State.EXECUTING, State.CONTEMPLATING, State.HEALING}),
    State.CONTEMPLATING: frozenset({State.RESTING, State.EXECUTING, State.HEALING}),
    State.HEALING: frozenset({State.RESTING}),
}
"""Transitions the machine accepts (the original's table); a watchdog may also force any state to resting."""

WORKING_STATES = frozenset({State.IMPROVING, State.CONTEMPLATING, State.HEALING})
"""States that run a cycle of work; the tick leaves them once the cycle reports done."""


@dataclass(frozen=True)
class Signals:
    """What the hub looks like at one tick (gathered by hub/autonomy/signals.py)."""

    pending_goals: int = 0
    active_goals: int = 0
    queued_tasks: int = 0
    running_tasks: int = 0
    executing_budget: bool = True
    improving_budget: bool = True
    contemplating_budget: bool = True
    stuck_tasks: int = 0
    stuck_threshold: int = 3
    endpoints_all_unhealthy: bool = False
    broken_main: tuple[str, ...] = ()
    """Registered repositories whose main fails its tests or has merge conflicts."""
    healing_cooldown: bool = False
    scan_due: bool = False
    """A scan target is new or moved and out of its cooldown."""
    contemplate_due: bool = False
    paused: bool = False
    cycle_done: bool = False
    """The current state's cycle (improving, contemplating, healing) has finished."""
    stranded_tasks: int = 0
    """Queued tasks (counted in ``queued_tasks``) no connected agent can run, or depending on one that none can."""
    stranded_codes: tuple[str, ...] = ()
    """Why they are stranded: their waiting reason codes, distinct and sorted."""
    stranded_goals: int = 0
    """Active goals (counted in ``active_goals``) whose remaining tasks are all stranded."""


@dataclass(frozen=True)
class Decision:
    to: State
    reason: str


def health_problem(s: Signals) -> str | None:
    """Why the hub should heal, or None."""
    if s.stuck_tasks >= s.stuck_threshold:
        return f"{s.stuck_tasks} stuck tasks"
    if s.endpoints_all_unhealthy:
        return "all model endpoints unhealthy"
    if s.broken_main:
        return f"broken main on {', '.join(sorted(s.broken_main))}"
    return None


def has_work(s: Signals) -> bool:
    """Runnable work: pending goals, running tasks, or queued tasks some connected agent can run."""
    return s.pending_goals > 0 or s.queued_tasks > s.stranded_tasks or s.running_tasks > 0


def runnable_goals(s: Signals) -> int:
    """Active goals that are not only waiting on stranded tasks."""
    return max(0, s.active_goals - s.stranded_goals)


def stranded_reason(s: Signals) -> str | None:
    """``"3 queued tasks no agent can run: no_agent_with_executor"``, or None when none are stranded."""
    if s.stranded_tasks <= 0:
        return None
    plural = "s" if s.stranded_tasks != 1 else ""
    return f"{s.stranded_tasks} queued task{plural} no agent can run: {', '.join(s.stranded_codes) or 'unknown'}"


def decide(state: State, s: Signals) -> Decision | None:
    """The transition this tick makes from ``state``, or None to stay."""
    if s.paused:
        return None
    if state is State.HEALING:
        return Decision(State.RESTING, "healing cycle complete") if s.cycle_done else None
    problem = health_problem(s)
    if problem is not None and not s.healing_cooldown:
        return Decision(State.HEALING, problem)
    if state is State.RESTING:
        if has_work(s):
            return Decision(State.EXECUTING, "work waiting") if s.executing_budget else None
        if runnable_goals(s) == 0 and s.improving_budget and s.scan_due:
            return Decision(State.IMPROVING, "a repository changed since its last scan")
        return None
    if state is State.EXECUTING:
        if not s.executing_budget:
            return Decision(State.RESTING, "executing budget exhausted")
        if not has_work(s) and runnable_goals(s) == 0:
            return Decision(State.RESTING, stranded_reason(s) or "no work left")
        return None
    if s.pending_goals > 0:  # improving or contemplating: goals beat everything else
        return Decision(State.EXECUTING, "goals pending")
    budget = s.improving_budget if state is State.IMPROVING else s.contemplating_budget
    if not budget:
        return Decision(State.RESTING, f"{state} budget exhausted")
    if not s.cycle_done:
        return None
    if state is State.IMPROVING and s.contemplate_due and s.contemplating_budget:
        return Decision(State.CONTEMPLATING, "improving cycle complete")
    return Decision(State.RESTING, f"{state} cycle complete")
