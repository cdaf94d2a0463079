"""The sandbox seam: run one command confined to a task workspace.

INTERFACE (fixed; other modules depend on it): ``SandboxLevel``, ``Limits``, ``Completed``, ``OutputCallback`` and
the ``Sandbox`` protocol. :func:`sidecar.sandbox.probe.probe_sandbox` picks the best level that works on this machine
at start-up:

- ``bwrap`` (``bwrap.py``): allow-list mounts, no network, pid namespace, a real unprivileged uid when root;
- ``landlock`` (``supervised.py`` + ``supervisor.py``): Landlock file-system and TCP rules, subreaper cleanup;
- ``rlimits`` (same files): rlimits and cleanup only, logged as a warning.

Every level scrubs the environment, caps output, enforces the timeout on every descendant and gives each concurrent
run its own uid (``uids.py``) when the sidecar is root. :func:`resolve_in_workspace` is the path check for tools.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol


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
    """Per stream: longer output keeps its first and last halves of this, ``truncated`` is set and a
    ``[... N bytes cut ...]`` line marks the cut."""


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
