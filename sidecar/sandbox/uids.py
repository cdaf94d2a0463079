"""Sandbox uids: each run gets a uid of its own, reserved across every sidecar process on this host.

A run's cleanup kills every process of its uid, and RLIMIT_NPROC counts per uid, so two runs must never share a
uid, not even runs of two sidecars whose ranges overlap. A uid is reserved by an exclusive ``flock`` on the file
named after it in a lock directory shared by the host's sidecars (default ``/run/agentcom/uids``, root only). The
lock lives as long as its file descriptor: a sidecar that dies, however it dies, frees its uids with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import time
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_UID_BASE = 100_000
"""First uid of the default ranges (settings derive one range of ``UID_SLOTS`` per agent id from here)."""
UID_SLOTS = 1000
"""Uids per range: at most this many concurrent runs per sidecar."""
UID_LOCK_DIR = Path("/run/agentcom/uids")
"""Where the host's sidecars reserve uids; must be the same directory for all of them."""

_held: dict[int, int] = {}
"""Uids this process holds, with the descriptor of each lock file."""


def held_count() -> int:
    """How many sandbox uids this process holds (runs in progress, plus uids kept back with processes left)."""
    return len(_held)


def _lock_dir(path: Path) -> int:
    """An fd of ``path``, created 0700 if missing; refused unless a real directory of ours that nobody else can
    write (another user could otherwise take every uid, or swap a lock file)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise PermissionError(f"sandbox uid lock directory {path} must belong to uid {os.geteuid()} and not be "
                              "writable by group or others")  # fmt: skip
    return fd


def acquire_uid(base: int, lock_dir: Path = UID_LOCK_DIR) -> int:
    """Reserve the lowest uid at or above ``base`` that no run of any process on this host holds.

    Raises:
        RuntimeError: All ``UID_SLOTS`` uids from ``base`` are taken.
        PermissionError: ``lock_dir`` is not a private directory of this user.
    """
    dir_fd = _lock_dir(lock_dir)
    try:
        for uid in range(base, base + UID_SLOTS):
            if uid in _held:
                continue
            fd = os.open(str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _held[uid] = fd
            return uid
    finally:
        os.close(dir_fd)
    raise RuntimeError(f"all {UID_SLOTS} sandbox uids from {base} are in use")


def release_uid(uid: int) -> None:
    """Give ``uid`` back (its lock file stays, unlocked: removing it would race with a process locking it)."""
    fd = _held.pop(uid, None)
    if fd is not None:
        os.close(fd)


async def release_uid_when_empty(uid: int, timeout_s: float = 2.0) -> None:
    """Free ``uid`` once none of its processes is left, so its next run starts with a zero RLIMIT_NPROC count.

    A uid that still has processes after ``timeout_s`` (stuck in the kernel) stays reserved, with a warning.
    """
    deadline = time.monotonic() + timeout_s
    while (left := tasks_of_uid(uid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if left:
        logger.warning("sandbox: uid %d still has %d tasks after its run; not reusing it", uid, left)
    else:
        release_uid(uid)


def tasks_of_uid(uid: int) -> int:
    """How many tasks (threads count, as for RLIMIT_NPROC) run under ``uid``."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{name}/task"))
    return count
