"""The ``agentcom`` command: every subcommand is there with its help, and ``doctor`` reports the machine."""

from __future__ import annotations

import shutil
import subprocess
import sys

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


def test_unknown_subcommand_is_refused(capsys):
    """An unknown subcommand exits 2 with a usage error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_doctor_reports_the_sandbox_level():
    """``agentcom doctor`` prints the sandbox level it found and passes when bubblewrap works."""
    done = subprocess.run([sys.executable, "-m", "scripts.agentcom", "doctor"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sandbox: bwrap" in done.stdout


def test_doctor_refuses_a_bad_config(tmp_path):
    """``agentcom doctor --config`` with an invalid file exits 2 and names the bad field."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"agent_id": "a", "hub_url": "nope"}')
    done = subprocess.run([sys.executable, "-m", "scripts.agentcom", "doctor", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "hub_url" in done.stderr
