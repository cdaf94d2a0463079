"""What the cycles of work (healing, improving, contemplating) and the signal gathering see of the running autonomy
(:class:`hub.autonomy.loop.Autonomy` is the one implementation; the protocol keeps the imports a tree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hub.autonomy.fsm import HubMachine
    from hub.hub import Hub


@dataclass(frozen=True)
class ScanTarget:
    """A local git checkout the improving state scans."""

    name: str
    path: Path
    test_command: tuple[str, ...] = ()


class Runtime(Protocol):
    hub: Hub
    fsm: HubMachine
    cycle_done: bool
    broken_main: dict[str, str]
    broken_handled: set[str]
    forced_scans: set[str]
    scanned: dict[str, dict[str, Any]]
    routing_fallback: bool

    async def journal_healing(self, action: str, target: str, result: str) -> None: ...

    async def due_targets(self) -> list[ScanTarget]: ...
