"""Scheduler: event-driven matching of queued tasks to idle agents.

:func:`plan` is the whole decision, a pure function over plain data; :class:`Scheduler` runs it whenever something
that could change the answer happens (a task queued, an agent idle), never on a timer. After a round it gives
whatever explains waiting tasks (see :mod:`hub.waiting`) one bounded slice of time at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple, Protocol

from hub.retry_backoff import prefer_fresh
from hub.routing import Route, needs_of, route_needs
from hub.tasks import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An agent as matching sees it: who it is, its capabilities and what it can run."""

    agent_id: str
    capabilities: frozenset[str]
    executors: frozenset[str] | None = None
    """Executors it runs (None: an older client that did not say; it is routed as before)."""
    models: tuple[str, ...] = ()
    """Local models it serves, its default first."""
    repos: frozenset[str] | None = None
    """Repositories it can fetch (``repo_reach``); None: the hub has no registry, any agent takes any task."""


class Gate(Protocol):
    """Holds back queued tasks for the round (hub/repos/conflicts.py: tasks touching files in flight)."""

    def blocked(self, task: Task) -> bool: ...

    def started(self, task: Task) -> None: ...


class Ranker(Protocol):
    """Orders the agents able to run a task, best first, and completes the route of the one picked."""

    def begin(self) -> None:
        """A round starts."""

    def order(self, task: Task, agents: list[Candidate]) -> list[Candidate]: ...

    def finish(self, task: Task, agent: Candidate, chosen: Route) -> Route: ...


class Match(NamedTuple):
    task: Task
    agent_id: str
    route: Route


def eligible(task: Task, agent: Candidate) -> bool:
    """An agent may take a task when it is the pinned agent (if any) and has every needed capability."""
    if task.assign_to is not None and task.assign_to != agent.agent_id:
        return False
    if task.repo is not None and agent.repos is not None and task.repo not in agent.repos:
        return False  # the agent cannot fetch the task's repository
    return agent.capabilities.issuperset(task.needed_capabilities)


def plan(
    queued: Iterable[Task],
    idle: list[Candidate],
    deps_done: Callable[[Task], bool],
    gate: Gate | None = None,
    ranker: Ranker | None = None,
    prefer: str | None = None,
) -> list[Match]:
    """Pair queued tasks (in priority/FIFO order) with idle agents (longest idle first); one task per agent.

    A task goes to the first agent that runs it on its preferred target; failing that, to the first agent that
    can run it on a fallback one (a complex task takes a local model only when no idle agent has Claude). Tasks
    of a shape no idle agent can run are passed over at the cost of one look-up after the first.
    """
    free = list(idle)
    pairs: list[Match] = []
    settled: dict[tuple[object, ...], bool] = {}
    """Shapes (pin, capabilities, needs) whose look at every free agent found none preferred: True when one can
    run them on a fallback target, False when none can. Agents only leave ``free``, so both stay true."""
    for task in queued:
        if not free:
            break
        if task.depends_on and not deps_done(task):
            continue
        if gate is not None and gate.blocked(task):
            continue
        needs = needs_of(task)
        if prefer is not None and prefer in needs.targets[1:]:  # a routing override (hub/autonomy/healing.py)
            rest = tuple(t for t in needs.targets if t != prefer)
            needs = needs._replace(targets=(prefer, *rest), reason=f"{needs.reason}; {prefer} first (override)")
        shape = (task.assign_to, tuple(task.needed_capabilities), needs, task.repo)
        known = settled.get(shape)
        if known is False:
            continue
        found: tuple[int, Route] | None = None
        agents = free if ranker is None else ranker.order(task, free)
        if task.failed_on:  # a retry goes to another agent when one can run it (hub/retry_backoff.py)
            agents = [*prefer_fresh(task, agents, attrgetter("agent_id"))]
        for i, agent in enumerate(agents):
            if not eligible(task, agent):
                continue
            chosen = route_needs(needs, agent.executors, agent.models)
            if chosen is None:
                continue
            if not chosen.fallback or known:
                found = (i, chosen)
                break
            if found is None:
                found = (i, chosen)
        else:
            settled[shape] = found is not None
        if found is not None:
            i, chosen = found
            if ranker is not None:
                chosen = ranker.finish(task, agents[i], chosen)
            pairs.append(Match(task, agents[i].agent_id, chosen))
            free.remove(agents[i])
            if gate is not None:
                gate.started(task)
    return pairs


class Scheduler:
    """Runs :func:`plan` on every wake-up and hands the pairs to ``dispatch``; ``explain`` (optional) is called
    after each round and between others' work: one bounded slice at a time, True while it has more to do."""

    def __init__(
        self,
        queued: Callable[[], Iterable[Task]],
        idle: Callable[[], list[Candidate]],
        deps_done: Callable[[Task], bool],
        dispatch: Callable[[list[Match]], Awaitable[Coroutine[Any, Any, None]]],
        explain: Callable[[], bool] | None = None,
        gate: Callable[[], Gate | None] | None = None,
    ) -> None:
        self._queued = queued
        self._idle = idle
        self._deps_done = deps_done
        self._dispatch = dispatch
        self._explain = explain
        self.gate = gate
        self._wake = asyncio.Event()
        self.n_rounds = 0
        self.n_assigned = 0
        self.ranker: Ranker | None = None
        """Orders agents by where a task runs best (hub/endpoints/scoring.py); None: longest idle first."""
        self.prefer_target: str | None = None
        """A target tried first whenever a task's chain has it (set while healing falls back from local models)."""
        self.admit: Callable[[Iterable[Task]], Iterable[Task]] = lambda tasks: tasks
        """Filters the queued tasks a round may assign (quotas: at most N running per goal)."""

    def __repr__(self) -> str:
        return f"<Scheduler rounds={self.n_rounds} assigned={self.n_assigned}>"

    def wake(self) -> None:
        self._wake.set()

    async def book(self) -> Coroutine[Any, Any, None] | None:
        """One round: plan and book; returns the delivery of what was booked (None when nothing was)."""
        idle = self._idle()
        if not idle:
            return None
        if self.ranker is not None:
            self.ranker.begin()
        gate = self.gate() if self.gate is not None else None
        pairs = plan(self.admit(self._queued()), idle, self._deps_done, gate, self.ranker, self.prefer_target)
        self.n_rounds += 1
        if not pairs:
            return None
        self.n_assigned += len(pairs)
        return await self._dispatch(pairs)

    async def run(self) -> None:
        """Schedule on every wake-up, forever (owned by the hub's TaskGroup). Deliveries wait for their commit
        in tasks of their own, so a round never waits for the disk and its bookings join the pending commit.
        Explaining waits yields to the event loop between slices and stops for the next round."""
        async with asyncio.TaskGroup() as deliveries:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if (delivery := await self.book()) is not None:
                    deliveries.create_task(delivery)
                while self._explain is not None and self._explain() and not self._wake.is_set():
                    await asyncio.sleep(0)
