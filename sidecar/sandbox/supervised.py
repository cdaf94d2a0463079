"""L2 and L3 sandboxes: the command runs under ``supervisor.py`` in our own namespaces.

L2 adds a Landlock allow-list (file system, and TCP when the kernel has ABI 4; UDP is never covered) applied in the
supervisor's child just before exec. L3 has only rlimits, the uid drop when we are root, and the supervisor's
cleanup. Both run the supervisor by path with ``-I`` so nothing in the workspace or the environment can be
imported into a process that is still root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sidecar.sandbox import landlock_rules
from sidecar.sandbox.base import SandboxLevel
from sidecar.sandbox.uids import DEFAULT_UID_BASE, UID_LOCK_DIR
from sidecar.sandbox.wrapped import RunRequest, WrappedSandbox, Wrapper, rlimit_pairs

logger = logging.getLogger(__name__)

SUPERVISOR_PATH = Path(__file__).resolve().with_name("supervisor.py")
_READ_ONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc")
"""All of /etc, as the bwrap level mounts it: tools probe many files there (pip reads /etc/debian_version).
Landlock cannot carve out /etc/shadow; its mode 640 root:shadow keeps it from the sandbox uid."""
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
_DEVICE_RIGHTS = (
    landlock_rules.READ_FILE | landlock_rules.WRITE_FILE | landlock_rules.TRUNCATE | landlock_rules.IOCTL_DEV
)
_warned_workspaces: set[Path] = set()


def _warn_if_untraversable(workspace: Path) -> None:
    """Without a mount namespace the sandbox uid walks the real path, so every parent needs ``o+x``."""
    if workspace in _warned_workspaces:
        return
    closed = [str(parent) for parent in workspace.parents if not os.stat(parent).st_mode & 0o001]
    if closed:
        _warned_workspaces.add(workspace)
        logger.warning("sandbox: %s is not world-searchable; the sandbox uid can only use relative paths", closed[0])


def landlock_rules_for(request: RunRequest, tmp_dir: str) -> list[tuple[str, int]]:
    """The allow-list: read and execute system files and Python, read-write devices, everything in workspace/tmp."""
    rules = [(path, landlock_rules.READ) for path in (*_READ_ONLY, sys.prefix, sys.base_prefix)]
    rules += [(path, _DEVICE_RIGHTS) for path in _DEVICES]
    rules += [(str(request.workspace), landlock_rules.ALL), (tmp_dir, landlock_rules.ALL)]
    return rules


class SupervisedSandbox(WrappedSandbox):
    """Runs the command under the subreaper supervisor with a private temporary directory."""

    def _landlock(self, request: RunRequest, tmp_dir: str) -> dict[str, Any] | None:
        return None

    @contextlib.contextmanager
    def _command(self, request: RunRequest) -> Iterator[Wrapper]:
        if request.uid is not None:
            _warn_if_untraversable(request.workspace)
        tmp_dir = tempfile.mkdtemp(prefix="agentcom-sandbox-")
        try:
            if request.uid is not None:
                os.chown(tmp_dir, request.uid, request.uid)
            spec = {
                "argv": request.argv,
                "cwd": str(request.cwd),
                "env": {"TMPDIR": tmp_dir, **request.env},
                "uid": request.uid,
                "gid": request.uid,
                "rlimits": rlimit_pairs(request.limits, request.uid),
                "landlock": self._landlock(request, tmp_dir),
            }
            yield Wrapper([sys.executable, "-I", str(SUPERVISOR_PATH)], stdin_data=json.dumps(spec).encode())
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)


class LandlockSandbox(SupervisedSandbox):
    """L2: Landlock allow-list, TCP denial, subreaper supervisor, uid drop when root."""

    level = SandboxLevel.LANDLOCK

    def __init__(
        self, *, uid_base: int = DEFAULT_UID_BASE, kill_grace_s: float = 3.0, uid_lock_dir: Path = UID_LOCK_DIR
    ) -> None:
        super().__init__(uid_base=uid_base, kill_grace_s=kill_grace_s, uid_lock_dir=uid_lock_dir)
        self.abi = landlock_rules.abi_version()
        if self.abi < 4:
            logger.warning("sandbox: Landlock ABI %d cannot restrict TCP; commands can reach the network", self.abi)

    def describe(self) -> str:
        net = "TCP denied (UDP not)" if self.abi >= 4 else "network NOT restricted"
        who = f"uid {self.uid_base}+slot" if self.drops_uid else "our own uid (not root)"
        return f"landlock ABI {self.abi}: file-system allow-list, {net}, subreaper supervisor, {who}, rlimits"

    def _landlock(self, request: RunRequest, tmp_dir: str) -> dict[str, Any] | None:
        return {"rules": landlock_rules_for(request, tmp_dir), "deny_tcp": not request.network and self.abi >= 4}


class RlimitsSandbox(SupervisedSandbox):
    """L3, last resort: rlimits, the uid drop when root, and the supervisor's cleanup; no file or network rules."""

    level = SandboxLevel.RLIMITS

    def __init__(
        self, *, uid_base: int = DEFAULT_UID_BASE, kill_grace_s: float = 3.0, uid_lock_dir: Path = UID_LOCK_DIR
    ) -> None:
        super().__init__(uid_base=uid_base, kill_grace_s=kill_grace_s, uid_lock_dir=uid_lock_dir)
        logger.warning(
            "sandbox: rlimits-only; commands can read and write whatever %s can, and reach the network",
            "the sandbox uid" if self.drops_uid else "this user",
        )

    def describe(self) -> str:
        who = f"uid {self.uid_base}+slot" if self.drops_uid else "our own uid (not root)"
        return f"rlimits-only (WEAK): no file-system or network confinement, subreaper supervisor, {who}, rlimits"
