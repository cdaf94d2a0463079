"""A bare mirror per repository under ``mirror_root``, fetched outside the sandbox with the sidecar's credentials.

Layout of a mirror: the remote's branches are kept as ``refs/remotes/origin/*`` (``fetch --prune`` keeps them
exact), the tasks' branches as ``refs/heads/agentcom/*``, so a fetch never prunes a task's work and a push goes
from the mirror as from any clone. A mirror is made once (``init --bare`` + the first fetch) and fetched again for
each task; one lock per mirror serialises fetches, imports and rebases on it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path

from shared.repos import RepoCheckout
from sidecar.git.credentials import credential_env
from sidecar.git.run import GitError, GitTimer, git
from sidecar.settings import GitSettings

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
REMOTE_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"


class RepoUnreachable(Exception):
    """The repository could not be fetched (the task fails with reason ``repo_unreachable``)."""


def check_url(url: str) -> None:
    """Refuse a URL git would read as an option."""
    if url.startswith("-"):
        raise RepoUnreachable(f"refusing repository URL {url!r}: it starts with '-'")


class Mirrors:
    """The mirror cache of this sidecar."""

    def __init__(self, root: Path, settings: GitSettings) -> None:
        self.root = root
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}
        self._held: dict[str, set[str]] = {}
        self.fetches = 0

    def __repr__(self) -> str:
        return f"<Mirrors root={self.root} fetches={self.fetches}>"

    def path(self, name: str) -> Path:
        """The mirror directory of repository ``name``."""
        return self.root / f"{_UNSAFE.sub('_', name)[:100].lstrip('.') or 'repo'}.git"

    def lock(self, name: str) -> asyncio.Lock:
        """The lock of ``name``'s mirror: hold it while changing the mirror."""
        return self.lock_at(self.path(name))

    def lock_at(self, mirror: Path) -> asyncio.Lock:
        """The lock of the mirror directory ``mirror`` (one of :meth:`existing`)."""
        return self._locks.setdefault(mirror.name, asyncio.Lock())

    def existing(self) -> list[Path]:
        """The mirrors made so far, by name."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.git") if p.is_dir() and not p.is_symlink() and (p / "HEAD").exists())

    def hold(self, name: str, branch: str) -> None:
        """Mark ``branch`` of ``name``'s mirror as in use by a running task: a sweep never deletes it."""
        self._held.setdefault(self.path(name).name, set()).add(branch)

    def release(self, name: str, branch: str) -> None:
        """The task on ``branch`` ended."""
        held = self._held.get(self.path(name).name)
        if held is not None:
            held.discard(branch)

    def held(self, mirror: Path) -> frozenset[str]:
        """The branches of the mirror directory ``mirror`` in use by running tasks."""
        return frozenset(self._held.get(mirror.name, ()))

    def remote_env(self) -> dict[str, str]:
        """Credentials for a call to the remote."""
        return credential_env(self.settings, self.root)

    async def sync(self, checkout: RepoCheckout, timer: GitTimer | None = None) -> Path:
        """Make (once) and fetch ``checkout``'s mirror; returns its path. Take :meth:`lock` first.

        Raises:
            RepoUnreachable: the remote could not be fetched.
        """
        check_url(checkout.url)
        path = self.path(checkout.name)
        fresh = not (path / "HEAD").exists()
        if fresh:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.rmtree(path, ignore_errors=True)
            await git(["init", "-q", "--bare", str(path)], timer=timer)
            await git(["config", "remote.origin.fetch", REMOTE_REFSPEC], cwd=path, timer=timer)
            await git(["config", "gc.auto", "0"], cwd=path, timer=timer)
        # The URL is set on every fetch: the registry may have moved the repository.
        await git(["config", "remote.origin.url", checkout.url], cwd=path, timer=timer)
        try:
            await git(
                ["fetch", "--prune", "--no-tags", "--quiet", "origin"],
                cwd=path,
                env=self.remote_env(),
                timeout_s=self.settings.fetch_timeout_s,
                timer=timer,
            )
        except GitError as exc:
            if fresh:
                shutil.rmtree(path, ignore_errors=True)
            raise RepoUnreachable(f"cannot fetch {checkout.name}: {exc}") from None
        self.fetches += 1
        return path


async def resolve_base(mirror: Path, checkout: RepoCheckout, timer: GitTimer | None = None) -> str:
    """The full id of the task's base commit: ``checkout.base_commit`` or the default branch's head.

    Raises:
        RepoUnreachable: the commit or the branch is not in the mirror.
    """
    wanted = checkout.base_commit or f"refs/remotes/origin/{checkout.default_branch}"
    result = await git(
        ["rev-parse", "--verify", "--quiet", f"{wanted}^{{commit}}"], cwd=mirror, check=False, timer=timer
    )
    if not result.ok:
        raise RepoUnreachable(f"{checkout.name}: {wanted} is not in the repository")
    return result.stdout.strip()


async def default_head(mirror: Path, checkout: RepoCheckout, timer: GitTimer | None = None) -> str:
    """The default branch's head as last fetched."""
    ref = f"refs/remotes/origin/{checkout.default_branch}^{{commit}}"
    return (await git(["rev-parse", "--verify", ref], cwd=mirror, timer=timer)).stdout.strip()
