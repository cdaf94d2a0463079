"""Stranded work: queued tasks no connected agent can run, and the warning the hub raises while any are.

A queued task is stranded when its waiting reason (hub/waiting.py, kept current after each scheduler round and
whenever agents join or leave) names a lack in the fleet: no agent at all, the pinned agent absent, or no agent with
the capabilities, executor or model it needs, or able to reach its repository. A queued task that depends on a
stranded one is stranded too (``depends_on_stranded``): it cannot start before it. Waits that end by themselves
(retry backoff, quotas, file conflicts, dependencies still running) are not stranded.

The state machine does not count stranded tasks as work (hub/autonomy/states.py). While any are stranded and the hub
rests, the alert ``tasks_stranded`` (warning, hub/alerts.py) is raised once, logged and published on the bus; its
message follows the count; it is resolved when none are left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.autonomy.states import Signals, State, stranded_reason
from hub.goals.model import GoalStatus
from hub.tasks import LIVE, Task, TaskStatus

if TYPE_CHECKING:
    from hub.autonomy.runtime import Runtime
    from hub.goals.model import Goal

logger = logging.getLogger(__name__)

NO_AGENT_CODES = frozenset(
    {
        "no_agent_connected",
        "pinned_agent_not_connected",
        "no_agent_with_capabilities",
        "no_agent_with_executor",
        "no_agent_with_model",
        "no_agent_can_reach_repo",
    }
)
"""Waiting reasons (hub/waiting.py) that only an agent joining can end."""
DEPENDS_CODE = "depends_on_stranded"
ALERT_ID = "tasks_stranded"


@dataclass(frozen=True)
class Stranded:
    tasks: int = 0
    codes: tuple[str, ...] = ()
    goals: int = 0


def stranded_tasks(queued: Iterable[Task], tasks: Mapping[str, Task]) -> dict[str, str]:
    """Queued task id -> why it is stranded (its waiting code, or ``depends_on_stranded``), for the stranded ones."""
    queued = list(queued)
    out = {t.id: code for t in queued if (code := (t.waiting_reason or {}).get("code", "")) in NO_AGENT_CODES}
    if not out:
        return out
    memo: dict[str, bool] = dict.fromkeys(out, True)
    for start in queued:
        if start.id in memo or not start.depends_on:
            continue
        stack, visiting = [start], {start.id}
        while stack:  # depth first over queued dependencies, each settled once (a cycle cannot hang it)
            task = stack[-1]
            deps = [d for dep in task.depends_on if (d := tasks.get(dep)) is not None and d.status is TaskStatus.QUEUED]
            todo = [d for d in deps if d.id not in memo and d.id not in visiting]
            if todo:
                stack.extend(todo)
                visiting.update(d.id for d in todo)
                continue
            stack.pop()
            visiting.discard(task.id)
            memo[task.id] = any(memo.get(d.id, False) for d in deps)
    out.update((tid, DEPENDS_CODE) for tid, blocked in memo.items() if blocked and tid not in out)
    return out


def held_goals(active: Iterable[Goal], tasks: Mapping[str, Task], stranded: Mapping[str, str]) -> int:
    """Active goals executing whose live tasks are all stranded (a goal decomposing or verifying is work)."""
    if not stranded:
        return 0
    n = 0
    for goal in active:
        if goal.status is not GoalStatus.EXECUTING:
            continue
        live = [tid for tid in goal.task_ids if (t := tasks.get(tid)) is not None and t.status in LIVE]
        n += bool(live) and all(tid in stranded for tid in live)
    return n


def gather(queued: Iterable[Task], tasks: Mapping[str, Task], active: Iterable[Goal]) -> Stranded:
    found = stranded_tasks(queued, tasks)
    if not found:
        return Stranded()
    return Stranded(len(found), tuple(sorted(set(found.values()))), held_goals(active, tasks, found))


async def note(auto: Runtime, s: Signals) -> None:
    """Raise ``tasks_stranded`` once when the hub rests with stranded tasks; resolve it when none are left."""
    hub = auto.hub
    reason = stranded_reason(s)
    if reason is None:
        if hub.alerts.resolve(ALERT_ID):
            logger.info("alert resolved source=%s", ALERT_ID)
            hub.bus.publish({"kind": "alert", "event": "resolved", "source": ALERT_ID, "ts": hub.clock.now_ms()})
        return
    if auto.fsm.current is not State.RESTING and ALERT_ID not in hub.alerts.raised:
        return  # executing other work: the tick that rests raises it
    if hub.alerts.raise_condition(ALERT_ID, "warning", reason):
        logger.warning("alert source=%s %s", ALERT_ID, reason)
        body = {"severity": "warning", "source": ALERT_ID, "detail": reason, "ts": hub.clock.now_ms()}
        hub.bus.publish({"kind": "alert", "event": "raised", **body})
