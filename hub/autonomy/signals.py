"""What the state machine looks at, gathered from the hub each tick.

Goals, costs, endpoints and repositories are other subsystems; each is read through one adapter here that degrades
when the subsystem is absent (no backlog: no goals; no ledger: unlimited budget; no endpoints: healthy; no registry:
only the configured scan paths), so the machine runs with whatever the hub has.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.autonomy.runtime import ScanTarget
from hub.autonomy.states import Signals, State
from hub.tasks import Task, TaskStatus

if TYPE_CHECKING:
    from hub.autonomy.runtime import Runtime
    from hub.hub import Hub

logger = logging.getLogger(__name__)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# --- adapters ---------------------------------------------------------------------------------------------------


def goal_counts(hub: Hub) -> tuple[int, int]:
    """(pending, active) goals; (0, 0) without a goal backlog."""
    goals = getattr(hub, "goals", None)
    if goals is None:
        return 0, 0
    try:
        return len(goals.pending()), len(goals.active())
    except Exception:
        logger.warning("goal backlog unreadable; counting no goals", exc_info=True)
        return 0, 0


async def advance_goals(hub: Hub) -> bool:
    """Let the goal backlog take its next step (decompose, submit, verify); True when it did something."""
    fn = getattr(getattr(hub, "goals", None), "advance_one", None)
    if fn is None:
        return False
    try:
        return bool(await _maybe_await(fn()))
    except Exception:
        logger.warning("goal backlog step failed", exc_info=True)
        return False


async def submit_goal(hub: Hub, description: str, repo: str | None, priority: str, source: str) -> str:
    """Submit a goal to the backlog; the outcome as a word for the audit logs (``no_goal_backlog`` when absent)."""
    goals = getattr(hub, "goals", None)
    if goals is None:
        return "no_goal_backlog"
    try:
        await _maybe_await(goals.submit(description, repo, priority, source))
    except Exception as exc:
        logger.warning("goal submit failed: %s", exc)
        return f"failed: {type(exc).__name__}"
    return "submitted"


def budget_left(hub: Hub, state: State) -> float | None:
    """Budget left for ``state`` (None: unlimited, also when there is no cost ledger or it cannot answer)."""
    costs = getattr(hub, "costs", None)
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
    """Health per model endpoint ({} when there is no endpoint registry)."""
    endpoints = getattr(hub, "endpoints", None)
    fn = getattr(endpoints, "health", None)
    if fn is None:
        return {}
    try:
        health = fn()
    except Exception:
        logger.warning("endpoint registry unreadable", exc_info=True)
        return {}
    if not isinstance(health, Mapping):
        return {}
    return {str(k): bool(getattr(v, "healthy", v)) for k, v in health.items()}


async def reprobe_endpoint(hub: Hub, name: str) -> bool:
    """Probe one endpoint again; True when it answers healthy (False without a registry that can probe)."""
    fn = getattr(getattr(hub, "endpoints", None), "probe", None)
    if fn is None:
        return False
    try:
        return bool(getattr(result := await _maybe_await(fn(name)), "healthy", result))
    except Exception:
        logger.warning("re-probe of endpoint %s failed", name, exc_info=True)
        return False


def scan_targets(hub: Hub) -> list[ScanTarget]:
    """The registered repositories with a local checkout, and the configured scan paths."""
    settings = hub.settings
    out = [ScanTarget(p.name, p, settings.autonomy_scan_test_command) for p in settings.autonomy_scan_paths]
    fn = getattr(getattr(hub, "repos", None), "scan_targets", None)
    if fn is not None:
        try:
            for name, path, command in fn():
                out.append(ScanTarget(str(name), Path(path), tuple(command or ())))
        except Exception:
            logger.warning("repository registry unreadable; scanning the configured paths only", exc_info=True)
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
    idle = fsm.current is State.RESTING and not (pending or active or queued or in_flight)
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
        broken_main=tuple(sorted(set(auto.broken_main) - auto.broken_handled)),
        healing_cooldown=now < fsm.healing_cooldown_until,
        scan_due=idle and bool(await auto.due_targets()),  # git is asked only when it could matter
        contemplate_due=now - fsm.contemplated_at >= settings.autonomy_contemplate_cooldown_s * 1000,
        paused=fsm.paused,
        cycle_done=auto.cycle_done,
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
