"""Shared machinery of the sandbox levels: workspace ownership, environment, limits and the process run.

Each level only decides the wrapper command line (bwrap or the supervisor); :class:`WrappedSandbox` does the rest:
the run's uid (``uids.py``), streaming with a per-stream cap that keeps head and tail, the wall-clock timeout
(SIGTERM to the wrapper, SIGKILL to its process group after a grace period) and reading what is left with a
deadline, so a pipe held open never hangs the run.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import resource
import signal
import stat
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

from sidecar.sandbox.base import Completed, Limits, OutputCallback, SandboxLevel, resolve_in_workspace
from sidecar.sandbox.output import HeadTail
from sidecar.sandbox.uids import (
    DEFAULT_UID_BASE,
    UID_LOCK_DIR,
    UID_SLOTS,
    acquire_uid,
    held_count,
    release_uid_when_empty,
    tasks_of_uid,
)

logger = logging.getLogger(__name__)

COMMAND_PATH = "/usr/bin:/bin:/usr/local/bin"
"""``/usr/bin`` first: Debian's ``python3`` there is world-readable, unlike a Python under root's home."""
_WRAPPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_READ_CHUNK_BYTES = 64 * 1024
_DRAIN_TIMEOUT_S = 2.0


def chown_workspace(workspace: Path, uid: int, uid_base: int) -> None:
    """Give every entry of ``workspace`` to ``uid`` so the command can change what the sidecar or an earlier run wrote.

    Walks with directory fds and never follows symlinks, so a concurrent command swapping a directory for a symlink
    cannot redirect the chown outside the workspace.
    """
    os.chown(workspace, uid, uid, follow_symlinks=False)
    for _, dirnames, filenames, dir_fd in os.fwalk(workspace, follow_symlinks=False):
        for name in dirnames + filenames:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if info.st_uid == uid and info.st_gid == uid:
                    continue
                # A hard link to a file that belongs to neither the sidecar's runs nor a sandbox uid may be a link to
                # something outside; chowning it would hand that file to the sandbox.
                foreign = not (uid_base <= info.st_uid < uid_base + UID_SLOTS)
                if stat.S_ISREG(info.st_mode) and info.st_nlink > 1 and foreign:
                    continue
                os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def command_env(workspace: Path, extra: dict[str, str] | None) -> dict[str, str]:
    """The command's whole environment: a fixed minimum plus the caller's explicit entries, nothing inherited.

    Raises:
        ValueError: A name is empty or has ``=`` or NUL, or a value has NUL (bwrap reads NUL-separated options).
    """
    # No bytecode: a task's tree is committed as it is, and __pycache__ would go into the change (and a stale .pyc
    # of a file rewritten in the same second can shadow it in the fresh tree verification runs on).
    env = {"PATH": COMMAND_PATH, "HOME": str(workspace), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    for key, value in (extra or {}).items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"invalid environment entry {key!r}")
        env[key] = value
    return env


def rlimit_pairs(limits: Limits, uid: int | None) -> dict[str, tuple[int, int]]:
    """(soft, hard) per ``resource.RLIMIT_*`` name, clamped to what we may set.

    Without a dedicated uid, RLIMIT_NPROC counts every task of our own uid, so the allowance is added to that count.
    The CPU hard limit is a second above the soft one so the command first gets SIGXCPU (-24), not a bare SIGKILL.
    """
    nproc = limits.nproc if uid is not None else limits.nproc + tasks_of_uid(os.getuid())
    wanted = {
        "RLIMIT_NPROC": (nproc, nproc),
        "RLIMIT_AS": (limits.memory_bytes, limits.memory_bytes),
        "RLIMIT_FSIZE": (limits.file_size_bytes, limits.file_size_bytes),
        "RLIMIT_CPU": (limits.cpu_s, limits.cpu_s + 1),
        "RLIMIT_CORE": (0, 0),
    }
    pairs = {}
    for name, (soft, hard) in wanted.items():
        _, current_hard = resource.getrlimit(getattr(resource, name))
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
        pairs[name] = (min(soft, hard), hard)
    return pairs


@dataclass(frozen=True)
class Wrapper:
    """How a level starts one run: the wrapper's argv, what to write to its stdin, file descriptors it inherits."""

    argv: list[str]
    stdin_data: bytes | None = None
    pass_fds: tuple[int, ...] = ()


@dataclass(frozen=True)
class RunRequest:
    """One run, validated: absolute resolved paths, complete environment, the uid to drop to (None: keep ours)."""

    argv: list[str]
    workspace: Path
    cwd: Path
    limits: Limits
    network: bool
    env: dict[str, str]
    uid: int | None


class _Capture:
    """Keeps the head and the tail of one stream (``HeadTail``) and forwards its first bytes as text while they
    arrive."""

    def __init__(self, name: str, cap_bytes: int, on_output: OutputCallback | None) -> None:
        self.name = name
        self.on_output = on_output
        self.kept = HeadTail(cap_bytes)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def truncated(self) -> bool:
        return self.kept.cut > 0

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK_BYTES):
            if fresh := self.kept.add(chunk):
                await self._emit(self._decoder.decode(fresh))
        await self._emit(self._decoder.decode(b"", final=True))

    async def _emit(self, text: str) -> None:
        if not text or self.on_output is None:
            return
        try:
            await self.on_output(self.name, text)
        except Exception:
            # The pipe must keep being read or the command blocks on a full pipe until its timeout.
            logger.exception("sandbox: on_output failed; no more output will be streamed for this run")
            self.on_output = None

    def text(self) -> str:
        return self.kept.text()


async def _stop(proc: asyncio.subprocess.Process, kill_grace_s: float) -> None:
    """SIGTERM the wrapper (it kills the whole tree), then SIGKILL its process group if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), kill_grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def run_process(
    wrapper: Wrapper,
    *,
    timeout_s: float,
    output_bytes: int,
    on_output: OutputCallback | None,
    kill_grace_s: float,
) -> Completed:
    """Run ``wrapper`` to completion or timeout; never raises for the command's own failure."""
    started = time.monotonic()
    stdin_data = wrapper.stdin_data
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *wrapper.argv,
            stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=_WRAPPER_ENV,
            cwd="/",
            pass_fds=wrapper.pass_fds,
        )
    )
    try:
        proc = await asyncio.shield(spawn)
    except OSError as exc:
        return Completed(127, "", f"sandbox: cannot start {wrapper.argv[0]}: {exc}\n", False, 0)
    except asyncio.CancelledError:
        # Cancelled while the process was being started: it may be running already, so stop it before giving up.
        with contextlib.suppress(OSError, asyncio.CancelledError):
            started_proc = await spawn
            await _stop(started_proc, kill_grace_s)
            await started_proc.communicate()
        raise
    assert proc.stdout is not None and proc.stderr is not None
    out = _Capture("stdout", output_bytes, on_output)
    err = _Capture("stderr", output_bytes, on_output)
    timed_out = False
    try:
        async with asyncio.TaskGroup() as readers:
            pumps = [readers.create_task(out.pump(proc.stdout)), readers.create_task(err.pump(proc.stderr))]
            if stdin_data is not None and proc.stdin is not None:
                with contextlib.suppress(ConnectionError):
                    proc.stdin.write(stdin_data)
                    await proc.stdin.drain()
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                timed_out = True
                await _stop(proc, kill_grace_s)
            # Every process that could hold the pipes is dead by now; the deadline is a guard, not the expected path.
            await asyncio.wait(pumps, timeout=_DRAIN_TIMEOUT_S)
            for pump in pumps:
                pump.cancel()
    finally:
        if proc.returncode is None:
            await _stop(proc, kill_grace_s)
    returncode = -signal.SIGKILL if timed_out else proc.returncode
    assert returncode is not None
    return Completed(
        returncode=returncode,
        stdout=out.text(),
        stderr=err.text(),
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
        truncated=out.truncated or err.truncated,
    )


class WrappedSandbox(ABC):
    """Base of every level: validates the run, owns the uid slot, delegates the command line to ``_command``.

    Runs in one workspace should not overlap: each run hands the whole workspace to its own uid first.
    """

    level: SandboxLevel

    def __init__(
        self, *, uid_base: int = DEFAULT_UID_BASE, kill_grace_s: float = 3.0, uid_lock_dir: Path = UID_LOCK_DIR
    ) -> None:
        self.uid_base = uid_base
        self.uid_lock_dir = uid_lock_dir
        self.kill_grace_s = kill_grace_s
        self.drops_uid = os.geteuid() == 0
        """True when each run gets its own unprivileged uid (only possible as root)."""
        self.runs = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} level={self.level} runs={self.runs} running={held_count()}>"

    @abstractmethod
    def describe(self) -> str:
        """One line saying what this level confines, for logs and the dashboard."""

    @abstractmethod
    def _command(self, request: RunRequest) -> contextlib.AbstractContextManager[Wrapper]:
        """Yield how to start the run; clean up per-run state on exit."""

    def _returncode(self, raw: int) -> int:
        return raw

    async def run(
        self,
        argv: list[str],
        workspace: Path,
        *,
        cwd: Path | None = None,
        timeout_s: float = 60.0,
        limits: Limits | None = None,
        network: bool = False,
        env: dict[str, str] | None = None,
        on_output: OutputCallback | None = None,
    ) -> Completed:
        """See :class:`sidecar.sandbox.base.Sandbox`. ``cwd`` may be relative to ``workspace`` but must stay inside it.

        Raises:
            ValueError: ``argv`` is empty or has NUL, or ``env`` has an invalid entry.
            SandboxViolation: ``cwd`` is outside the workspace.
            FileNotFoundError: ``workspace`` does not exist.
        """
        if not argv or any("\0" in arg for arg in argv):
            raise ValueError(f"argv must be non-empty and free of NUL: {argv!r}")
        limits = limits or Limits()
        workspace = workspace.resolve(strict=True)
        run_cwd = workspace if cwd is None else resolve_in_workspace(workspace, str(cwd))
        full_env = command_env(workspace, env)
        uid = acquire_uid(self.uid_base, self.uid_lock_dir) if self.drops_uid else None
        self.runs += 1
        try:
            if uid is not None:
                await asyncio.to_thread(chown_workspace, workspace, uid, self.uid_base)
            request = RunRequest(list(argv), workspace, run_cwd, limits, network, full_env, uid)
            with self._command(request) as wrapper:
                completed = await run_process(
                    wrapper,
                    timeout_s=timeout_s,
                    output_bytes=limits.output_bytes,
                    on_output=on_output,
                    kill_grace_s=self.kill_grace_s,
                )
        finally:
            if uid is not None:
                # Shielded: even a cancelled run must not hand its uid to the next one while processes remain.
                await asyncio.shield(release_uid_when_empty(uid))
        if completed.timed_out:
            return completed
        return replace(completed, returncode=self._returncode(completed.returncode))
