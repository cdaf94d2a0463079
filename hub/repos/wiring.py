"""How the repository registry joins the hub: loaded with it, wired to the fleet and the agents' sockets."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hub.repos.followups import FollowUps
from hub.repos.heads import Heads
from hub.repos.registry import RepoRegistry
from hub.settings import HubSettings
from hub.store import Store
from hub.tasks import Task
from shared.protocol import RegistryRepo
from shared.protocol import RepoRegistry as RepoRegistryMessage

if TYPE_CHECKING:
    from hub.agents import Agent
    from hub.fleet import Fleet

logger = logging.getLogger(__name__)


async def load(store: Store, settings: HubSettings, tasks: Iterable[Task]) -> RepoRegistry:
    s = settings
    heads = Heads(s.repo_head_ttl_s, s.repo_git_timeout_s, s.repo_git_concurrency, time.monotonic)
    registry = RepoRegistry(store, heads)
    await registry.load()
    registry.followups = FollowUps(tasks)
    return registry


def wire(registry: RepoRegistry, fleet: Fleet) -> None:
    fleet.repos = registry

    async def announce() -> None:
        for agent in list(fleet.agents.connected.values()):
            await send_registry(fleet, agent)
        fleet.version += 1  # what the fleet can reach may have changed: waiting reasons are looked at again
        fleet.scheduler.wake()

    registry.on_change.append(announce)


def registry_message(registry: RepoRegistry) -> RepoRegistryMessage:
    """The registry as agents see it: names, URLs and default branches (never credentials: URLs carry none)."""
    return RepoRegistryMessage(
        repos=[RegistryRepo(name=s.name, url=s.url, default_branch=s.default_branch) for s in registry.list()]
    )


async def send_registry(fleet: Fleet, agent: Agent) -> None:
    """Tell one agent the registry; it answers ``repo_reach``."""
    if fleet.repos is not None:
        await fleet.send(agent, registry_message(fleet.repos))
