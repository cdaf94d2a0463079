"""What the dashboard's Goals panel shows: the latest goals (active first) and their task DAGs as indented lists.

One shape for the snapshot's ``goals`` key and for the bus event (``kind: "goals"``) sent on every goal change; it
is shallow (goals and tasks in two flat lists) so the dashboard's clipping of deep events leaves it whole.
"""

from __future__ import annotations

from typing import Any, Protocol

from hub.goals.model import ACTIVE, Goal
from hub.tasks import Task, TaskStatus

MAX_GOALS = 10
MAX_TASKS = 50
CLIP = 300


class GoalSource(Protocol):
    def list_goals(self) -> list[Goal]: ...
    def task(self, task_id: str) -> Task | None: ...


def _levels(tasks: list[Task | None]) -> list[int]:
    """Indentation of each task: one deeper than its deepest dependency within the goal."""
    level: dict[str, int] = {}
    out = []
    for task in tasks:
        depth = 0 if task is None else 1 + max((level[d] for d in task.depends_on if d in level), default=-1)
        if task is not None:
            level[task.id] = depth
        out.append(depth)
    return out


def goals_view(source: GoalSource) -> dict[str, Any]:
    everything = source.list_goals()
    shown = sorted(everything, key=lambda g: (g.status not in ACTIVE, -g.created_at))[:MAX_GOALS]
    goals: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for goal in shown:
        tasks = [source.task(t) for t in goal.task_ids]
        done = sum(t is not None and t.status is TaskStatus.COMPLETED for t in tasks)
        goals.append(
            {
                "id": goal.id,
                "description": goal.description[:CLIP],
                "status": str(goal.status),
                "priority": goal.priority,
                "reason": goal.reason[:CLIP],
                "rounds": goal.rounds,
                "completed": done,
                "total": len(tasks),
                "updated_at": goal.updated_at,
            }
        )
        for task_id, task, level in zip(goal.task_ids, tasks, _levels(tasks), strict=True):
            if len(rows) < MAX_TASKS:
                rows.append(
                    {
                        "goal_id": goal.id,
                        "task_id": task_id,
                        "level": level,
                        "status": str(task.status) if task is not None else "forgotten",
                        "description": task.description[:120] if task is not None else "",
                    }
                )
    return {"kind": "goals", "goals": goals, "tasks": rows, "count": len(everything)}
