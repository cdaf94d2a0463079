"""One way to run git on the sidecar: argument lists, a timeout, bounded output and a clean environment.

The environment is built from nothing: ``PATH``, ``LANG``, an empty ``HOME``-less config (no system or global git
config is read), ``GIT_TERMINAL_PROMPT=0`` so git never waits for a person, and ssh in batch mode. Nothing of the
sidecar's own environment (its token, an API key) reaches git; credentials are added only by the callers that talk
to a remote (:func:`sidecar.git.credentials.credential_env`), and only for that call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GIT_PATH = "/usr/local/bin:/usr/bin:/bin"
OUTPUT_BYTES = 4 * 1024 * 1024
"""Per stream; git output beyond this is dropped (``truncated``)."""
DEFAULT_TIMEOUT_S = 120.0
_CHUNK = 64 * 1024
_KILL_GRACE_S = 2.0


@dataclass(frozen=True)
class GitResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class GitError(Exception):
    """A git command failed (non-zero exit or timeout); the message names the command and its error output."""

    def __init__(self, result: GitResult) -> None:
        what = "timed out" if result.timed_out else f"exited {result.returncode}"
        detail = (result.stderr.strip() or result.stdout.strip())[-1000:]
        super().__init__(f"git {' '.join(result.args[:2])} {what}: {detail}".strip())
        self.result = result


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a git process: a fixed minimum plus ``extra`` (credentials for remote calls)."""
    env = {
        "PATH": GIT_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GCM_INTERACTIVE": "never",
        "GIT_AUTHOR_NAME": "AgentCom",
        "GIT_AUTHOR_EMAIL": "sidecar@agentcom",
        "GIT_COMMITTER_NAME": "AgentCom",
        "GIT_COMMITTER_EMAIL": "sidecar@agentcom",
    }
    env.update(extra or {})
    return env


class GitTimer:
    """Adds up the wall time of the git commands run for one task (``ChangeReport.git_ms``)."""

    def __init__(self) -> None:
        self.ms = 0

    def add(self, result: GitResult) -> None:
        self.ms += result.duration_ms


async def _read(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_CHUNK):
        room = limit - len(kept)
        if len(chunk) > room:
            truncated = True
        kept += chunk[: max(room, 0)]
    return bytes(kept), truncated


async def git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    output_bytes: int = OUTPUT_BYTES,
    timer: GitTimer | None = None,
    stdin: bytes | None = None,
) -> GitResult:
    """Run ``git *args``; never through a shell.

    Args:
        args: The arguments after ``git``.
        cwd: Working directory.
        timeout_s: The whole process group is killed after this long.
        env: Extra environment entries (see :func:`git_env`).
        check: Raise :class:`GitError` when the command fails.
        output_bytes: Per-stream cap.
        timer: Adds this command's wall time to it.
        stdin: Written to the command's standard input, which is then closed (by default it reads nothing).

    Raises:
        GitError: With ``check``, the command exited non-zero or timed out.
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=git_env(env),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    readers = asyncio.gather(
        _read(proc.stdout, output_bytes), _read(proc.stderr, output_bytes), _write(proc.stdin, stdin)
    )
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            (out, cut_out), (err, cut_err), _ = await readers
            await proc.wait()
    except TimeoutError:
        timed_out = True
        _kill(proc.pid)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_KILL_GRACE_S):
                await proc.wait()
        readers.cancel()
        out, err, cut_out, cut_err = b"", b"", False, False
    except BaseException:
        _kill(proc.pid)
        raise
    result = GitResult(
        args=tuple(args),
        returncode=proc.returncode if proc.returncode is not None else -9,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
        duration_ms=int((time.monotonic() - started) * 1000),
        timed_out=timed_out,
        truncated=cut_out or cut_err,
    )
    if timer is not None:
        timer.add(result)
    if check and not result.ok:
        raise GitError(result)
    return result


async def _write(stream: asyncio.StreamWriter | None, data: bytes | None) -> None:
    if stream is None or data is None:
        return
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # git may exit without reading it all
            stream.write(data)
            await stream.drain()
    finally:
        stream.close()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
