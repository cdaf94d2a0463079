"""The README's main job: ``agentcom demo --tasks`` carries every hand-written task to completion, shows it on the
dashboard, and cleans up after itself (the goal on a git repository: test_demo_git.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def screenshot(url: str, path: Path) -> str:
    """Open the dashboard in Chromium, wait for the finished work to show, save a screenshot; returns the page text."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        expect(page.get_by_text("gcu-sleeper-service").first).to_be_visible(timeout=15_000)
        expect(page.get_by_text("Sign off the batch").first).to_be_visible(timeout=15_000)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        text = page.inner_text("body")
        browser.close()
    return text


@pytest.mark.timeout(300)
def test_demo_completes_every_task_and_stops_its_processes(tmp_path):
    """The batch of tasks finishes (the model task verified), its dashboard shows the run, and on Ctrl-C it
    leaves no process behind."""
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.agentcom",
            "demo",
            "--data-dir",
            str(tmp_path / "demo"),
            "--timeout",
            "120",
            "--keep-running",
            "--tasks",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "still running; open" in line or "demo failed" in line:
                break
        out = "".join(lines)
        assert "still running; open" in out, out
        assert "shipped fake Ollama" in out
        assert "model task: verified; checks: file_exists=pass, test_passes=pass" in out
        assert "model task tool calls: write_file, write_file, run_command" in out
        summary = out.split("== summary", 1)[1]
        assert "dead_letter" not in summary and summary.count("completed") == 8
        if CHROMIUM.exists():
            url = re.search(r"open (http://\S+/dashboard#token=[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
            page = screenshot(url, ARTIFACTS / "dashboard-demo.png")
            flat = " ".join(page.split())
            assert "8 completed" in flat and "0 dead-letter" in flat, flat[:400]
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out + rest
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True).stdout
    assert leftovers.strip() == "", f"processes left running: {leftovers}"
