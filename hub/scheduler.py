"""Scheduler: event-driven matching of queued tasks to idle agents.

:func:`plan` is the whole decision, a pure function over plain data; :class:`Scheduler` runs it whenever something
that could change the answer happens (a task queued, an agent idle), never on a timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from hub.tasks import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    agent_id: str
    capabilities: frozenset[str]


def eligible(task: Task, agent: Candidate) -> bool:
    """An agent may take a task when it is the pinned agent (if any) and has every needed capability."""
    if task.assign_to is not None and task.assign_to != agent.agent_id:
        return False
    return agent.capabilities.issuperset(task.needed_capabilities)


def plan(
    queued: Iterable[Task], idle: list[Candidate], deps_done: Callable[[Task], bool]
) -> list[tuple[Task, str]]:
    """Pair queued tasks (in priority/FIFO order) with idle agents (longest idle first); one task per agent."""
    free = list(idle)
    pairs: list[tuple[Task, str]] = []
    for task in queued:
        if not free:
            break
        if task.depends_on and not deps_done(task):
            continue
        for i, agent in enumerate(free):
            if eligible(task, agent):
                pairs.append((task, agent.agent_id))
                del free[i]
                break
    return pairs


class Scheduler:
    """Runs :func:`plan` on every wake-up and hands the pairs to ``dispatch``."""

    def __init__(
        self,
        queued: Callable[[], Iterable[Task]],
        idle: Callable[[], list[Candidate]],
        deps_done: Callable[[Task], bool],
        dispatch: Callable[[list[tuple[Task, str]]], Awaitable[Coroutine[Any, Any, None]]],
    ) -> None:
        self._queued = queued
        self._idle = idle
        self._deps_done = deps_done
        self._dispatch = dispatch
        self._wake = asyncio.Event()
        self.n_rounds = 0
        self.n_assigned = 0

    def __repr__(self) -> str:
        return f"<Scheduler rounds={self.n_rounds} assigned={self.n_assigned}>"

    def wake(self) -> None:
        self._wake.set()

    async def book(self) -> Coroutine[Any, Any, None] | None:
        """One round: plan and book; returns the delivery of what was booked (None when nothing was)."""
        idle = self._idle()
        if not idle:
            return None
        pairs = plan(self._queued(), idle, self._deps_done)
        self.n_rounds += 1
        if not pairs:
            return None
        self.n_assigned += len(pairs)
        return await self._dispatch(pairs)

    async def run(self) -> None:
        """Schedule on every wake-up, forever (owned by the hub's TaskGroup). Deliveries wait for their commit
        in tasks of their own, so a round never waits for the disk and its bookings join the pending commit."""
        async with asyncio.TaskGroup() as deliveries:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if (delivery := await self.book()) is not None:
                    deliveries.create_task(delivery)
