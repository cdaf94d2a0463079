"""Durable local state: the active task and the outbox of results the hub has not acknowledged yet.

One JSON file, ``STATE_DIR/state.json``, rewritten atomically on every change (temp file + fsync + ``os.replace`` +
fsync of the directory), so a SIGKILL at any instant leaves either the old or the new state, never a torn one.

The order of writes is what makes restarts safe ("write before you say"):

- the active task is recorded *before* ``task_accepted`` is sent;
- a finished task moves from ``active`` into the outbox in *one* write, before the result is sent;
- an outbox entry is removed only when the hub has acknowledged it (or rejected it for good).

Writes are synchronous: the file is small, and doing them inline keeps their order equal to the program order.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.protocol import StateReport, TaskAssign, TaskComplete, TaskFailed, sidecar_adapter

logger = logging.getLogger(__name__)

STATE_VERSION = 1
ActiveStatus = Literal["accepted", "running", "recovering"]
ResultMessage = TaskComplete | TaskFailed


@dataclass
class ActiveTask:
    """The one task this sidecar owns right now."""

    task: TaskAssign
    status: ActiveStatus
    recorded_at_ms: int

    def state_report(self) -> StateReport:
        """The ``state_report`` that asks the hub whether this task is still ours."""
        working = "working" if self.status == "running" else self.status
        return StateReport(
            type="state_report",
            task_id=self.task.task_id,
            generation=self.task.generation,
            status=working,
            assigned_at=self.task.assigned_at,
        )


@dataclass
class OutboxEntry:
    """A result waiting for the hub's acknowledgement."""

    task_id: str
    generation: int
    message: dict[str, Any]
    queued_at_ms: int
    sends: int = 0

    def decode(self) -> ResultMessage:
        """The stored message as a protocol model."""
        msg = sidecar_adapter.validate_python(self.message)
        assert isinstance(msg, TaskComplete | TaskFailed)
        return msg


@dataclass
class LocalState:
    """The sidecar's durable state; every mutating method writes the file before it returns."""

    path: Path
    active: ActiveTask | None = None
    outbox: list[OutboxEntry] = field(default_factory=list)

    @classmethod
    def load(cls, state_dir: Path) -> LocalState:
        """Read ``state_dir/state.json``; a missing file is an empty state, an unreadable one is set aside."""
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / "state.json"
        state = cls(path)
        try:
            data = json.loads(path.read_bytes())
            state.active = _active_from(data.get("active"))
            state.outbox = [OutboxEntry(**entry) for entry in data.get("outbox", [])]
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            spare = path.with_name(f"state.json.corrupt-{int(time.time())}")
            os.replace(path, spare)
            logger.error("local state unreadable (%s); moved to %s, starting empty", exc, spare)
            state = cls(path)
        return state

    def __repr__(self) -> str:
        active = self.active.task.task_id if self.active else None
        return f"<LocalState active={active} outbox={len(self.outbox)}>"

    def record_active(self, task: TaskAssign, status: ActiveStatus = "accepted") -> ActiveTask:
        """Make ``task`` the active task (before ``task_accepted`` is sent)."""
        self.active = ActiveTask(task=task, status=status, recorded_at_ms=_now_ms())
        self._save()
        return self.active

    def set_status(self, task_id: str, status: ActiveStatus) -> None:
        """Change the active task's status, if ``task_id`` is the active task."""
        if self.active is not None and self.active.task.task_id == task_id:
            self.active.status = status
            self._save()

    def clear_active(self, task_id: str, generation: int | None = None) -> bool:
        """Drop the active task (aborted or cancelled); returns whether it was the active one."""
        if not self._is_active(task_id, generation):
            return False
        self.active = None
        self._save()
        return True

    def finish(self, message: ResultMessage) -> OutboxEntry:
        """Queue a result and, in the same write, release the task it reports on."""
        entry = OutboxEntry(
            task_id=message.task_id,
            generation=message.generation,
            message=message.model_dump(mode="json", exclude_none=True),
            queued_at_ms=_now_ms(),
        )
        self.outbox.append(entry)
        if self._is_active(message.task_id, message.generation):
            self.active = None
        self._save()
        return entry

    def acknowledge(self, task_id: str) -> OutboxEntry | None:
        """Remove the oldest outbox entry for ``task_id`` (the hub answers in order); ``None`` if there is none."""
        for i, entry in enumerate(self.outbox):
            if entry.task_id == task_id:
                del self.outbox[i]
                self._save()
                return entry
        return None

    def count_send(self, entry: OutboxEntry) -> None:
        """Note one more send of ``entry`` (kept for diagnosis; not saved on its own)."""
        entry.sends += 1

    def _is_active(self, task_id: str, generation: int | None) -> bool:
        if self.active is None or self.active.task.task_id != task_id:
            return False
        return generation is None or self.active.task.generation == generation

    def _save(self) -> None:
        data = {
            "version": STATE_VERSION,
            "active": None if self.active is None else _active_to(self.active),
            "outbox": [asdict(entry) for entry in self.outbox],
        }
        write_atomic(self.path, json.dumps(data, indent=1).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that readers (and a crash) see the old or the new content, nothing else."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must reach the disk too
    finally:
        os.close(dir_fd)


def _active_to(active: ActiveTask) -> dict[str, Any]:
    return {
        "task": active.task.model_dump(mode="json"),
        "status": active.status,
        "recorded_at_ms": active.recorded_at_ms,
    }


def _active_from(data: dict[str, Any] | None) -> ActiveTask | None:
    if data is None:
        return None
    task = TaskAssign.model_validate(data["task"])
    return ActiveTask(task=task, status=data["status"], recorded_at_ms=data["recorded_at_ms"])


def _now_ms() -> int:
    return int(time.time() * 1000)
