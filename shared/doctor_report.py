"""The report ``agentcom doctor`` prints, for a hub (hub/doctor.py) and for an agent host (sidecar/host/doctor.py):
one line per check, in the order they ran, then the verdict. A failed check that is not ``required`` only warns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    """One line of the report; a failed check that is not ``required`` only warns."""

    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass
class DoctorReport:
    """All checks, in the order they ran."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every required check passed."""
        return all(check.ok for check in self.checks if check.required)

    def render(self) -> str:
        """The report as text, one check per line."""
        lines = []
        for check in self.checks:
            mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
            lines.append(f"[{mark}] {check.name}: {check.detail}")
        lines.append("all required checks passed" if self.ok else "some required checks FAILED")
        return "\n".join(lines)
