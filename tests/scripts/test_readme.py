"""Every ``agentcom`` command the README's "Using it" block and the operations guide show parses: with its own
arguments by the real parser, and through the installed console script with ``--help``."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.agentcom import build_parser

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "agentcom"


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def commands(text: str) -> list[list[str]]:
    """The argv (after ``agentcom``) of every command line in the bash blocks of ``text``."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("agentcom "):
                found.append(shlex.split(line, comments=True)[1:])
    return found


README = commands(section((ROOT / "README.md").read_text(), "## Using it"))
GUIDE = commands((ROOT / "docs" / "operations.md").read_text())


def test_the_blocks_hold_the_commands_a_user_needs():
    """The README's block starts the hub, checks it, runs a sidecar and submits a task; it says how to get the
    command on PATH."""
    firsts = {tuple(argv[:2]) for argv in README}
    assert {("hub", "--port"), ("sidecar", "--config"), ("task", "submit"), ("doctor", "--hub")} <= firsts
    using = section((ROOT / "README.md").read_text(), "## Using it")
    assert "source .venv/bin/activate" in using and ".venv/bin/agentcom" in using
    assert len(GUIDE) >= 10


@pytest.mark.parametrize("argv", README + GUIDE, ids=lambda argv: " ".join(argv)[:60])
def test_command_parses(argv: list[str]):
    """The parser accepts the command with exactly the arguments shown (``--version`` answers and exits 0)."""
    if argv == ["--version"]:
        with pytest.raises(SystemExit) as done:
            build_parser(argv).parse_args(argv)
        assert done.value.code == 0
        return
    args = build_parser(argv).parse_args(argv)
    assert callable(args.run)


@pytest.mark.parametrize("argv", README, ids=lambda argv: " ".join(argv)[:60])
def test_console_script_takes_the_command(argv: list[str]):
    """The installed ``agentcom`` script answers the command with --help and status 0."""
    assert CONSOLE_SCRIPT.exists(), f"{CONSOLE_SCRIPT} is missing: pip install -e . installs it"
    done = subprocess.run([str(CONSOLE_SCRIPT), *argv, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: agentcom " + argv[0])
