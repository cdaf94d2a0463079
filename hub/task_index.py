"""The task queue's memory: every task, indexed as it changes, and the queries over those indexes.

:class:`TaskIndex` holds the task map, the priority lanes, the in-flight set, the per-status and per-priority
indexes, the counters and the idempotency index, and answers the hub's reads (lists, counts, stats, snapshots)
without scanning every stored task. :class:`hub.queue.TaskQueue` builds on it and is the only code that changes a
task: it calls :meth:`TaskIndex._index` after each change and :meth:`TaskIndex._forget` when pruning.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from hub import tasks as T
from hub.task_search import matcher
from hub.tasks import Task, TaskStatus

RECENT_KEPT = 100
"""Tasks kept in the recently-changed list (the dashboard shows as many)."""


class TaskNotFound(Exception):
    pass


@dataclass(slots=True)
class Submission:
    """One request submitted with an idempotency key: what a retry of it is answered with."""

    sha256: str
    task_ids: list[str]
    committed: asyncio.Future[None] | None = None
    """The commit of its tasks, while pending (None once loaded from the store)."""


class TaskIndex:
    """Every task in memory and the indexes over them (see the module docstring)."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self._lanes: list[dict[str, Task]] = [{} for _ in T.Priority]
        self._in_flight: dict[str, Task] = {}
        """Assigned and working tasks (at most one per agent), so neither sweeps nor reconnects scan every task."""
        self._dependents: dict[str, set[str]] = {}
        self.submissions: dict[tuple[str, str], Submission] = {}
        """Requests made with an idempotency key, by (submitter, key); rebuilt from the tasks at start."""
        self.on_forget: list[Callable[[str], None]] = []
        """Called with each pruned task's id, for whoever keeps something per task (the trajectory's sequence)."""
        # Indexes kept as tasks change, so counts, lists and snapshots never scan every stored task.
        self._by_status: dict[TaskStatus, dict[str, Task]] = {s: {} for s in TaskStatus}
        """Tasks per status, each in the order they entered it (oldest first: what retention prunes first)."""
        self._by_priority: list[dict[str, Task]] = [{} for _ in T.Priority]
        """Every task per priority, in order of submission (``created_at``): the order ``list`` answers in."""
        self._indexed: dict[str, tuple[TaskStatus, str | None]] = {}
        """The status (and outcome) each task is counted under."""
        self._by_outcome: Counter[str | None] = Counter()
        self._recent: OrderedDict[str, Task] = OrderedDict()
        """The tasks changed last (most recent at the end), at most RECENT_KEPT."""

    def _index(self, task: Task) -> None:
        for lane in self._lanes:
            lane.pop(task.id, None)
        if task.status is TaskStatus.QUEUED:
            self._lanes[task.priority][task.id] = task
        if task.status in T.IN_FLIGHT:
            self._in_flight[task.id] = task
        else:
            self._in_flight.pop(task.id, None)
        self._count(task)

    def _count(self, task: Task) -> None:
        """Move ``task`` between the per-status indexes and counters (O(1)); every status change passes here."""
        was = self._indexed.get(task.id)
        now = (task.status, task.outcome if task.status is TaskStatus.COMPLETED else None)
        if was != now:
            if was is None:
                self._by_priority[task.priority][task.id] = task
            else:
                del self._by_status[was[0]][task.id]
                if was[0] is TaskStatus.COMPLETED:
                    self._by_outcome[was[1]] -= 1
            self._by_status[now[0]][task.id] = task
            if now[0] is TaskStatus.COMPLETED:
                self._by_outcome[now[1]] += 1
            self._indexed[task.id] = now
        self._recent.pop(task.id, None)
        self._recent[task.id] = task
        if len(self._recent) > RECENT_KEPT:
            self._recent.popitem(last=False)

    def _order_finished(self) -> None:
        """After a load: finished tasks in the order they finished (the rows come back in order of creation)."""
        for status in T.FINAL:
            ordered = sorted(self._by_status[status].values(), key=lambda t: t.updated_at)
            self._by_status[status] = {t.id: t for t in ordered}
        self._recent = OrderedDict(
            (t.id, t)
            for t in sorted(
                heapq.nlargest(RECENT_KEPT, self.tasks.values(), key=lambda t: t.updated_at), key=lambda t: t.updated_at
            )
        )

    def queued_in_order(self) -> Iterable[Task]:
        """Queued tasks, most urgent lane first, FIFO (by time of queueing) inside a lane.

        A live view, not a copy (the queue can hold thousands): consume it before changing any task.
        """
        for lane in self._lanes:
            yield from lane.values()

    def in_flight(self) -> list[Task]:
        return list(self._in_flight.values())

    def recent(self, n: int) -> list[Task]:
        """Up to ``n`` tasks changed last, most recent first."""
        return list(itertools.islice(reversed(self._recent.values()), n))

    def latest(self, status: TaskStatus, n: int) -> list[Task]:
        """Up to ``n`` tasks of ``status``, those that entered it last first."""
        return list(itertools.islice(reversed(self._by_status[status].values()), n))

    def oldest(self, status: TaskStatus) -> Iterator[Task]:
        """Tasks of ``status``, those that entered it first first. A live view: consume it before any change."""
        return iter(self._by_status[status].values())

    def count(self, status: TaskStatus) -> int:
        return len(self._by_status[status])

    def depended_on(self, task: Task) -> bool:
        """Whether a stored task that may still run (anything not completed) depends on ``task``."""
        return any(
            (dep := self.tasks.get(d)) is not None and dep.status is not TaskStatus.COMPLETED
            for d in self._dependents.get(task.id, ())
        )

    def assigned_to(self, agent_id: str) -> Task | None:
        for task in self._in_flight.values():
            if task.assigned_to == agent_id:
                return task
        return None

    def deps_done(self, task: Task) -> bool:
        return all(
            (dep := self.tasks.get(d)) is not None and dep.status is TaskStatus.COMPLETED for d in task.depends_on
        )

    def get(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise TaskNotFound(task_id) from None

    def _index_submissions(self, tasks: Iterable[Task], committed: Awaitable[None] | None = None) -> None:
        """Remember the tasks submitted with an idempotency key, in their request's order. A request whose commit
        fails is forgotten, so its retry submits again. A malformed stored entry is skipped, never fatal."""
        for task in tasks:
            idem = task.idempotency
            if not isinstance(idem, dict) or task.submitted_by is None:
                continue
            key, digest, index = idem.get("key"), idem.get("sha256"), idem.get("index", 0)
            if not (isinstance(key, str) and isinstance(digest, str) and type(index) is int and 0 <= index < 10_000):
                continue
            scope = (task.submitted_by, key)
            entry = self.submissions.get(scope)
            if entry is None:
                pending = asyncio.ensure_future(committed) if committed is not None else None
                entry = self.submissions[scope] = Submission(digest, [], pending)
                if pending is not None:
                    pending.add_done_callback(partial(self._forget_failed, scope, entry))
            entry.task_ids.extend([""] * (index + 1 - len(entry.task_ids)))
            entry.task_ids[index] = task.id

    def _forget_failed(self, scope: tuple[str, str], entry: Submission, committed: asyncio.Future[None]) -> None:
        if committed.cancelled() or committed.exception() is not None:
            if self.submissions.get(scope) is entry:
                del self.submissions[scope]
        else:
            entry.committed = None

    def list(
        self,
        status: str | None = None,
        priority: int | None = None,
        assigned_to: str | None = None,
        goal_id: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        q: str | None = None,
    ) -> list[Task]:
        """Matching tasks ordered by (priority, created_at), ``offset`` skipped, at most ``limit``; ``q`` keeps the
        tasks whose text holds it (:mod:`hub.task_search`), in the same single pass.

        Walks the per-priority indexes (already in that order) and stops once enough match; only when a status
        is rare enough that walking would skip far more tasks than it holds are that status's tasks picked by a
        bounded heap instead. Neither sorts every stored task.
        """

        found = matcher(q) if q else None

        def wanted(t: Task) -> bool:
            return (
                (status is None or t.status == status)
                and (priority is None or t.priority == priority)
                and (assigned_to is None or t.assigned_to == assigned_to)
                and (goal_id is None or t.goal_id == goal_id)
                and (found is None or found(t))
            )

        want = offset + limit
        if status is not None:
            holding = self._by_status[TaskStatus(status)]
            if len(holding) * len(holding) < want * len(self.tasks):  # cheaper than walking past the others
                top = heapq.nsmallest(
                    want, (t for t in holding.values() if wanted(t)), key=lambda t: (t.priority, t.created_at)
                )
                return top[offset:]
        lanes = self._by_priority if priority is None else [self._by_priority[priority]]
        walk = (t for lane in lanes for t in lane.values() if wanted(t))
        return list(itertools.islice(walk, offset, want))

    def stats(self) -> dict[str, Any]:
        """Counts per status, per priority (queued) and per outcome (completed): from counters, never a scan."""
        return {
            "by_status": {s.value: len(self._by_status[s]) for s in TaskStatus},
            "by_priority": {p.name.lower(): len(self._lanes[p]) for p in T.Priority},
            "by_outcome": {k: n for k, n in self._by_outcome.items() if n},
            "dead_letter": len(self._by_status[TaskStatus.DEAD_LETTER]),
            "total": len(self.tasks),
        }

    def _forget(self, task: Task) -> None:
        del self.tasks[task.id]
        status, outcome = self._indexed.pop(task.id)
        del self._by_status[status][task.id]
        if status is TaskStatus.COMPLETED:
            self._by_outcome[outcome] -= 1
        del self._by_priority[task.priority][task.id]
        self._recent.pop(task.id, None)
        for dep in task.depends_on:
            dependents = self._dependents.get(dep)
            if dependents is not None:
                dependents.discard(task.id)
                if not dependents:
                    del self._dependents[dep]
        self._dependents.pop(task.id, None)
        idem = task.idempotency
        if isinstance(idem, dict) and task.submitted_by is not None:
            # Keys hold for as long as their tasks are kept: once one is pruned, a retry submits anew.
            self.submissions.pop((task.submitted_by, str(idem.get("key"))), None)
        for forget in self.on_forget:
            forget(task.id)

    def parse_stats(self) -> dict[str, dict[str, int]]:
        """Tool-call parse paths per model, summed over every reported attempt (from ``result.parse_stats``)."""
        total: dict[str, Counter[str]] = {}
        for task in self.tasks.values():
            per_model = (task.result or {}).get("parse_stats")
            if not isinstance(per_model, dict):
                continue
            for model, counts in per_model.items():
                if isinstance(counts, dict):
                    total.setdefault(str(model), Counter()).update(
                        {str(k): v for k, v in counts.items() if isinstance(v, int)}
                    )
        return {model: dict(sorted(counts.items())) for model, counts in sorted(total.items())}
