"""One hub per data dir: an exclusive ``flock`` on DATA_DIR/hub.lock, held for the process's lifetime.

The lock file holds the holder's pid and, once it listens, its URL, so a second hub started on the same directory
can say who has it. The kernel drops the lock when the holder's descriptor closes, however the process ends
(SIGKILL included), so a stale file never blocks a start: the file stays, only the lock matters.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

LOCK_NAME = "hub.lock"
RECORD_BYTES = 512
"""The lock file's fixed size: rewriting it in place never needs a new block, even on a full disk."""


class DataDirError(Exception):
    """The data dir cannot be used: another hub holds it, or this process cannot write to it."""


def _unwritable(data_dir: Path, exc: OSError) -> DataDirError:
    reason = exc.strerror or str(exc)
    return DataDirError(
        f"cannot write to the data dir {data_dir} ({reason}). Make it a writable directory for this user "
        f"(uid {os.geteuid()}), e.g. remount it read-write or fix its owner and mode, or pass --data-dir "
        f"(or AGENTCOM_DATA_DIR) naming one that is."
    )


class DataLock:
    """The held lock; :meth:`release` (or the process's end) lets the next hub in."""

    def __init__(self, data_dir: Path, fd: int, created: list[Path]) -> None:
        self.data_dir = data_dir
        self.created = created
        """Directories this start created (outermost first): a failed start removes them again."""
        self._fd: int | None = fd

    def __repr__(self) -> str:
        return f"<DataLock {self.data_dir} {'held' if self._fd is not None else 'released'}>"

    @classmethod
    def acquire(cls, data_dir: Path) -> DataLock:
        """Take the lock without waiting; DataDirError naming the holder when another hub has it."""
        created = [p for p in reversed((data_dir, *data_dir.parents)) if not p.exists()]
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise DataDirError(
                f"the data dir {data_dir} is not a directory. Pass --data-dir (or "
                f"AGENTCOM_DATA_DIR) naming a directory."
            ) from None
        except OSError as exc:
            raise _unwritable(data_dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            pid, url = holder.get("pid", "unknown"), holder.get("url") or "not listening yet"
            raise DataDirError(
                f"data dir {data_dir} is in use by hub pid {pid} (url {url}). Only one hub may use a data dir: "
                f"stop that hub first, or start this one with another --data-dir."
            ) from None
        lock = cls(data_dir, fd, created)
        try:
            lock.record()
            if not os.access(data_dir, os.W_OK | os.X_OK):  # the lock file may be writable in a read-only dir
                raise PermissionError(13, "permission denied")
        except OSError as exc:
            lock.release()
            raise _unwritable(data_dir, exc) from None
        return lock

    def record(self, url: str | None = None) -> None:
        """Write this process's pid (and its URL, once known) into the lock file."""
        assert self._fd is not None
        data = json.dumps({"pid": os.getpid(), "url": url}).encode()[: RECORD_BYTES - 1]
        try:
            os.pwrite(self._fd, data.ljust(RECORD_BYTES - 1) + b"\n", 0)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # A new lock file on a full disk: the lock holds all the same, the refusal then names no pid.

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict[str, object]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}  # being rewritten this instant, or not ours
    return holder if isinstance(holder, dict) else {}
