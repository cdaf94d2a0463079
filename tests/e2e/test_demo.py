"""The README's main job: ``agentcom demo`` carries every task to completion and cleans up after itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_completes_every_task_and_stops_its_processes(tmp_path):
    """The demo exits 0 with every task completed, the model task verified, and leaves no process behind."""
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST"}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.agentcom", "demo", "--data-dir", str(tmp_path / "demo"), "--timeout", "120"],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "shipped fake Ollama" in out
    assert "model task: verified; checks: file_exists=pass, test_passes=pass" in out
    assert "model task tool calls: write_file, write_file, run_command" in out
    assert "dead_letter" not in out.split("== summary", 1)[1]
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True).stdout
    assert leftovers.strip() == "", f"processes left running: {leftovers}"
