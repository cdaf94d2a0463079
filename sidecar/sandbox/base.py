"""Sandbox: run one command confined to a task workspace.

INTERFACE (fixed; other modules depend on it): ``SandboxLevel``, ``Limits``, ``Completed``, ``OutputCallback`` and
the ``Sandbox`` protocol. :func:`probe_sandbox` picks the best level that works on this machine at start-up:

- ``bwrap`` (``sandbox_bwrap.py``): allow-list mounts, no network, pid namespace, a real unprivileged uid when root;
- ``landlock`` (``sandbox_local.py`` + ``supervisor.py``): Landlock file-system and TCP rules, subreaper cleanup;
- ``rlimits`` (same files): rlimits and cleanup only, logged as a warning.

Every level scrubs the environment, caps output, enforces the timeout on every descendant and gives each concurrent
run its own uid (60000+slot) when the sidecar is root. :func:`resolve_in_workspace` is the path check for tools.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sidecar.sandbox.wrapped import WrappedSandbox

logger = logging.getLogger(__name__)


class SandboxLevel(StrEnum):
    BWRAP = "bwrap"
    LANDLOCK = "landlock"
    RLIMITS = "rlimits"


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 120
    memory_bytes: int = 4 * 1024**3
    file_size_bytes: int = 100 * 1024**2
    nproc: int = 64
    output_bytes: int = 256 * 1024
    """Per stream; the rest is dropped and ``truncated`` set."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    """Exit code; negative for a signal (-9 when killed)."""
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: int
    truncated: bool = False


OutputCallback = Callable[[str, str], Awaitable[None]]
"""Called as ``await on_output(stream, text)`` with stream ``"stdout"`` or ``"stderr"`` as output arrives."""


class SandboxViolation(Exception):
    """A path given to a tool points outside its workspace."""


class SandboxUnavailable(Exception):
    """The requested sandbox level (or every level) does not work on this machine."""


class Sandbox(Protocol):
    level: SandboxLevel

    async def run(
        self,
        argv: list[str],
        workspace: Path,
        *,
        cwd: Path | None = None,
        timeout_s: float = 60.0,
        limits: Limits | None = None,
        network: bool = False,
        env: dict[str, str] | None = None,
        on_output: OutputCallback | None = None,
    ) -> Completed:
        """Run ``argv`` with ``workspace`` as the only writable place (cwd defaults to it).

        Never raises for the command's own failure (non-zero exit, timeout, denial): that is in ``Completed``.
        """
        ...


def resolve_in_workspace(workspace: Path, rel: str) -> Path:
    """Resolve a tool's path argument, refusing anything that ends up outside ``workspace``.

    Relative paths are taken from the workspace; absolute ones must point inside it. Symlinks are followed, so the
    returned path is the real target. The check is only as good as the moment it runs: a command running
    concurrently in the workspace can still swap a component for a symlink afterwards.

    Args:
        workspace: The task's workspace directory.
        rel: The path as given by the model, relative or absolute.

    Returns:
        The resolved absolute path (it need not exist yet).

    Raises:
        SandboxViolation: The path escapes through ``..``, is absolute outside, or goes through a symlink that
            leads outside the workspace (or loops).
    """
    try:
        root = workspace.resolve()
        resolved = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise SandboxViolation(f"{rel!r} cannot be resolved inside the workspace: {exc}") from exc
    if resolved != root and root not in resolved.parents:
        raise SandboxViolation(f"{rel!r} is outside the workspace")
    return resolved


_PROBE_TIMEOUT_S = 20.0


def _unavailable_reason(level: SandboxLevel) -> str | None:
    # Imported here: the level modules import this one for the interface types.
    from sidecar.sandbox import bwrap as sandbox_bwrap
    from sidecar.sandbox import landlock_rules

    if level is SandboxLevel.BWRAP and (missing := sandbox_bwrap.tools_missing()):
        return f"{', '.join(missing)} not installed"
    if level is SandboxLevel.LANDLOCK and landlock_rules.abi_version() < 1:
        return "the kernel has no Landlock"
    return None


def _make(level: SandboxLevel, uid_base: int, kill_grace_s: float) -> WrappedSandbox:
    from sidecar.sandbox.bwrap import BwrapSandbox
    from sidecar.sandbox.supervised import LandlockSandbox, RlimitsSandbox

    cls = {SandboxLevel.BWRAP: BwrapSandbox, SandboxLevel.LANDLOCK: LandlockSandbox}.get(level, RlimitsSandbox)
    return cls(uid_base=uid_base, kill_grace_s=kill_grace_s)


async def _probe_failure(sandbox: WrappedSandbox) -> str | None:
    workspace = Path(tempfile.mkdtemp(prefix="agentcom-probe-"))
    try:
        done = await sandbox.run(["true"], workspace, timeout_s=_PROBE_TIMEOUT_S)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if done.returncode == 0:
        return None
    detail = (done.stderr.strip() or done.stdout.strip())[:300]
    return f"probe command exited {done.returncode}" + (f": {detail}" if detail else "")


async def probe_sandbox(
    prefer: SandboxLevel | None = None, *, uid_base: int = 60000, kill_grace_s: float = 3.0
) -> WrappedSandbox:
    """Return the strongest sandbox that actually runs a command here (async: each candidate runs ``true``).

    The result implements :class:`Sandbox` and also has ``describe() -> str`` (one line for logs and the dashboard)
    and ``drops_uid`` (whether runs get their own unprivileged uid).

    Args:
        prefer: Force this level (tests, or an operator's setting): only it is tried. ``None`` tries
            bwrap, then landlock, then rlimits.
        uid_base: First uid of the per-run uids used when the sidecar is root. Give each sidecar on one host its own
            range of 1000, since a run's cleanup kills every process of its uid.
        kill_grace_s: After a timeout, how long the wrapper gets to kill the tree before its group is SIGKILLed.

    Raises:
        SandboxUnavailable: The forced level (or, without ``prefer``, every level) failed; the message says why.
    """
    failures = []
    for level in [prefer] if prefer is not None else list(SandboxLevel):
        reason = _unavailable_reason(level)
        if reason is None:
            sandbox = _make(level, uid_base, kill_grace_s)
            reason = await _probe_failure(sandbox)
            if reason is None:
                logger.info("sandbox: using %s", sandbox.describe())
                return sandbox
        logger.warning("sandbox: %s unavailable: %s", level, reason)
        failures.append(f"{level}: {reason}")
    raise SandboxUnavailable("no working sandbox level: " + "; ".join(failures))
