"""Durable local state: atomic writes, write-before-say ordering, outbox until acknowledged, survives restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.protocol import TaskAssign, TaskComplete, TaskFailed
from sidecar.runtime.state import LocalState, write_atomic


def assign(task_id: str = "t1", generation: int = 1) -> TaskAssign:
    return TaskAssign(
        task_id=task_id, description="d", generation=generation, assigned_at=1, metadata={"shell_command": "true"}
    )


def complete(task_id: str = "t1", generation: int = 1) -> TaskComplete:
    return TaskComplete(
        type="task_complete", task_id=task_id, generation=generation, result={"status": "success", "output": "ok"}
    )


def test_empty_when_no_file(tmp_path: Path) -> None:
    """A fresh state dir gives no active task and an empty outbox, and creates the directory."""
    state = LocalState.load(tmp_path / "state")
    assert state.active is None and state.outbox == []
    assert (tmp_path / "state").is_dir()


def test_active_task_survives_reload(tmp_path: Path) -> None:
    """A recorded active task is on disk as soon as record_active returns."""
    LocalState.load(tmp_path).record_active(assign())
    again = LocalState.load(tmp_path)
    assert again.active is not None
    assert again.active.task == assign()
    assert again.active.status == "accepted"


def test_finish_moves_task_to_outbox_in_one_write(tmp_path: Path) -> None:
    """Finishing releases the active task and queues its result in the same file version."""
    state = LocalState.load(tmp_path)
    state.record_active(assign())
    state.finish(complete())
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk["active"] is None
    assert [e["task_id"] for e in on_disk["outbox"]] == ["t1"]
    reloaded = LocalState.load(tmp_path)
    assert reloaded.outbox[0].decode() == complete()


def test_finish_of_other_generation_keeps_active(tmp_path: Path) -> None:
    """A result for an older generation does not release the newer active attempt."""
    state = LocalState.load(tmp_path)
    state.record_active(assign(generation=2))
    state.finish(complete(generation=1))
    assert state.active is not None and state.active.task.generation == 2


def test_acknowledge_removes_oldest_entry_for_the_task(tmp_path: Path) -> None:
    """Acks remove entries per task in order, and the removal is durable."""
    state = LocalState.load(tmp_path)
    state.finish(complete("t1", 1))
    state.finish(complete("t2", 1))
    state.finish(TaskFailed(type="task_failed", task_id="t1", generation=2, reason="x"))
    assert state.acknowledge("t1").generation == 1
    assert [(e.task_id, e.generation) for e in LocalState.load(tmp_path).outbox] == [("t2", 1), ("t1", 2)]
    assert state.acknowledge("nope") is None


def test_outbox_keeps_failed_results(tmp_path: Path) -> None:
    """task_failed messages round-trip through the outbox unchanged."""
    state = LocalState.load(tmp_path)
    failed = TaskFailed(type="task_failed", task_id="t1", generation=3, reason="sidecar_restarted", error="e")
    state.finish(failed)
    assert LocalState.load(tmp_path).outbox[0].decode() == failed


def test_clear_active_checks_generation(tmp_path: Path) -> None:
    """clear_active only drops the named attempt."""
    state = LocalState.load(tmp_path)
    state.record_active(assign(generation=2))
    assert state.clear_active("t1", generation=1) is False
    assert state.clear_active("t1") is True
    assert LocalState.load(tmp_path).active is None


def test_corrupt_file_is_set_aside(tmp_path: Path) -> None:
    """An unreadable state file is moved aside (kept for diagnosis) and the sidecar starts empty."""
    (tmp_path / "state.json").write_text("{not json")
    state = LocalState.load(tmp_path)
    assert state.active is None
    assert list(tmp_path.glob("state.json.corrupt-*"))


def test_leftover_temp_file_is_ignored(tmp_path: Path) -> None:
    """A temp file left by a crash mid-write does not affect the committed state."""
    state = LocalState.load(tmp_path)
    state.record_active(assign())
    (tmp_path / "state.json.tmp").write_text("garbage")
    assert LocalState.load(tmp_path).active is not None


def test_write_atomic_replaces_and_is_private(tmp_path: Path) -> None:
    """write_atomic leaves only the final file, readable by the owner only."""
    target = tmp_path / "f.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert not (tmp_path / "f.json.tmp").exists()
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)


def test_state_survives_sigkill_of_the_writer(tmp_path: Path) -> None:
    """A process killed right after record_active returned leaves that task recorded."""
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from shared.protocol import TaskAssign\n"
        "from sidecar.runtime.state import LocalState\n"
        "s = LocalState.load(Path(sys.argv[1]))\n"
        "s.record_active(TaskAssign(task_id='k', description='d', generation=4, assigned_at=1))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=Path(__file__).parents[3],
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )
    assert proc.returncode == -9
    active = LocalState.load(tmp_path).active
    assert active is not None and active.task.generation == 4
