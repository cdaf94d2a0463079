"""Decomposition checks: the plan's DAG and files are validated, an invalid plan is re-prompted once with its errors,
and a second invalid plan fails the goal with the reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hub.goals.decompose import parse_plan
from tests.conftest import HubHandle
from tests.hub.goals.helpers import MODEL, GoalOllama, GoalReplies, git_repo, plan, submit_goal, task, wait_status

TREE = {"README.md", "src/app.py", "tests/test_app.py"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "not JSON"),
        ('{"steps": []}', 'no "tasks" list'),
        (plan(), "0 tasks"),
        (plan(*[task(str(i)) for i in range(9)]), "9 tasks"),
        (plan(task("a", [1]), task("b", [0])), "dependency cycle: 0 -> 1 -> 0"),
        (plan(task("a"), task("b", [2])), "out of range"),
        (plan(task("a", [1]), task("b")), "is a later task"),
        (plan(task("a", [0])), "depends on itself"),
        (plan(task("a", files=["nope/x.py"])), "its directory does not exist"),
        (plan(task("a", files=["../etc/passwd"])), "not a plain relative path"),
        (plan(task("a", files=["/etc/passwd"])), "not a plain relative path"),
        (plan({"description": ""}), "task 0: invalid (description)"),
        (plan({"description": "x", "depends_on": "0"}), "task 0: invalid (depends_on)"),
    ],
)
def test_invalid_plans_are_named(text: str, error: str) -> None:
    """Each kind of invalid plan is refused with an error naming what is wrong."""
    _, errors = parse_plan(text, TREE)
    assert any(error in e for e in errors), errors


def test_valid_plan_with_new_files_under_existing_directories() -> None:
    """Existing files, new files under existing directories and at the root, and earlier dependencies are valid."""
    text = plan(task("a", files=["src/app.py", "src/new.py", "NEW.md"]), task("b", [0], ["tests/test_new.py"]))
    tasks, errors = parse_plan(text, TREE)
    assert errors == [] and [t.depends_on for t in tasks] == [[], [0]]
    assert parse_plan(plan(task("a", files=["any/where.py"])), None)[1] == []  # no repository: nothing to check


async def test_invalid_plan_is_reprompted_once_then_fails(
    make_hub: Callable[..., Awaitable[HubHandle]], tmp_path: Path
) -> None:
    """A second invalid plan fails the goal with the errors; the re-prompt carried the first plan's errors."""
    repo = git_repo(tmp_path / "origin")
    cycle = plan(task("a", [1]), task("b", [0]))
    unknown = plan(task("a", files=["nowhere/x.py"]))
    async with GoalOllama(GoalReplies([cycle, unknown])) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL)
        goal = await submit_goal(hub, repo=str(repo))
        done = await wait_status(hub, goal["id"], "failed", "executing")
        assert done.status == "failed" and done.task_ids == []
        assert "invalid decomposition after one re-prompt" in done.reason and "nowhere/x.py" in done.reason
        first, second = model.bodies("/api/chat")
        assert second["messages"][2]["content"] == cycle
        assert "dependency cycle: 0 -> 1 -> 0" in second["messages"][3]["content"]
        assert len(model.bodies("/api/chat")) == 2


async def test_invalid_then_valid_plan_is_executed(
    make_hub: Callable[..., Awaitable[HubHandle]], tmp_path: Path
) -> None:
    """A plan corrected after the re-prompt is queued."""
    async with GoalOllama(GoalReplies([plan(task("a", [0])), plan(task("a"), task("b", [0]))])) as model:
        hub = await make_hub(hub_model_url=model.url, hub_model=MODEL)
        goal = await submit_goal(hub)
        done = await wait_status(hub, goal["id"], "failed", "executing")
        assert done.status == "executing" and len(done.task_ids) == 2


async def test_unreachable_repository_waits_then_fails(
    make_hub: Callable[..., Awaitable[HubHandle]], tmp_path: Path
) -> None:
    """A repository that cannot be fetched makes the goal wait, then fail naming git's error; the model is not asked."""
    async with GoalOllama(GoalReplies([plan(task("a"))])) as model:
        hub = await make_hub(
            hub_model_url=model.url, hub_model=MODEL, goal_model_attempts=2, goal_model_backoff_s=(0.01,)
        )
        goal = await submit_goal(hub, repo=str(tmp_path / "missing"))
        done = await wait_status(hub, goal["id"], "failed", "executing")
        assert done.status == "failed" and "repository unavailable: git fetch failed" in done.reason
        assert model.bodies("/api/chat") == []
