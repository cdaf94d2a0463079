"""Sandbox: run one command confined to a task workspace.

INTERFACE (fixed; other modules depend on it). Implementation to be filled in: probe the best level at start-up
(bwrap > landlock > rlimits), each level a class implementing ``Sandbox``.
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
