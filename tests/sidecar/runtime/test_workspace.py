"""Task workspaces: one directory per attempt, safe names, cleanup policies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.protocol import TaskAssign
from sidecar.runtime.workspace import Workspaces, workspace_name
from sidecar.settings import WorkspaceSettings


def assign(task_id: str, generation: int = 1) -> TaskAssign:
    return TaskAssign(task_id=task_id, description="d", generation=generation, assigned_at=1)


@pytest.mark.parametrize(
    ("task_id", "generation", "name"),
    [("task-1", 1, "task-1-g1"), ("../../etc", 2, "_.._etc-g2"), ("a/b c", 3, "a_b_c-g3"), ("..", 1, "task-g1")],
)
def test_workspace_name_is_safe(task_id: str, generation: int, name: str) -> None:
    """Task ids cannot escape workspace_root: separators and leading dots are neutralised."""
    assert workspace_name(task_id, generation) == name


def test_each_attempt_gets_its_own_directory(tmp_path: Path) -> None:
    """A retried attempt (new generation) starts in a fresh directory; the same attempt reuses its own."""
    spaces = Workspaces(tmp_path, WorkspaceSettings())
    first = spaces.create(assign("t", 1))
    (first / "f").write_text("x")
    assert spaces.create(assign("t", 1)) == first
    second = spaces.create(assign("t", 2))
    assert second != first and not (second / "f").exists()
    assert first.parent == tmp_path.resolve()


def _finish(spaces: Workspaces, task_id: str, succeeded: bool, age_s: int) -> Path:
    path = spaces.create(assign(task_id))
    spaces.finished(path, succeeded=succeeded)
    os.utime(path, (1_000_000 + age_s, 1_000_000 + age_s))
    return path


def test_keep_last_keeps_the_newest(tmp_path: Path) -> None:
    """keep_last keeps only the keep_last_n most recently finished directories."""
    spaces = Workspaces(tmp_path, WorkspaceSettings(cleanup="keep_last", keep_last_n=2))
    for n in range(4):
        _finish(spaces, f"t{n}", True, n)
    newest = spaces.create(assign("t9"))
    spaces.finished(newest, succeeded=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t3-g1", "t9-g1"]


def test_on_success_removes_successes_and_caps_failures(tmp_path: Path) -> None:
    """on_success deletes a succeeded directory at once and keeps at most keep_last_n failed ones."""
    spaces = Workspaces(tmp_path, WorkspaceSettings(cleanup="on_success", keep_last_n=1))
    _finish(spaces, "fail-old", False, 1)
    ok = spaces.create(assign("ok"))
    assert spaces.finished(ok, succeeded=True)[0] == ok
    failed = spaces.create(assign("fail-new"))
    spaces.finished(failed, succeeded=False)
    assert [p.name for p in tmp_path.iterdir()] == ["fail-new-g1"]


def test_never_keeps_everything_and_keep_protects(tmp_path: Path) -> None:
    """never removes nothing; a directory passed in ``keep`` survives any policy."""
    never = Workspaces(tmp_path / "a", WorkspaceSettings(cleanup="never"))
    assert never.finished(never.create(assign("t")), succeeded=True) == []
    spaces = Workspaces(tmp_path / "b", WorkspaceSettings(cleanup="keep_last", keep_last_n=0))
    busy = spaces.create(assign("busy"))
    done = spaces.create(assign("done"))
    spaces.finished(done, succeeded=True, keep=frozenset({busy}))
    assert busy.exists() and not done.exists()
