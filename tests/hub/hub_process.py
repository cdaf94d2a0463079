"""Helpers for tests that run ``python -m hub`` as a real process or give it a real small filesystem."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import SCALE

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Exited:
    code: int
    stdout: str
    stderr: str

    @property
    def message(self) -> str:
        """The one-paragraph error a failed start prints."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("agentcom hub: ")]
        assert len(lines) == 1, self.stderr
        return lines[0]


def hub_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


async def spawn(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "WARNING",
        *args,
        cwd=REPO,
        env=env or hub_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_to_exit(data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 30) -> Exited:
    """Run a hub that is expected to exit by itself; a hub still running after ``timeout_s`` fails the test."""
    proc = await spawn(data_dir, "--port", "0", *args, env=env)
    try:
        async with asyncio.timeout(timeout_s * SCALE):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"the hub did not exit within {timeout_s} s; stderr: {err.decode()[-2000:]}")
    assert proc.returncode is not None
    return Exited(proc.returncode, out.decode(), err.decode())


async def wait_ready(proc: asyncio.subprocess.Process) -> str:
    """The URL a started hub prints once it serves."""
    assert proc.stdout is not None
    async with asyncio.timeout(30 * SCALE):
        while not (line := (await proc.stdout.readline()).decode()).startswith("agentcom hub ready url="):
            assert line, "the hub exited before it was ready"
    return line.split("url=", 1)[1].strip()


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    """SIGTERM, then the exit code and stderr."""
    if proc.returncode is None:
        proc.terminate()
    async with asyncio.timeout(30 * SCALE):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def helpers_of(data_dir: Path) -> list[psutil.Process]:
    """WAL sync helpers still running for a database in ``data_dir`` (their argv names the WAL file)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any("wal_sync_helper" in part for part in cmdline) and any(str(data_dir) in part for part in cmdline):
            found.append(proc)
    return found


@contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """A real, small filesystem mounted at ``path`` (skips the test where this process may not mount)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)
