"""The head of a repository's default branch as the hub sees it (``git ls-remote``), cached briefly.

Git runs as an argument list (never a shell string), with a timeout, ``GIT_TERMINAL_PROMPT=0`` (an https URL asking
for a password fails instead of waiting), a minimal environment (no credential the hub holds reaches it), bounded
output and a bounded number of runs at once. A repository the hub cannot reach has no head (None): the sidecar
then works from the head it fetched itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MAX_OUTPUT = 64 * 1024
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_ENV_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSH_AUTH_SOCK")


def git_env() -> dict[str, str]:
    """The environment of a git run: what git needs to find itself and ssh, nothing else."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", SSH_ASKPASS="/bin/false", GIT_CONFIG_NOSYSTEM="1")
    env["GIT_SSH_COMMAND"] = "ssh -oBatchMode=yes -oConnectTimeout=10"
    return env


async def ls_remote(url: str, branch: str, timeout_s: float) -> str | None:
    """The commit ``refs/heads/<branch>`` of ``url`` points at, or None (unreachable, no such branch, timeout)."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "ls-remote",
        "--",
        url,
        f"refs/heads/{branch}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=git_env(),
    )
    try:
        async with asyncio.timeout(timeout_s):
            assert proc.stdout is not None
            out = await proc.stdout.read(MAX_OUTPUT)
            if len(out) == MAX_OUTPUT and await proc.stdout.read(1):
                proc.kill()  # more than any one ref takes: not an answer worth reading
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        logger.info("git ls-remote %s timed out after %.0fs", url, timeout_s)
        return None
    if proc.returncode != 0:
        logger.info("git ls-remote %s failed (exit %s)", url, proc.returncode)
        return None
    for line in out.decode("utf-8", "replace").splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}" and _SHA.match(sha):
            return sha
    return None


@dataclass(slots=True)
class _Cached:
    commit: str | None
    at: float


class Heads:
    """Cached heads per (url, branch); at most ``concurrency`` ``git ls-remote`` at once."""

    def __init__(self, ttl_s: float, timeout_s: float, concurrency: int, now: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._gate = asyncio.Semaphore(concurrency)
        self._now = now
        self._cache: dict[tuple[str, str], _Cached] = {}
        self.n_resolved = 0
        self.n_unreachable = 0

    def cached(self, url: str, branch: str) -> str | None:
        """The last head resolved (however old: a stale base is rebased by the sidecar), or None."""
        entry = self._cache.get((url, branch))
        return entry.commit if entry is not None else None

    def stale(self, url: str, branch: str) -> bool:
        entry = self._cache.get((url, branch))
        return entry is None or self._now() - entry.at >= self._ttl_s

    async def resolve(self, url: str, branch: str) -> str | None:
        """Resolve the head now (unless resolved within the TTL) and cache it."""
        if not self.stale(url, branch):
            return self.cached(url, branch)
        async with self._gate:
            if not self.stale(url, branch):
                return self.cached(url, branch)
            commit = await ls_remote(url, branch, self._timeout_s)
        if commit is None:
            self.n_unreachable += 1
        else:
            self.n_resolved += 1
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[(url, branch)] = _Cached(commit, self._now())
        return commit

    def forget(self, url: str, branch: str) -> None:
        self._cache.pop((url, branch), None)
