"""The ``agentcom`` command: every subcommand is there with its help, and ``doctor`` reports the machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.agentcom import main

SUBCOMMANDS = ["hub", "sidecar", "doctor", "demo", "onboard", "offboard"]


def test_help_lists_every_subcommand(capsys):
    """``agentcom --help`` names each subcommand."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name, capsys):
    """Each subcommand answers ``--help`` with its usage and exit code 0."""
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"agentcom {name}" in capsys.readouterr().out


HEAVY = ("anthropic", "fastapi", "uvicorn")


def _loaded_after(code: str) -> list[str]:
    """Which of ``HEAVY`` a fresh interpreter has imported after running ``code``."""
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


def test_top_level_help_loads_no_subcommand():
    """Building the parser for ``agentcom --help`` imports neither the hub's web stack nor the Anthropic SDK."""
    assert _loaded_after("from scripts.agentcom import build_parser\nbuild_parser(['--help'])") == []


def test_sidecar_loads_the_anthropic_sdk_only_for_claude():
    """The sidecar's parser and wiring do not import ``anthropic``; making a Claude model does."""
    assert _loaded_after("from scripts.agentcom import build_parser\nbuild_parser(['sidecar', '--help'])\n"
                         "import sidecar.main") == []  # fmt: skip
    claude = ("from sidecar.agent.agentic import ClaudeExecutor\nfrom shared.protocol import TaskAssign\n"
              "ClaudeExecutor(None, api_key='k').make_model(TaskAssign(task_id='t', description='d', generation=1, "
              "assigned_at=1))")  # fmt: skip
    assert "anthropic" in _loaded_after(claude)


def test_hub_subcommand_loads_the_hub():
    """``agentcom hub`` does import the hub (the check above is not blind)."""
    assert "fastapi" in _loaded_after("from scripts.agentcom import build_parser\nbuild_parser(['hub'])")


def test_unknown_subcommand_is_refused(capsys):
    """An unknown subcommand exits 2 with a usage error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_doctor_reports_the_sandbox_level():
    """``agentcom doctor`` prints the sandbox level it found and passes when bubblewrap works."""
    done = subprocess.run(
        [sys.executable, "-m", "scripts.agentcom", "doctor"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sandbox: bwrap" in done.stdout


def test_doctor_refuses_a_bad_config(tmp_path):
    """``agentcom doctor --config`` with an invalid file exits 2 and names the bad field."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"agent_id": "a", "hub_url": "nope"}')
    done = subprocess.run(
        [sys.executable, "-m", "scripts.agentcom", "doctor", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "hub_url" in done.stderr
