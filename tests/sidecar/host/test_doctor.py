"""The sidecar doctor: sandbox level, local tools and hub reachability, as a printed report."""

from __future__ import annotations

import socket

from sidecar.host.doctor import check_machine
from sidecar.settings import load_settings


async def test_doctor_against_a_running_hub(hub) -> None:
    """With settings for a live hub every required check passes and the report names the sandbox level."""
    settings = load_settings(None, agent_id="doc", token="t", hub_url=hub.url)
    lines: list[str] = []
    report = await check_machine(settings, out=lines.append)
    assert report.ok, lines
    names = [check.name for check in report.checks]
    assert names == ["sandbox", "bwrap", "pm2", "chromium", "hub"]
    assert "/health answered HTTP 200" in lines[0]


async def test_doctor_reports_an_unreachable_hub() -> None:
    """A hub that does not answer fails the report, with the URL in the message."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(None, agent_id="doc", token="t", hub_url=f"http://127.0.0.1:{port}")
    lines: list[str] = []
    report = await check_machine(settings, out=lines.append)
    assert not report.ok
    assert f"[FAIL] hub: http://127.0.0.1:{port}/health unreachable" in lines[0]


async def test_doctor_without_settings_checks_only_this_machine() -> None:
    """Without settings only local checks run."""
    report = await check_machine(None, out=lambda _: None)
    assert [check.name for check in report.checks] == ["sandbox", "bwrap", "pm2", "chromium"]
