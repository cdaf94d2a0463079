"""The sweep of task branches out of a mirror, so that a long-lived sidecar's mirrors stay bounded.

Each task leaves its branch in its repository's mirror as ``refs/heads/agentcom/<task-id>``. A sweep deletes a
task branch when

- it is **merged**: its tip is reachable from one of the remote's branches as last fetched (``refs/remotes/origin/*``)
  or from a commit the caller knows was just merged (a fast-forward this sidecar pushed, before any fetch saw it);
- it is **expired**: its tip was committed more than ``git.branch_keep_days`` ago;
- it is **over the cap**: of the branches left, the newest ``git.branch_keep_max`` stay, the older ones go.

A branch in use by a running task (:meth:`~sidecar.git.mirror.Mirrors.hold`) is never deleted; nothing outside
``refs/heads/agentcom/`` is ever touched. One sweep is bounded: one ``git for-each-ref`` listing the refs, one
more with ``--merged`` for reachability, and one ``git update-ref --stdin`` deleting at most
``git.branch_prune_batch`` branches (the oldest first) in a single transaction, each deletion checked against the
tip it was listed with. The commits themselves stay in the object store (a task's commit id still resolves).

The sweep runs under the mirror's lock after each repository task ended (:meth:`sidecar.git.task.GitWork.ended`)
and once at start for every mirror (:func:`sweep_all`); it never raises (a failure is logged, the branches stay).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from sidecar.git.credentials import secrets_of
from sidecar.git.mirror import Mirrors
from sidecar.git.run import GitError, GitResult, git
from sidecar.runtime.state import LocalState
from sidecar.settings import GitSettings

logger = logging.getLogger(__name__)

TASK_REFS = "refs/heads/agentcom/"
REMOTE_REFS = "refs/remotes/origin/"
MAX_MERGE_BASES = 1000
"""Reachability is checked against the newest this many remote tips (each one is an argument of one command)."""
_FORMAT = "%(objectname) %(committerdate:unix) %(refname)"
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


@dataclass(frozen=True)
class Ref:
    name: str
    commit: str
    committed: int
    """Committer date of the tip, in seconds since the epoch."""


@dataclass(frozen=True)
class Sweep:
    """What one sweep of one mirror did."""

    mirror: str
    merged: int = 0
    expired: int = 0
    over_cap: int = 0
    kept: int = 0
    error: str | None = None

    @property
    def pruned(self) -> int:
        return self.merged + self.expired + self.over_cap

    def line(self) -> str:
        """The sweep's log line."""
        return (
            f"pruned {self.pruned} task branches from {self.mirror} "
            f"(merged {self.merged}, expired {self.expired}, over cap {self.over_cap})"
        )


async def sweep(
    mirror: Path,
    settings: GitSettings,
    *,
    in_use: Collection[str] = (),
    merged_into: Collection[str] = (),
    now: float | None = None,
) -> Sweep:
    """Delete ``mirror``'s task branches that are merged, expired or over the cap. Take the mirror's lock first.

    Args:
        mirror: The bare mirror.
        settings: ``branch_keep_days``, ``branch_keep_max``, ``branch_prune_batch``.
        in_use: Branch names (``agentcom/<task-id>``) of running tasks: never deleted.
        merged_into: Commits known to be on the remote besides ``refs/remotes/origin/*``.
        now: The current time (seconds since the epoch).

    Never raises: a git failure is returned in ``error`` (cleaned of credentials) and logged.
    """
    try:
        result = await _sweep(mirror, settings, in_use, merged_into, time.time() if now is None else now)
    except GitError as exc:
        result = Sweep(mirror.name, error=_clean(str(exc), settings))
        logger.warning("could not prune task branches from %s: %s", mirror.name, result.error)
        return result
    logger.info("%s", result.line())
    return result


async def _sweep(
    mirror: Path, settings: GitSettings, in_use: Collection[str], merged_into: Collection[str], now: float
) -> Sweep:
    listing = await git(["for-each-ref", f"--format={_FORMAT}", TASK_REFS, REMOTE_REFS], cwd=mirror)
    tasks: list[Ref] = []
    remote: list[Ref] = []
    for line in _lines(listing):
        parts = line.split(" ", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue  # a ref to something other than a commit has no committer date: leave it alone
        ref = Ref(name=parts[2], commit=parts[0], committed=int(parts[1]))
        (tasks if ref.name.startswith(TASK_REFS) else remote).append(ref)
    if not tasks:
        return Sweep(mirror.name)
    tips = {ref.commit for ref in tasks}  # a commit not in the mirror would fail the whole command
    merged = await _merged(mirror, remote, [commit for commit in merged_into if commit in tips])
    protected = {f"refs/heads/{branch}" for branch in in_use}
    cutoff = now - settings.branch_keep_days * 86400
    reasons: dict[str, str] = {}
    survivors: list[Ref] = []
    for ref in tasks:
        if ref.name in merged:
            reasons[ref.name] = "merged"
        elif ref.committed < cutoff:
            reasons[ref.name] = "expired"
        else:
            survivors.append(ref)
    survivors.sort(key=lambda r: (r.committed, r.name), reverse=True)  # newest first
    if not listing.truncated:  # with only some of the branches seen, which are the oldest is not known
        for ref in survivors[settings.branch_keep_max :]:
            reasons[ref.name] = "over_cap"
    doomed = sorted(
        (ref for ref in tasks if ref.name in reasons and ref.name not in protected),
        key=lambda r: (r.committed, r.name),
    )[: settings.branch_prune_batch]
    if doomed:
        batch = "".join(f"delete {ref.name} {ref.commit}\n" for ref in doomed)
        await git(["update-ref", "--stdin"], cwd=mirror, stdin=batch.encode())
    counts = {reason: 0 for reason in ("merged", "expired", "over_cap")}
    for ref in doomed:
        counts[reasons[ref.name]] += 1
    kept = len(tasks) - len(doomed)
    return Sweep(mirror.name, counts["merged"], counts["expired"], counts["over_cap"], kept)


async def _merged(mirror: Path, remote: list[Ref], merged_into: Collection[str]) -> set[str]:
    """The task refs whose tips are reachable from a remote tip or from ``merged_into``."""
    newest = sorted(remote, key=lambda r: r.committed, reverse=True)
    bases = dict.fromkeys([*merged_into, *(ref.commit for ref in newest)])  # ordered, without repeats
    if not bases:
        return set()
    args = [f"--merged={commit}" for commit in list(bases)[:MAX_MERGE_BASES]]
    result = await git(["for-each-ref", "--format=%(refname)", *args, TASK_REFS], cwd=mirror)
    return set(_lines(result))


def _lines(result: GitResult) -> list[str]:
    """The output's lines; of an output cut at its limit, the last (partial) line is dropped."""
    lines = result.stdout.splitlines()
    return lines[:-1] if result.truncated else lines


async def sweep_mirror(
    mirrors: Mirrors, mirror: Path, *, in_use: Collection[str] = (), merged_into: Collection[str] = ()
) -> Sweep:
    """:func:`sweep` under the mirror's lock, sparing the branches :meth:`Mirrors.hold` marks and ``in_use``."""
    async with mirrors.lock_at(mirror):
        spared = mirrors.held(mirror) | frozenset(in_use)
        return await sweep(mirror, mirrors.settings, in_use=spared, merged_into=merged_into)


async def sweep_all(mirrors: Mirrors, in_use: Mapping[str, Collection[str]] | None = None) -> list[Sweep]:
    """Sweep every mirror (at start); never raises. ``in_use`` maps a repository name to branches to spare (the
    task recovered from the local state)."""
    spared: dict[str, set[str]] = {}
    for name, branches in (in_use or {}).items():
        spared.setdefault(mirrors.path(name).name, set()).update(branches)
    sweeps: list[Sweep] = []
    try:
        for mirror in mirrors.existing():
            sweeps.append(await sweep_mirror(mirrors, mirror, in_use=spared.get(mirror.name, ())))
    except Exception:  # housekeeping at start must not stop the sidecar
        logger.exception("sweeping the task branches of the mirrors in %s failed", mirrors.root)
    return sweeps


def _clean(text: str, settings: GitSettings) -> str:
    text = _URL_CREDENTIALS.sub("***@", text)
    for secret in secrets_of(settings):
        text = text.replace(secret, "***")
    return text[:600]


def recovered_branch(state: LocalState) -> dict[str, list[str]]:
    """The branch of the task the local state holds as active (re-run after a restart): spared at start."""
    checkout = state.active.task.checkout if state.active is not None else None
    return {} if checkout is None else {checkout.name: [checkout.branch]}
