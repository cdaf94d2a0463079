"""A task's static fields (serialised once and cached by Task.to_json): a rebinding is never stored stale, and no hub
module outside hub/tasks.py writes one at all, by assignment or in place."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hub import tasks as T
from hub.tasks import STATIC_FIELDS, Task

HUB = Path(__file__).resolve().parents[2] / "hub"
MUTATORS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "remove",
        "pop",
        "popitem",
        "clear",
        "update",
        "setdefault",
        "sort",
        "reverse",
        "__setitem__",
        "__delitem__",
        "__iadd__",
    }
)


def stored_task() -> Task:
    task = Task(id="task-1", description="first", created_at=1, updated_at=1, metadata={"k": "v"})
    T.record(task, "queued", 1)
    json.loads(task.to_json())  # the static fragment is cached from here on
    return task


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("metadata", {"k": "changed"}),
        ("description", "second"),
        ("max_retries", 7),
        ("skip_verification", True),
        ("depends_on", ["task-0"]),
        ("idempotency", {"key": "k", "sha256": "d", "index": 0}),
    ],
)
def test_rebinding_a_static_field_after_to_json_is_in_the_next_body(name: str, value: object) -> None:
    """Assigning a static field after the body was serialised shows in the next to_json (the cache is dropped)."""
    task = stored_task()
    before = json.loads(task.to_json())
    setattr(task, name, value)
    after = json.loads(task.to_json())
    assert after[name] == value and before[name] != value
    assert Task.from_json(task.to_json()).as_dict() == task.as_dict()


def test_a_transition_after_a_rebinding_keeps_both() -> None:
    """A rebinding followed by a state change: the next body has the new value and the new status."""
    task = stored_task()
    task.metadata = {"k": "later"}
    T.assign(task, "agent-1", 2)
    body = json.loads(task.to_json())
    assert body["metadata"] == {"k": "later"} and body["status"] == "assigned" and body["assigned_to"] == "agent-1"


def test_an_unchanged_task_reuses_its_fragment() -> None:
    """While no static field is rebound, the serialised fragment is the same object (the cache holds)."""
    task = stored_task()
    fragment = task.static_json
    T.assign(task, "agent-1", 2)
    task.to_json()
    assert task.static_json is fragment


def writes_to_static_fields(path: Path) -> list[str]:
    """Lines of ``path`` that assign a static field of some object other than ``self`` (``x.metadata = ...``,
    ``x.depends_on += ...``), assign into one (``x.metadata["k"] = ...``) or call a mutating method on one."""

    def static_attr(node: ast.expr) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr in STATIC_FIELDS
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        )

    found: list[int] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for target in targets:
            if static_attr(target) or (isinstance(target, ast.Subscript) and static_attr(target.value)):
                found.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
            and static_attr(node.func.value)
        ):
            found.append(node.lineno)
    return [f"{path.name}:{n}" for n in sorted(found)]


def test_no_hub_module_but_tasks_writes_a_static_field() -> None:
    """Outside hub/tasks.py no hub module rebinds a task's static field or changes one in place (the cache cannot
    see an in-place change, so none may happen)."""
    found = [
        line for path in sorted(HUB.rglob("*.py")) if path != HUB / "tasks.py" for line in writes_to_static_fields(path)
    ]
    assert found == []


def test_the_static_field_check_sees_each_kind_of_write(tmp_path: Path) -> None:
    """The check flags a rebinding, an augmented assignment, an item assignment and a mutating call, not reads."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "task.metadata = {}\ntask.depends_on += ['x']\ntask.metadata['k'] = 1\n"
        "task.file_hints.append({})\nx = task.metadata\nself.metadata = {}\n"
    )
    assert writes_to_static_fields(sample) == ["sample.py:1", "sample.py:2", "sample.py:3", "sample.py:4"]
