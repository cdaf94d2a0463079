"""Real git repositories for the tests: a bare remote in tmp_path with a small Python project, and a helper clone
to move the remote's default branch on."""

from __future__ import annotations

import subprocess
from pathlib import Path

ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Upstream",
    "GIT_AUTHOR_EMAIL": "upstream@example.org",
    "GIT_COMMITTER_NAME": "Upstream",
    "GIT_COMMITTER_EMAIL": "upstream@example.org",
}
CALC = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\nassert add(2, 3) == 5, add(2, 3)\nprint('ok')\n"
FIX = "sed -i 's/a - b/a + b/' calc.py"


def run_git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True, timeout=60
    ).stdout


def make_remote(root: Path, files: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A bare remote ``root/remote.git`` with ``files`` on ``main``, and a working clone ``root/upstream``."""
    remote, work = root / "remote.git", root / "upstream"
    run_git("init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
    run_git("init", "-q", "-b", "main", str(work), cwd=root)
    for name, text in (files or {"calc.py": CALC, "test_calc.py": TEST, "README": "calc\n"}).items():
        (work / name).write_text(text)
    commit_all(work, "initial")
    run_git("remote", "add", "origin", str(remote), cwd=work)
    run_git("push", "-q", "origin", "main", cwd=work)
    return remote, work


def commit_all(work: Path, message: str) -> str:
    run_git("add", "-A", cwd=work)
    run_git("commit", "-q", "-m", message, cwd=work)
    return run_git("rev-parse", "HEAD", cwd=work).strip()


def push_change(work: Path, name: str, text: str, message: str) -> str:
    """Move the remote's main on by one commit writing ``name``; returns the commit."""
    (work / name).write_text(text)
    sha = commit_all(work, message)
    run_git("push", "-q", "origin", "main", cwd=work)
    return sha
