"""``agentcom doctor`` for an agent host: what sandbox this machine gives, which tools exist, whether the hub answers.

Every check reports; none stops the others. Only a missing sandbox or an unreachable hub make the report fail.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from sidecar.sandbox.base import SandboxLevel
from sidecar.sandbox.probe import probe_sandbox
from sidecar.settings import SidecarSettings

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    """One line of the report."""

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


def run_doctor(settings: SidecarSettings | None = None, *, out: Callable[[str], object] = print) -> DoctorReport:
    """Check the sandbox, local tools and (with settings) the hub and Ollama; print and return the report.

    For synchronous callers (the CLI); from a running event loop use :func:`check_machine`.

    Args:
        settings: The sidecar's settings; without them only local checks run.
        out: Where the rendered report goes.
    """
    return asyncio.run(check_machine(settings, out=out))


async def check_machine(
    settings: SidecarSettings | None = None, *, out: Callable[[str], object] = print
) -> DoctorReport:
    """The checks of :func:`run_doctor`, as a coroutine."""
    report = DoctorReport()
    report.checks.append(await _sandbox_check(settings))
    report.checks.append(_tool_check("bwrap", ("bwrap",), "bubblewrap gives the strongest sandbox", required=False))
    report.checks.append(_tool_check("pm2", ("pm2",), "keeps the sidecar running", required=False))
    report.checks.append(_tool_check("chromium", CHROMIUM_NAMES, "for browser checks", required=False))
    if settings is not None:
        report.checks.append(await _http_check("hub", settings.http_url + "/health", required=True))
        if settings.ollama_url:
            ollama = settings.ollama_url.rstrip("/") + "/api/tags"
            report.checks.append(await _http_check("ollama", ollama, required=False))
    out(report.render())
    return report


async def _sandbox_check(settings: SidecarSettings | None) -> Check:
    try:
        if settings is None:
            sandbox = await probe_sandbox()
        else:
            sandbox = await probe_sandbox(settings.sandbox.level, uid_base=settings.uid_base)
    except Exception as exc:  # the probe failing is itself the finding
        return Check("sandbox", False, f"probe failed: {type(exc).__name__}: {exc}")
    if sandbox.level == SandboxLevel.BWRAP:
        return Check("sandbox", True, sandbox.describe())
    return Check("sandbox", True, f"{sandbox.describe()} -- weaker than bwrap; install bubblewrap")


def _tool_check(name: str, binaries: tuple[str, ...], why: str, *, required: bool) -> Check:
    for binary in binaries:
        if (path := shutil.which(binary)) is not None:
            return Check(name, True, path, required)
    return Check(name, False, f"not found ({why})", required)


async def _http_check(name: str, url: str, *, required: bool) -> Check:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return Check(name, False, f"{url} unreachable: {type(exc).__name__}: {exc}", required)
    if response.status_code >= 500:
        return Check(name, False, f"{url} answered HTTP {response.status_code}", required)
    return Check(name, True, f"{url} answered HTTP {response.status_code}", required)
