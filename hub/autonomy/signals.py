"""What the state machine looks at, gathered from the hub each tick.

Goals, costs, endpoints and repositories are other subsystems; each is read through one adapter here (goals through
the backlog, endpoints through their health, repositories through their local checkouts plus the configured scan
paths; no budget configured: unlimited).
"""

from __future__ import annotations

import inspect
import logging
import shlex
from typing import TYPE_CHECKING, Any

from hub.autonomy import stranded
from hub.autonomy.runtime import ScanTarget
from hub.autonomy.states import Signals, State
from hub.endpoints.health import check_now
from hub.tasks import Task, TaskStatus

if TYPE_CHECKING:
    from hub.autonomy.runtime import Runtime
    from hub.hub import Hub

logger = logging.getLogger(__name__)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# --- adapters ---------------------------------------------------------------------------------------------------


def goal_counts(hub: Hub) -> tuple[int, int]:
    """(pending, active) goals of the backlog."""
    return len(hub.goals.pending()), len(hub.goals.active())


def repos_being_fixed(hub: Hub) -> set[str]:
    """Repositories with an open goal that is not a scanner's hygiene goal: work whose result decides whether their
    main is still broken (a person's goal, or an earlier fix), so a broken main there is not healed meanwhile."""
    return {g.repo for g in (*hub.goals.pending(), *hub.goals.active()) if g.repo and g.source != "scanner"}


async def advance_goals(hub: Hub) -> bool:
    """Let the goal backlog take its next step (decompose, submit, verify); True when it did something."""
    try:
        return await hub.goals.advance_one()
    except Exception:
        logger.warning("goal backlog step failed", exc_info=True)
        return False


PRIORITIES = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


async def submit_goal(hub: Hub, description: str, repo: str | None, priority: str, source: str) -> str:
    """Submit a goal to the backlog; the outcome as a word for the audit logs (``goals_off`` when the hub keeps its
    findings as records only: ``autonomy_submit_goals``)."""
    if not hub.settings.autonomy_submit_goals:
        return "goals_off"
    try:
        await hub.goals.submit(
            description, repo=repo if repo in hub.repos else None, priority=PRIORITIES.get(priority, 3),
            source=source,  # type: ignore[arg-type]
        )  # fmt: skip
    except Exception as exc:
        logger.warning("goal submit failed: %s", exc)
        return f"failed: {type(exc).__name__}"
    return "submitted"


def budget_left(hub: Hub, state: State) -> float | None:
    """Budget left for ``state`` (None: unlimited)."""
    costs = getattr(hub, "costs", None)  # the ledger is optional in embedded uses (no costs configured)
    fn = getattr(costs, "budget_left", None)
    if fn is None:
        return None
    try:
        left = fn(str(state))
    except Exception:
        logger.warning("cost ledger unreadable; budget counts as unlimited", exc_info=True)
        return None
    return None if left is None else float(left)


def _has_budget(hub: Hub, state: State) -> bool:
    left = budget_left(hub, state)
    return left is None or left > 0


def endpoint_health(hub: Hub) -> dict[str, bool]:
    """Health per model endpoint (by id), for those checked at least once."""
    return {ep.id: bool(ep.healthy) for ep in hub.endpoints.endpoints.values() if ep.healthy is not None}


async def reprobe_endpoint(hub: Hub, name: str) -> bool:
    """Check one endpoint again now; True when it answers healthy."""
    try:
        return await check_now(hub.endpoints, name)
    except Exception:
        logger.warning("re-probe of endpoint %s failed", name, exc_info=True)
        return False


def scan_targets(hub: Hub) -> list[ScanTarget]:
    """The registered repositories with a local checkout, and the configured scan paths."""
    settings = hub.settings
    out = [ScanTarget(p.name, p, settings.autonomy_scan_test_command) for p in settings.autonomy_scan_paths]
    for name, path, command in hub.repos.local_checkouts():
        out.append(ScanTarget(name, path, tuple(shlex.split(command)) if command else ()))
    return out


# --- gathering ---------------------------------------------------------------------------------------------------


def stuck_tasks(in_flight: list[Task], now: int, stuck_after_s: float) -> list[Task]:
    return [t for t in in_flight if now - t.updated_at >= stuck_after_s * 1000]


async def gather(auto: Runtime) -> Signals:
    hub, fsm = auto.hub, auto.fsm
    settings, now = hub.settings, hub.clock.now_ms()
    pending, active = goal_counts(hub)
    in_flight = hub.queue.in_flight()
    health = endpoint_health(hub)
    queued = hub.queue.count(TaskStatus.QUEUED)
    strand = stranded.Stranded()
    if queued:
        strand = stranded.gather(hub.queue.oldest(TaskStatus.QUEUED), hub.queue.tasks, hub.goals.active())
    runnable = (active - strand.goals) or (queued - strand.tasks)  # stranded work does not keep the hub from idling
    idle = fsm.current is State.RESTING and not (pending or runnable or in_flight)
    budgets = {s: _has_budget(hub, s) for s in (State.EXECUTING, State.IMPROVING, State.CONTEMPLATING)}
    return Signals(
        pending_goals=pending,
        active_goals=active,
        queued_tasks=queued,
        running_tasks=len(in_flight),
        executing_budget=budgets[State.EXECUTING],
        improving_budget=budgets[State.IMPROVING],
        contemplating_budget=budgets[State.CONTEMPLATING],
        stuck_tasks=len(stuck_tasks(in_flight, now, settings.autonomy_stuck_after_s)),
        stuck_threshold=settings.autonomy_stuck_threshold,
        endpoints_all_unhealthy=bool(health) and not any(health.values()),
        broken_main=tuple(sorted(set(auto.broken_main) - auto.broken_handled - repos_being_fixed(hub))),
        healing_cooldown=now < fsm.healing_cooldown_until,
        scan_due=idle and bool(await auto.due_targets()),  # git is asked only when it could matter
        contemplate_due=now - fsm.contemplated_at >= settings.autonomy_contemplate_cooldown_s * 1000,
        paused=fsm.paused,
        cycle_done=auto.cycle_done,
        stranded_tasks=strand.tasks,
        stranded_codes=strand.codes,
        stranded_goals=strand.goals,
    )


def goal_touched_files(hub: Hub, repo: str, since_ms: int, scan_last: int = 1000) -> set[str]:
    """Files that tasks of goals changed on ``repo`` since ``since_ms`` (from their reported changes)."""
    out: set[str] = set()
    for task in hub.queue.latest(TaskStatus.COMPLETED, scan_last):
        if task.goal_id is None or (task.completed_at or 0) < since_ms or not isinstance(task.result, dict):
            continue
        change = task.result.get("change")
        if isinstance(change, dict) and change.get("repo") in (repo, task.repo):
            out.update(str(f.get("path")) for f in change.get("files") or () if isinstance(f, dict))
    return out
