"""Decomposition: a goal and its repository's file tree in, 1-8 tasks forming a DAG out.

The model answers JSON ``{"tasks": [{"description", "depends_on": [indices], "files": [paths], "verification":
[checks]}]}``. The plan is checked: 1-8 tasks, each a description; ``depends_on`` indices in range, earlier than the
task (forward-only) and acyclic; files either in the tree or new files under a directory that exists. An invalid plan
is sent back once with the list of its errors; a second invalid plan fails the goal with them.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Collection

from pydantic import ValidationError

from hub.goals.model import Goal, PlannedTask
from hub.goals.model_client import Message, ModelClient

MAX_TASKS = 8
MAX_ERRORS = 20

SYSTEM = """You decompose a software goal into 1 to 8 tasks for coding agents working on one git repository.
Answer with one JSON object and nothing else:
{"tasks": [{"description": "what to do, one paragraph", "depends_on": [indices of earlier tasks],
            "files": ["paths to create or change"], "verification": ["how to check this task is done"]}]}
Rules: depends_on names only EARLIER tasks by their 0-based index; files are existing paths of the file tree below,
or new files in directories that exist; every task has at least one verification check."""


class DecompositionInvalid(Exception):
    """The model's plan was invalid twice; the message lists the errors of the last one."""


def prompt(goal: Goal, tree: list[str] | None, max_files: int) -> str:
    lines = [f"Goal: {goal.description}"]
    if goal.checks:
        lines += ["The goal is done when:", *(f"- {c}" for c in goal.checks)]
    if tree is None:
        lines.append("No repository: files are paths relative to the agent's working directory.")
    else:
        shown = tree[:max_files]
        more = f", the first {max_files} shown" if len(tree) > max_files else ""
        lines.append(f"Repository {goal.repo}, file tree ({len(tree)} files{more}):")
        lines += shown
    return "\n".join(lines)


def _directories(tree: Collection[str]) -> set[str]:
    dirs = {""}
    for path in tree:
        parent = posixpath.dirname(path)
        while parent not in dirs:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    return dirs


def _file_errors(index: int, files: list[str], tree: Collection[str] | None, dirs: set[str]) -> list[str]:
    errors = []
    for path in files:
        norm = posixpath.normpath(path) if path else ""
        if not path or path.startswith("/") or norm.startswith("..") or norm != path.rstrip("/"):
            errors.append(f"task {index}: file {path[:200]!r} is not a plain relative path")
        elif tree is not None and path not in tree and posixpath.dirname(path) not in dirs:
            errors.append(
                f"task {index}: file {path[:200]!r} is not in the repository and its directory does not exist"
            )
    return errors


def _cycle(n: int, deps: list[list[int]]) -> list[int] | None:
    """A cycle among in-range dependencies, as task indices, or None."""
    state = [0] * n  # 0 new, 1 on the path, 2 done
    path: list[int] = []

    def visit(i: int) -> list[int] | None:
        state[i] = 1
        path.append(i)
        for d in deps[i]:
            if 0 <= d < n and d != i:
                if state[d] == 1:
                    return path[path.index(d) :] + [d]
                if state[d] == 0 and (found := visit(d)) is not None:
                    return found
        path.pop()
        state[i] = 2
        return None

    for i in range(n):
        if state[i] == 0 and (found := visit(i)) is not None:
            return found
    return None


def parse_plan(text: str, tree: Collection[str] | None) -> tuple[list[PlannedTask], list[str]]:
    """The plan in ``text`` and its errors (empty when valid)."""
    try:
        data = json.loads(text)
    except ValueError:
        return [], ["the answer is not JSON"]
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return [], ['the answer has no "tasks" list']
    if not 1 <= len(items) <= MAX_TASKS:
        return [], [f"{len(items)} tasks; give 1 to {MAX_TASKS}"]
    plan: list[PlannedTask] = []
    errors: list[str] = []
    for i, item in enumerate(items):
        try:
            plan.append(PlannedTask.model_validate(item, strict=False))
        except ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) or "(task)" for e in exc.errors()[:3])
            errors.append(f"task {i}: invalid ({where})")
    if errors:
        return [], errors[:MAX_ERRORS]
    dirs = _directories(tree) if tree is not None else set()
    n = len(plan)
    for i, task in enumerate(plan):
        for d in task.depends_on:
            if not 0 <= d < n:
                errors.append(f"task {i}: depends_on {d} is out of range (0..{n - 1})")
            elif d == i:
                errors.append(f"task {i}: depends on itself")
            elif d > i:
                errors.append(f"task {i}: depends_on {d} is a later task (dependencies must be earlier tasks)")
        errors += _file_errors(i, task.files, tree, dirs)
    cycle = _cycle(n, [t.depends_on for t in plan])
    if cycle is not None:
        errors.append("dependency cycle: " + " -> ".join(map(str, cycle)))
    return plan, errors[:MAX_ERRORS]


async def decompose(client: ModelClient, goal: Goal, tree: list[str] | None, max_files: int) -> list[PlannedTask]:
    """A valid plan for ``goal``; raises :class:`DecompositionInvalid` or ``ModelUnavailable``."""
    known = set(tree) if tree is not None else None
    messages: list[Message] = [{"role": "user", "content": prompt(goal, tree, max_files)}]
    reply = await client.complete("decompose", SYSTEM, messages, goal_id=goal.id)
    plan, errors = parse_plan(reply.text, known)
    if not errors:
        return plan
    messages += [
        {"role": "assistant", "content": reply.text[:20_000]},
        {
            "role": "user",
            "content": "That plan is invalid:\n" + "\n".join(f"- {e}" for e in errors) + "\nAnswer again.",
        },
    ]
    reply = await client.complete("decompose", SYSTEM, messages, goal_id=goal.id)
    plan, errors = parse_plan(reply.text, known)
    if errors:
        raise DecompositionInvalid("invalid decomposition after one re-prompt: " + "; ".join(errors))
    return plan
