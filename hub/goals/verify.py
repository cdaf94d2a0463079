"""Goal verification, once every task of the goal's latest round has ended.

First the task outcomes: a task dead-lettered or cancelled (or completed with a failed outcome) is a gap, and the
follow-up round runs it again (the DAG among the failed tasks kept), without asking a model. When every task passed,
the model judges the goal's combined diff (the tasks' ``result.change.diff``, bounded) against the goal and its
checks: ``{"complete": bool, "reason": str, "gaps": [tasks]}``; its gaps are the follow-up tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from hub.goals.decompose import MAX_TASKS
from hub.goals.model import Goal, PlannedTask
from hub.goals.model_client import ModelClient
from hub.tasks import Task, TaskStatus

SYSTEM = """You verify whether a software goal has been achieved by the changes made for it.
Answer with one JSON object and nothing else:
{"complete": true or false, "reason": "one sentence",
 "gaps": [{"description": "a task that closes one gap", "files": ["paths"], "verification": ["checks"]}]}
Give gaps only when complete is false (at most 8)."""


@dataclass(slots=True)
class Verdict:
    complete: bool
    reason: str
    followups: list[PlannedTask] = field(default_factory=list)


def passed(task: Task | None) -> bool:
    return task is not None and task.status is TaskStatus.COMPLETED and task.outcome != "failed"


def retry_failed(plan: list[PlannedTask], tasks: list[Task | None]) -> Verdict | None:
    """Follow-ups re-running the failed tasks of a round (None when all passed)."""
    failed = [i for i, t in enumerate(tasks) if not passed(t)]
    if not failed:
        return None
    position = {old: new for new, old in enumerate(failed)}
    followups = []
    for i in failed:
        task, planned = tasks[i], plan[i]
        why = (task.last_error or task.dead_letter_reason or str(task.status)) if task is not None else "forgotten"
        followups.append(
            PlannedTask(
                description=f"{planned.description}\n\n(Follow-up: the previous attempt ended: {why[:500]})",
                depends_on=[position[d] for d in planned.depends_on if d in position],
                files=planned.files,
                verification=planned.verification,
            )
        )
    names = ", ".join(t.id if t is not None else "?" for i, t in enumerate(tasks) if i in position)
    return Verdict(False, f"{len(failed)} of {len(tasks)} tasks did not pass ({names[:500]})", followups)


def combined_diff(tasks: list[Task | None], max_chars: int) -> str:
    parts = []
    for task in tasks:
        change = (task.result or {}).get("change") if task is not None else None
        diff = change.get("diff") if isinstance(change, dict) else None
        if isinstance(diff, str) and diff:
            parts.append(diff)
    text = "\n".join(parts)
    return text if len(text) <= max_chars else text[:max_chars] + f"\n[... {len(text) - max_chars} more characters]"


def prompt(goal: Goal, tasks: list[Task | None], diff: str) -> str:
    lines = [f"Goal: {goal.description}"]
    if goal.checks:
        lines += ["The goal is done when:", *(f"- {c}" for c in goal.checks)]
    lines.append("Tasks done for it:")
    for task in tasks:
        if task is not None:
            output = (task.result or {}).get("output")
            summary = f" -> {str(output)[:300]}" if output else ""
            lines.append(f"- [{task.outcome or task.status}] {task.description[:500]}{summary}")
    lines.append("Combined diff:" if diff else "No diff was reported.")
    if diff:
        lines.append(diff)
    return "\n".join(lines)


def parse_verdict(text: str) -> Verdict:
    """The model's verdict; an unreadable one is a verdict of not complete with no follow-ups."""
    try:
        data = json.loads(text)
    except ValueError:
        return Verdict(False, "the verdict is not JSON")
    if not isinstance(data, dict) or not isinstance(data.get("complete"), bool):
        return Verdict(False, 'the verdict has no boolean "complete"')
    reason = str(data.get("reason") or "")[:1000]
    raw = data.get("gaps")
    gaps: list[Any] = raw if isinstance(raw, list) else []
    followups = []
    for gap in gaps[:MAX_TASKS]:
        try:
            followups.append(PlannedTask.model_validate({**gap, "depends_on": []} if isinstance(gap, dict) else gap))
        except ValidationError:
            continue
    return Verdict(data["complete"], reason, [] if data["complete"] else followups)


async def model_verdict(client: ModelClient, goal: Goal, tasks: list[Task | None], diff_max_chars: int) -> Verdict:
    """The model's judgement of the goal's work; raises ``ModelUnavailable``."""
    text = prompt(goal, tasks, combined_diff(tasks, diff_max_chars))
    reply = await client.complete("verify", SYSTEM, [{"role": "user", "content": text}], goal_id=goal.id)
    return parse_verdict(reply.text)
