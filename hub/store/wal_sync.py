"""Durability of each commit, made by a helper process that fdatasyncs the WAL file while the loop waits for one byte.

With ``synchronous=FULL`` the hub's commits are durable once the WAL file is synced. Letting SQLite do that inside
``COMMIT`` needs a thread (the fsync blocks), and a thread must take the GIL from the busy event loop to start and
again to hand the result back: under load that hand-over took ~1.4 ms per commit, twice the fsync itself. So the
writer commits with SQLite's own syncing off (the frames are written, not yet synced) and asks this helper, a
process with its own interpreter, to ``fdatasync`` the WAL: one byte down a pipe, one byte back, no thread and no
GIL in between. Nobody is answered before the byte comes back, so a commit is as durable as under FULL (the WAL
synced at every commit); checkpoints keep their own syncs (see :class:`hub.store.sqlite.SqliteStore`).

Protocol on the helper's stdin/stdout: it sends ``r`` once the WAL file is open, then answers each ``s`` with ``k``
after a successful ``fdatasync``, ``n`` after one that failed for lack of space (ENOSPC, EDQUOT) or ``e`` after one
that failed otherwise. It exits when its stdin closes (the hub went away).
"""

from __future__ import annotations

import asyncio
import errno
import sys
from pathlib import Path

HELPER = Path(__file__).with_name("wal_sync_helper.py")


class WalSyncError(Exception):
    """The helper did not start or is gone (the store then syncs on its own thread)."""


class WalSyncer:
    """The hub's end of the helper process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.n_syncs = 0

    @classmethod
    async def start(cls, wal: Path) -> WalSyncer:
        proc = await asyncio.create_subprocess_exec(  # -S -I: it needs os and sys only, so it starts in ~12 ms
            sys.executable,
            "-S",
            "-I",
            str(HELPER),
            str(wal),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        syncer = cls(proc)
        try:
            ready = await asyncio.wait_for(syncer._reply(), 30)
        except (WalSyncError, TimeoutError) as exc:
            await syncer.close()
            raise WalSyncError(f"the WAL sync helper did not start: {exc}") from None
        except BaseException:  # cancelled (a stop during the hub's start): no helper outlives it
            await syncer.close()
            raise
        if ready != b"r":
            await syncer.close()
            raise WalSyncError(f"the WAL sync helper could not open {wal}")
        return syncer

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def _reply(self) -> bytes:
        assert self._proc.stdout is not None
        try:
            return await self._proc.stdout.readexactly(1)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WalSyncError(f"the WAL sync helper exited (code {self._proc.returncode})") from exc

    async def sync(self) -> None:
        """Return once everything written to the WAL so far is on disk."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(b"s")
        except (ConnectionError, RuntimeError) as exc:
            raise WalSyncError(f"the WAL sync helper is gone: {exc}") from exc
        reply = await self._reply()
        if reply != b"k":
            # Not a WalSyncError, and not retried even when the disk is full: after a failed fsync the kernel may
            # have dropped the dirty pages, and every later WAL frame's checksum chains on the lost ones, so a
            # retry that succeeds proves nothing. The store treats this as a failed commit (the hub stops). A full
            # disk usually shows earlier, as SQLITE_FULL from the write itself, which the store does wait out.
            if reply == b"n":
                raise OSError(errno.ENOSPC, "fdatasync of the WAL failed: no space left on the device")
            raise OSError("fdatasync of the WAL failed")
        self.n_syncs += 1

    async def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
