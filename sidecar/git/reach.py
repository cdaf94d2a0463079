"""Answer ``repo_registry`` with ``repo_reach``: which of the hub's repositories this sidecar can fetch.

Each repository is probed with ``git ls-remote`` (its default branch only) outside the sandbox, with the sidecar's
credentials, at most ``reach_concurrency`` at a time and each under ``reach_timeout_s``. A reason never holds a
credential: URLs carry none, and the token only ever is in the askpass process's environment.
"""

from __future__ import annotations

import asyncio
import logging

from shared.protocol import RegistryRepo, RepoReach, RepoRegistry, UnreachableRepo
from sidecar.git.credentials import credential_env
from sidecar.git.run import git
from sidecar.runtime.connection import HubLink
from sidecar.settings import GitSettings, SidecarSettings

logger = logging.getLogger(__name__)

REASON_CHARS = 500


async def probe(repo: RegistryRepo, settings: GitSettings, env: dict[str, str]) -> str | None:
    """None when ``repo`` answers, else why not (one line)."""
    if repo.url.startswith("-"):
        return "refusing a URL that starts with '-'"
    try:
        result = await git(
            ["ls-remote", "--heads", "--", repo.url, repo.default_branch],
            env=env,
            timeout_s=settings.reach_timeout_s,
            check=False,
            output_bytes=64 * 1024,
        )
    except OSError as exc:
        return f"git could not run: {exc}"
    if result.timed_out:
        return f"no answer within {settings.reach_timeout_s:g} s"
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return (" ".join(lines) or f"git ls-remote exited {result.returncode}")[:REASON_CHARS]
    return None


async def repo_reach(registry: RepoRegistry, settings: SidecarSettings) -> RepoReach:
    """Probe every repository of ``registry`` (bounded concurrency) and build the answer."""
    env = credential_env(settings.git, settings.mirror_root)
    gate = asyncio.Semaphore(settings.git.reach_concurrency)

    async def one(repo: RegistryRepo) -> str | None:
        async with gate:
            return await probe(repo, settings.git, env)

    repos = [repo for repo in registry.repos[:1000] if 0 < len(repo.name) <= 256 and repo.name.isprintable()]
    if len(repos) != len(registry.repos):
        logger.warning("ignoring %d repositories with unusable names", len(registry.repos) - len(repos))
    reasons = await asyncio.gather(*(one(repo) for repo in repos))
    reachable = [repo.name for repo, reason in zip(repos, reasons, strict=True) if reason is None]
    unreachable = [
        UnreachableRepo(name=repo.name, reason=reason)
        for repo, reason in zip(repos, reasons, strict=True)
        if reason is not None
    ]
    for item in unreachable:
        logger.warning("repository %s is not reachable from here: %s", item.name, item.reason)
    return RepoReach(type="repo_reach", reachable=reachable, unreachable=unreachable)


async def answer_registries(requests: asyncio.Queue[RepoRegistry], link: HubLink, settings: SidecarSettings) -> None:
    """Answer each ``repo_registry`` put on ``requests`` (a queue of one: only the newest registry matters)."""
    while True:
        registry = await requests.get()
        await link.send(await repo_reach(registry, settings))


def offer(requests: asyncio.Queue[RepoRegistry], registry: RepoRegistry) -> None:
    """Queue ``registry`` for an answer, replacing one not answered yet."""
    while not requests.empty():
        requests.get_nowait()
    requests.put_nowait(registry)
