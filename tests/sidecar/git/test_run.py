"""The git runner: a clean environment, bounded output, a timeout that kills the whole process group."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import psutil
import pytest

from sidecar.git.run import GitError, git


async def test_git_gets_a_clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing of the sidecar's environment reaches git, prompts are off, and explicit extras are passed."""
    monkeypatch.setenv("AGENTCOM_SIDECAR_TOKEN", "sidecar-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "api-secret")
    result = await git(["-c", "alias.env=!env", "env"], cwd=tmp_path, env={"EXTRA": "yes"})
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert "sidecar-secret" not in result.stdout and "api-secret" not in result.stdout
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["EXTRA"] == "yes" and env["GIT_CONFIG_NOSYSTEM"] == "1"


async def test_output_is_bounded(tmp_path: Path) -> None:
    """Output beyond the cap is dropped and the result says it was truncated."""
    result = await git(["-c", "alias.big=!head -c 3000000 /dev/zero", "big"], cwd=tmp_path, output_bytes=1000)
    assert len(result.stdout) == 1000 and result.truncated and result.ok


async def test_a_hung_git_is_killed_at_its_timeout(tmp_path: Path) -> None:
    """A command past its timeout is killed with everything it started, and GitError says it timed out."""
    marker = f"{60 + random.randrange(1000)}.{random.randrange(10**6):06d}"  # a sleep nobody else runs
    with pytest.raises(GitError, match="timed out") as caught:
        async with asyncio.timeout(10):
            await git(["-c", f"alias.hang=!sleep {marker}; true", "hang"], cwd=tmp_path, timeout_s=0.5)
    assert caught.value.result.timed_out
    left = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    assert not left


async def test_a_failing_command_raises_with_its_error(tmp_path: Path) -> None:
    """A non-zero exit raises GitError naming the command and git's message; check=False returns it instead."""
    with pytest.raises(GitError, match="not a git repository"):
        await git(["rev-parse", "HEAD"], cwd=tmp_path)
    assert (await git(["rev-parse", "HEAD"], cwd=tmp_path, check=False)).returncode == 128


async def test_stdin_is_written_and_closed_without_blocking_on_output(tmp_path: Path) -> None:
    """Input far beyond a pipe's buffer reaches git while git writes as much back; without input, git reads nothing."""
    data = "".join(random.choice("abc\n") for _ in range(1 << 20))
    echoed = await git(["-c", "alias.echo=!cat", "echo"], cwd=tmp_path, stdin=data.encode(), output_bytes=2 << 20)
    assert echoed.ok and echoed.stdout == data and not echoed.truncated
    hashed = await git(["hash-object", "--stdin"], cwd=tmp_path, stdin=b"hello\n")
    assert hashed.stdout.strip() == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert (await git(["-c", "alias.echo=!cat", "echo"], cwd=tmp_path)).stdout == ""
