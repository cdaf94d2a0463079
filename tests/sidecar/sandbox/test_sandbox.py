"""Sandbox levels confine files, network, processes, environment and output; tools' paths stay in the workspace."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sidecar.sandbox import landlock_rules
from sidecar.sandbox.base import Limits, SandboxLevel, SandboxUnavailable, SandboxViolation, resolve_in_workspace
from sidecar.sandbox.probe import probe_sandbox
from sidecar.sandbox.wrapped import WrappedSandbox

TEST_UID_BASE = 61000
"""Below the default ranges (100000 on) so a sidecar running on the same host is never swept by these tests' checks."""
IS_ROOT = os.geteuid() == 0
HAS_BWRAP = shutil.which("bwrap") is not None
HAS_LANDLOCK = landlock_rules.abi_version() >= 1

ALL_LEVELS = [
    pytest.param(SandboxLevel.BWRAP, marks=pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap not installed")),
    pytest.param(SandboxLevel.LANDLOCK, marks=pytest.mark.skipif(not HAS_LANDLOCK, reason="kernel has no Landlock")),
    SandboxLevel.RLIMITS,
]
CONFINING_LEVELS = ALL_LEVELS[:2]
"""Levels that confine the file system and the network; rlimits-only does neither."""


async def _make_sandbox(level: SandboxLevel) -> WrappedSandbox:
    try:
        return await probe_sandbox(level, uid_base=TEST_UID_BASE, kill_grace_s=1.0)
    except SandboxUnavailable as exc:
        pytest.skip(f"{level} does not work here: {exc}")


@pytest.fixture(params=ALL_LEVELS)
async def sandbox(request: pytest.FixtureRequest) -> WrappedSandbox:
    return await _make_sandbox(request.param)


@pytest.fixture(params=CONFINING_LEVELS)
async def confining_sandbox(request: pytest.FixtureRequest) -> WrappedSandbox:
    return await _make_sandbox(request.param)


def _sandbox_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if uids is not None and TEST_UID_BASE <= uids.real < TEST_UID_BASE + 1000:
            found.append(proc)
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    yield
    if not IS_ROOT:
        return
    deadline = time.monotonic() + 2.0
    while (left := _sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in left:
        proc.kill()
    assert not left, f"sandbox processes left behind: {left}"


@pytest.fixture
def area() -> Iterator[Path]:
    # Not tmp_path: its parents are mode 0700, which the sandbox uid of the landlock/rlimits levels cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="agentcom-sandbox-test-"))
    root.chmod(0o755)
    (root / "ws").mkdir()
    (root / "outside").mkdir(mode=0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ws(area: Path) -> Path:
    return area / "ws"


def _py(code: str) -> list[str]:
    return ["python3", "-c", code]


# --- resolve_in_workspace -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", ["a.txt", "sub/dir/b.txt", "sub/../c.txt", ".", ""])
def test_resolve_accepts_paths_inside(tmp_path: Path, rel: str) -> None:
    """Relative paths that stay inside the workspace resolve to a path under it."""
    resolved = resolve_in_workspace(tmp_path, rel)
    assert resolved == tmp_path.resolve() or tmp_path.resolve() in resolved.parents


def test_resolve_accepts_absolute_path_inside(tmp_path: Path) -> None:
    """An absolute path inside the workspace is accepted as is."""
    assert resolve_in_workspace(tmp_path, str(tmp_path / "x" / "y")) == tmp_path.resolve() / "x" / "y"


@pytest.mark.parametrize("rel", ["..", "../x", "a/../../x", "/etc/passwd", "/"])
def test_resolve_refuses_escapes(tmp_path: Path, rel: str) -> None:
    """``..`` escapes and absolute paths outside the workspace raise SandboxViolation."""
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(SandboxViolation):
        resolve_in_workspace(ws, rel)


def test_resolve_refuses_symlink_escape(tmp_path: Path) -> None:
    """A symlink inside the workspace that leads outside is refused, one that stays inside is followed."""
    ws = tmp_path / "ws"
    (ws / "real").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("s")
    (ws / "out").symlink_to(tmp_path)
    (ws / "in").symlink_to(ws / "real")
    (ws / "loop").symlink_to(ws / "loop")
    for rel in ("out", "out/secret.txt", "loop/x"):
        with pytest.raises(SandboxViolation):
            resolve_in_workspace(ws, rel)
    assert resolve_in_workspace(ws, "in/f") == (ws / "real" / "f").resolve()


# --- probing ------------------------------------------------------------------------------------------------------


async def test_probe_picks_strongest_working_level() -> None:
    """Without a preference the probe returns bwrap if it works, else landlock, else rlimits."""
    sandbox = await probe_sandbox(uid_base=TEST_UID_BASE)
    expected = SandboxLevel.BWRAP if HAS_BWRAP else SandboxLevel.LANDLOCK if HAS_LANDLOCK else SandboxLevel.RLIMITS
    assert sandbox.level == expected
    assert sandbox.describe().startswith(str(expected))


@pytest.mark.skipif(not HAS_LANDLOCK, reason="kernel has no Landlock")
async def test_probe_falls_back_when_bwrap_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With bwrap off PATH, forcing bwrap raises a clear error and the default probe falls back to landlock."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="bwrap.*not installed"):
        await probe_sandbox(SandboxLevel.BWRAP, uid_base=TEST_UID_BASE)
    assert (await probe_sandbox(uid_base=TEST_UID_BASE)).level == SandboxLevel.LANDLOCK


@pytest.mark.skipif(not HAS_LANDLOCK, reason="kernel has no Landlock")
async def test_probe_falls_back_when_bwrap_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bwrap that is installed but cannot create namespaces fails the probe, which then picks landlock."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    for tool in ("prlimit", "setpriv"):
        if real := shutil.which(tool):
            (tmp_path / tool).symlink_to(real)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        await probe_sandbox(SandboxLevel.BWRAP, uid_base=TEST_UID_BASE)
    assert (await probe_sandbox(uid_base=TEST_UID_BASE)).level == SandboxLevel.LANDLOCK


# --- file system and network --------------------------------------------------------------------------------------


async def test_cannot_read_secret_outside(sandbox: WrappedSandbox, area: Path, ws: Path) -> None:
    """A mode-600 file outside the workspace cannot be read by the command."""
    if not sandbox.drops_uid and sandbox.level == SandboxLevel.RLIMITS:
        pytest.skip("rlimits-only without root cannot drop to another uid, so nothing hides the file")
    secret = area / "outside" / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    secret.chmod(0o600)
    done = await sandbox.run(["cat", str(secret)], ws, timeout_s=10)
    assert done.returncode != 0
    assert "TOP-SECRET-VALUE" not in done.stdout


async def test_cannot_read_world_readable_file_outside(confining_sandbox: WrappedSandbox, area: Path, ws: Path) -> None:
    """Confining levels hide even a world-readable file outside the allow-list."""
    public = area / "outside" / "public.txt"
    public.write_text("NOT-FOR-SANDBOX")
    public.chmod(0o644)
    done = await confining_sandbox.run(["cat", str(public)], ws, timeout_s=10)
    assert done.returncode != 0
    assert "NOT-FOR-SANDBOX" not in done.stdout


async def test_cannot_write_outside(confining_sandbox: WrappedSandbox, area: Path, ws: Path) -> None:
    """Writes to a world-writable directory outside the workspace fail, writes inside succeed."""
    outside = area / "outside"
    outside.chmod(0o777)
    script = f"echo x > {outside}/pwned.txt; echo inside > {ws}/ok.txt"
    done = await confining_sandbox.run(["sh", "-c", script], ws, timeout_s=10)
    assert not (outside / "pwned.txt").exists()
    assert (ws / "ok.txt").read_text() == "inside\n", done


async def test_files_written_by_sidecar_stay_writable(sandbox: WrappedSandbox, ws: Path) -> None:
    """Files and folders the sidecar (root) created in the workspace can be changed by the command."""
    (ws / "notes.txt").write_text("from sidecar\n")
    (ws / "sub").mkdir()
    done = await sandbox.run(["sh", "-c", "echo more >> notes.txt && echo new > sub/f.txt"], ws, timeout_s=10)
    assert done.returncode == 0, done
    assert (ws / "notes.txt").read_text() == "from sidecar\nmore\n"
    assert (ws / "sub" / "f.txt").exists()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def _connect_script(port: int) -> list[str]:
    return _py(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')")


async def test_no_network_by_default(confining_sandbox: WrappedSandbox, ws: Path, listener: socket.socket) -> None:
    """A TCP connect to a listener on the host's loopback fails from inside the sandbox."""
    done = await confining_sandbox.run(_connect_script(listener.getsockname()[1]), ws, timeout_s=10)
    assert done.returncode != 0
    assert "CONNECTED" not in done.stdout
    with pytest.raises(BlockingIOError):
        listener.accept()


async def test_network_when_asked(confining_sandbox: WrappedSandbox, ws: Path, listener: socket.socket) -> None:
    """With ``network=True`` the same connect succeeds."""
    done = await confining_sandbox.run(_connect_script(listener.getsockname()[1]), ws, timeout_s=10, network=True)
    assert done.returncode == 0, done
    assert "CONNECTED" in done.stdout


# --- processes ----------------------------------------------------------------------------------------------------


def _processes_with(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if token in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


async def test_timeout_kills_setsid_escape(sandbox: WrappedSandbox, ws: Path) -> None:
    """After a timeout no process of the run survives, not even one that called setsid or double-forked."""
    token = f"{time.time_ns() % 10**6 + 400}.5"
    script = f"setsid sleep {token} & (sleep {token} &) ; sleep {token}"
    done = await sandbox.run(["sh", "-c", script], ws, timeout_s=1.0)
    assert done.timed_out
    assert done.returncode == -9
    assert done.duration_ms < 4000
    deadline = time.monotonic() + 1.0
    while (left := _processes_with(token)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for proc in left:
        proc.kill()
    assert not left


async def test_cancelled_run_kills_command(sandbox: WrappedSandbox, ws: Path) -> None:
    """Cancelling the awaiting task kills the command and everything it started."""
    token = f"{time.time_ns() % 10**6 + 400}.75"
    run = asyncio.ensure_future(sandbox.run(["sh", "-c", f"setsid sleep {token} & sleep {token}"], ws, timeout_s=30))
    deadline = time.monotonic() + 5.0
    while len(_processes_with(token)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    deadline = time.monotonic() + 1.0
    while (left := _processes_with(token)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not left


async def test_background_children_die_with_command(sandbox: WrappedSandbox, ws: Path) -> None:
    """A background child is killed when the command exits, and the run does not wait for it."""
    token = f"{time.time_ns() % 10**6 + 400}.25"
    done = await sandbox.run(["sh", "-c", f"setsid sleep {token} > /dev/null 2>&1 & echo started"], ws, timeout_s=10)
    assert done.returncode == 0 and not done.timed_out
    assert done.duration_ms < 3000
    deadline = time.monotonic() + 1.0
    while (left := _processes_with(token)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not left


FORK_PROBE = """
import os, time
children = []
try:
    for _ in range(300):
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
print(len(children))
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


async def test_fork_bomb_is_bounded(sandbox: WrappedSandbox, ws: Path) -> None:
    """A command trying to fork 300 children is stopped near the nproc limit (64)."""
    done = await sandbox.run(_py(FORK_PROBE), ws, timeout_s=20)
    assert done.returncode == 0, done
    assert int(done.stdout) < 100


async def test_cpu_limit(sandbox: WrappedSandbox, ws: Path) -> None:
    """A busy loop is stopped by SIGXCPU when it uses up its CPU seconds."""
    done = await sandbox.run(_py("while True: pass"), ws, timeout_s=10, limits=Limits(cpu_s=1))
    assert done.returncode == -24, done
    assert not done.timed_out


async def test_missing_binary_is_reported(sandbox: WrappedSandbox, ws: Path) -> None:
    """A command that does not exist gives returncode 127 and a message, not an exception."""
    done = await sandbox.run(["no-such-command-agentcom"], ws, timeout_s=10)
    assert done.returncode == 127
    assert "no-such-command-agentcom" in done.stderr


async def test_exit_code_and_cwd(sandbox: WrappedSandbox, ws: Path) -> None:
    """The command runs in the given cwd inside the workspace and its exit code is reported."""
    (ws / "sub").mkdir()
    done = await sandbox.run(["sh", "-c", "pwd; exit 3"], ws, cwd=Path("sub"), timeout_s=10)
    assert done.returncode == 3
    assert done.stdout.strip() == str((ws / "sub").resolve())
    with pytest.raises(SandboxViolation):
        await sandbox.run(["true"], ws, cwd=Path(".."), timeout_s=10)


# --- environment and output ---------------------------------------------------------------------------------------


async def test_environment_is_scrubbed(sandbox: WrappedSandbox, ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the sidecar's environment reaches the command, only the minimum and explicit entries."""
    monkeypatch.setenv("AGENTCOM_FAKE_SECRET", "sk-should-not-leak")
    done = await sandbox.run(["env"], ws, timeout_s=10, env={"EXTRA_SETTING": "yes"})
    assert done.returncode == 0, done
    assert "sk-should-not-leak" not in done.stdout
    assert "AGENTCOM_FAKE_SECRET" not in done.stdout
    assert "EXTRA_SETTING=yes" in done.stdout.splitlines()
    assert f"HOME={ws.resolve()}" in done.stdout.splitlines()


async def test_environment_cannot_inject_options(sandbox: WrappedSandbox, ws: Path) -> None:
    """Environment entries with NUL or ``=`` in the name are refused before anything runs."""
    for bad in ({"X": "a\0--bind\0/\0/"}, {"A=B": "c"}, {"": "x"}):
        with pytest.raises(ValueError):
            await sandbox.run(["true"], ws, timeout_s=10, env=bad)


async def test_output_is_capped_keeping_head_and_tail(sandbox: WrappedSandbox, ws: Path) -> None:
    """Output beyond ``output_bytes`` per stream keeps its head and tail around a note of the bytes cut, ``truncated``
    is set and the command still finishes."""
    code = ("import sys; sys.stdout.write('a' * 800 + 'x' * 500000 + 'z' * 800); "
            "sys.stderr.write('b' * 800 + 'e' * 500000 + 'y' * 800)")  # fmt: skip
    done = await sandbox.run(_py(code), ws, timeout_s=10, limits=Limits(output_bytes=1000))
    assert done.returncode == 0
    assert done.stdout == "a" * 500 + "\n[... 500600 bytes cut ...]\n" + "z" * 500
    assert done.stderr == "b" * 500 + "\n[... 500600 bytes cut ...]\n" + "y" * 500
    assert done.truncated


async def test_output_within_the_cap_is_whole_and_streamed_whole(sandbox: WrappedSandbox, ws: Path) -> None:
    """Output of exactly ``output_bytes`` is kept and streamed as it is, with no marker and ``truncated`` unset."""
    streamed: list[str] = []

    async def on_output(stream: str, text: str) -> None:
        streamed.append(text)

    code = "import sys; sys.stdout.write('a' * 600 + 'z' * 400)"
    done = await sandbox.run(_py(code), ws, timeout_s=10, limits=Limits(output_bytes=1000), on_output=on_output)
    assert done.stdout == "a" * 600 + "z" * 400 == "".join(streamed)
    assert not done.truncated


async def test_output_is_streamed(sandbox: WrappedSandbox, ws: Path) -> None:
    """``on_output`` receives output while the command is still running, and all of it."""
    loop = asyncio.get_running_loop()
    chunks: list[tuple[float, str, str]] = []

    async def on_output(stream: str, text: str) -> None:
        chunks.append((loop.time(), stream, text))

    code = "import sys, time; print('first', flush=True); time.sleep(0.5); print('second'); sys.stderr.write('err\\n')"
    done = await sandbox.run(_py(code), ws, timeout_s=10, on_output=on_output)
    finished = loop.time()
    assert "".join(text for _, stream, text in chunks if stream == "stdout") == done.stdout == "first\nsecond\n"
    assert "".join(text for _, stream, text in chunks if stream == "stderr") == done.stderr == "err\n"
    assert chunks[0][2] == "first\n"
    assert finished - chunks[0][0] > 0.3


async def test_failing_output_callback_does_not_break_run(sandbox: WrappedSandbox, ws: Path) -> None:
    """If ``on_output`` raises, streaming stops but the command still completes with its full output."""

    async def on_output(stream: str, text: str) -> None:
        raise ConnectionError("hub went away")

    code = "print('a' * 100000)"
    done = await sandbox.run(_py(code), ws, timeout_s=10, on_output=on_output)
    assert done.returncode == 0
    assert done.stdout == "a" * 100000 + "\n"
