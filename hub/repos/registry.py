"""The repository registry: records of kind ``repo``, held in memory, written through the store.

It also decides a task's repository at submission (:func:`placement`, the rule in the package docstring) and builds
the ``checkout`` of ``task_assign`` (:meth:`RepoRegistry.checkout`) with the base commit recorded on the task.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from hub.repos.base import MAX_REPOS, RepoSpec, normalised_url
from hub.repos.followups import FollowUps
from hub.repos.heads import Heads
from hub.routing import needs_of
from hub.store import DeleteRecord, PutRecord, RecordRow, Store
from hub.tasks import Task, place_repo
from shared.repos import RepoCheckout

logger = logging.getLogger(__name__)

KIND = "repo"
GoalRepo = Callable[[str], str | None]
"""The repository of a goal by its id (None: the goal has none, or there is no such goal)."""


class UnknownRepo(Exception):
    def __init__(self, repo: str) -> None:
        super().__init__(f"no registered repository is named {repo[:200]!r} or has that URL")
        self.repo = repo


class RegistryFull(Exception):
    pass


class RepoExists(Exception):
    pass


def works_with_files(task: Task) -> bool:
    """Whether a task without a repository inherits one: a model runs it, or it names files (``file_hints``)."""
    return bool(task.file_hints) or any(t != "shell" for t in needs_of(task).targets)


def placement(task: Task, repos: list[RepoSpec], goal_repo: GoalRepo | None = None) -> str | None:
    """The repository ``task`` works on (a registered name), or None; :class:`UnknownRepo` for one not registered.

    With an empty registry a task's ``repo`` is kept as the free-form label it was before the registry existed.
    """
    if not repos:
        return task.repo
    if task.repo is not None:
        wanted = normalised_url(task.repo)
        for spec in repos:
            if task.repo == spec.name or wanted == normalised_url(spec.url):
                return spec.name
        raise UnknownRepo(task.repo)
    if task.goal_id is not None and goal_repo is not None:
        inherited = goal_repo(task.goal_id)
        if inherited is not None and any(s.name == inherited for s in repos):
            return inherited
    if works_with_files(task):
        return repos[0].name  # sorted: the top-priority repository
    return None


class RepoRegistry:
    """The registered repositories by name; every change is durable before the call returns."""

    def __init__(self, store: Store, heads: Heads, max_repos: int = MAX_REPOS) -> None:
        self._store = store
        self.max_repos = max_repos
        self.heads = heads
        self._repos: dict[str, RepoSpec] = {}
        self._sorted: list[RepoSpec] = []
        self.on_change: list[Callable[[], Awaitable[None]]] = []
        """Called after each committed change (the hub sends ``repo_registry`` to every agent)."""
        self.goal_repo: GoalRepo | None = None
        """Set by the goals subsystem, when there is one: a task of a goal inherits the goal's repository."""
        self._lock = asyncio.Lock()
        self.n_corrupt = 0
        self.followups = FollowUps()
        """Tasks failed in a merge conflict and their follow-ups (hub/repos/followups.py)."""

    def __repr__(self) -> str:
        return f"<RepoRegistry repos={len(self._repos)}>"

    async def load(self) -> None:
        for row in await self._store.load_records(KIND):
            try:
                spec = RepoSpec.model_validate(json.loads(row.body))
            except ValueError as exc:
                self.n_corrupt += 1
                logger.warning("repository record %r skipped (left on disk): %s", row.key[:100], exc)
                continue
            self._repos[spec.name] = spec
        self._resort()

    def _resort(self) -> None:
        self._sorted = sorted(self._repos.values(), key=lambda s: (s.priority, s.name))

    def list(self) -> list[RepoSpec]:
        """Every repository, top priority first (lower ``priority``, then name)."""
        return list(self._sorted)

    def get(self, name: str) -> RepoSpec | None:
        return self._repos.get(name)

    def local_checkouts(self) -> builtins.list[tuple[str, Path, str | None]]:
        """(name, path, test command) of the repositories that are a directory on this machine (a local path or
        ``file://`` URL): what the hub's improving state can scan without fetching."""
        out = []
        for spec in self._sorted:
            path = Path(spec.url.removeprefix("file://")) if spec.url.startswith(("/", "file://")) else None
            if path is not None and path.is_dir():
                out.append((spec.name, path, spec.test_command))
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._repos

    def __len__(self) -> int:
        return len(self._repos)

    async def put(self, spec: RepoSpec, now_ms: int, create_only: bool = False) -> bool:
        """Create or replace a repository; True when it was new. :class:`RegistryFull` past ``max_repos``;
        :class:`RepoExists` when ``create_only`` and the name is taken (decided under the lock: two racing creates
        of one name make one repository and one refusal)."""
        async with self._lock:
            new = spec.name not in self._repos
            if create_only and not new:
                raise RepoExists(spec.name)
            if new and len(self._repos) >= self.max_repos:
                raise RegistryFull(f"the registry holds {self.max_repos} repositories, its limit")
            await self._store.write([PutRecord(RecordRow(KIND, spec.name, now_ms, spec.model_dump_json()))])
            old = self._repos.get(spec.name)
            if old is not None:
                self.heads.forget(old.url, old.default_branch)
            self._repos[spec.name] = spec
            self._resort()
        await self._changed()
        return new

    async def delete(self, name: str) -> bool:
        async with self._lock:
            if name not in self._repos:
                return False
            await self._store.write([DeleteRecord(KIND, name)])
            del self._repos[name]
            self._resort()
        await self._changed()
        return True

    async def _changed(self) -> None:
        for callback in self.on_change:
            try:
                await callback()
            except Exception:
                logger.exception("repository change callback failed")

    def place(self, task: Task) -> None:
        """Give a task being submitted its repository (see :func:`placement`); :class:`UnknownRepo` if unknown."""
        place_repo(task, placement(task, self._sorted, self.goal_repo))

    def checkout(self, task: Task, base_commit: str | None) -> RepoCheckout | None:
        """What the sidecar needs to work on the task's repository, or None for a task without a registered one."""
        spec = self._repos.get(task.repo or "")
        if spec is None:
            return None
        return RepoCheckout(
            name=spec.name,
            url=spec.url,
            default_branch=spec.default_branch,
            base_commit=base_commit,
            branch=f"agentcom/{task.id}",
            test_command=spec.test_command,
            review=spec.review,
            publish=spec.publish,
            forge=spec.forge,
            forge_repo=spec.forge_repo,
        )

    def base_commit(self, name: str | None) -> str | None:
        """The cached head of a repository's default branch (None: not resolved, or unreachable from the hub)."""
        spec = self._repos.get(name or "")
        return None if spec is None else self.heads.cached(spec.url, spec.default_branch)

    async def resolve(self, names: Iterable[str] | None = None) -> None:
        """Resolve the heads of these repositories (all by default) that are stale, at most a few at a time."""
        specs = [self._repos[n] for n in (names if names is not None else list(self._repos)) if n in self._repos]
        await asyncio.gather(*(self.heads.resolve(s.url, s.default_branch) for s in specs))

    async def run_heads(self, interval_s: float) -> None:
        """Keep the heads of every repository fresh (owned by the hub's TaskGroup)."""
        while True:
            await self.resolve()
            await asyncio.sleep(interval_s)
