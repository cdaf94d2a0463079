"""Sandbox uids are reserved across processes, so two sidecars on one host never share a uid (and never kill each
other's commands)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.sandbox.supervised import RlimitsSandbox
from sidecar.sandbox.uids import acquire_uid, held_count, release_uid

ROOT = Path(__file__).resolve().parents[3]
HOLD_ONE_UID = """
import sys
from pathlib import Path
from sidecar.sandbox.uids import acquire_uid
print(acquire_uid(int(sys.argv[1]), Path(sys.argv[2])), flush=True)
sys.stdin.read()
"""
LONG_RUN = """
import asyncio, sys
from pathlib import Path
from sidecar.sandbox.supervised import RlimitsSandbox

async def main():
    sandbox = RlimitsSandbox(uid_base=int(sys.argv[1]), kill_grace_s=1.0, uid_lock_dir=Path(sys.argv[2]))
    async def show(stream, text):
        print(text, end="", flush=True)
    script = "id -u; while [ ! -e stop ]; do sleep 0.05; done; echo stopped"
    done = await sandbox.run(["/bin/sh", "-c", script], Path(sys.argv[3]), timeout_s=60, on_output=show)
    print(f"returncode {done.returncode}", flush=True)

asyncio.run(main())
"""


def private_uid_base() -> int:
    return 200_000 + 1000 * random.randrange(10_000)


@pytest.fixture
def workspaces() -> Iterator[list[Path]]:
    # Not tmp_path: its parents are mode 0700, which the sandbox uid cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="agentcom-uids-test-"))
    root.chmod(0o755)
    spaces = [root / "first", root / "second"]
    for space in spaces:
        space.mkdir()
    yield spaces
    shutil.rmtree(root, ignore_errors=True)


def test_a_uid_held_by_another_process_is_skipped(tmp_path: Path) -> None:
    """While another process holds a uid, this one gets the next; once that process is gone, the uid is free."""
    base, lock_dir = private_uid_base(), tmp_path / "uids"
    other = subprocess.Popen([sys.executable, "-c", HOLD_ONE_UID, str(base), str(lock_dir)], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert other.stdin is not None and other.stdout is not None
    try:
        assert other.stdout.readline().strip() == str(base)
        mine = acquire_uid(base, lock_dir)
        release_uid(mine)
    finally:
        other.stdin.close()
        other.wait(timeout=30)
        other.stdout.close()
    assert mine == base + 1
    again = acquire_uid(base, lock_dir)
    release_uid(again)
    assert again == base
    assert held_count() == 0


def test_a_lock_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    """A lock directory writable by group or others is refused: anyone could take the uids or swap a lock file."""
    lock_dir = tmp_path / "uids"
    lock_dir.mkdir()
    lock_dir.chmod(0o777)
    with pytest.raises(PermissionError, match="not be writable by group or others"):
        acquire_uid(private_uid_base(), lock_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs get a uid of their own only when the sidecar is root")
async def test_two_sidecars_on_one_range_do_not_kill_each_others_commands(tmp_path: Path, workspaces) -> None:
    """A run in another process keeps running while this process runs (and cleans up) a command on the same range."""
    base, lock_dir = private_uid_base(), tmp_path / "uids"
    first, second = workspaces
    other = await asyncio.create_subprocess_exec(sys.executable, "-c", LONG_RUN, str(base), str(lock_dir), str(first),
                                                 cwd=ROOT, stdout=asyncio.subprocess.PIPE)  # fmt: skip
    assert other.stdout is not None
    try:
        other_uid = int(await asyncio.wait_for(other.stdout.readline(), 30))
        sandbox = RlimitsSandbox(uid_base=base, kill_grace_s=1.0, uid_lock_dir=lock_dir)
        done = await sandbox.run(["/bin/sh", "-c", "id -u"], second, timeout_s=30)
        (first / "stop").touch()
        rest = (await asyncio.wait_for(other.stdout.read(), 30)).decode()
    finally:
        if other.returncode is None:
            other.kill()
        await other.wait()
    assert done.returncode == 0 and int(done.stdout) != other_uid
    assert rest.split() == ["stopped", "returncode", "0"]
