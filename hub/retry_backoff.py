"""Retries as users expect: a failed attempt waits before the next one, and the next one prefers another agent.

When an attempt ends without success and retries remain, the task goes back to the queue with ``retry_at`` =
now + :func:`backoff_ms` (``retry_backoff_base_s`` doubled per attempt already ended, at most
``retry_backoff_max_s``; 0 turns the wait off). Until then the scheduler does not offer it (:meth:`RetryBackoff.admit`,
composed with the quotas' filter) and its ``waiting_reason`` is ``{"code": "retry_backoff", "detail": "retry in
Ns"}``; :meth:`RetryBackoff.run` wakes the scheduler when the earliest wait is over. The agents whose attempts
failed are kept in ``failed_on``; :func:`prefer_fresh` puts them last, so the next attempt goes to another agent
whenever an idle one can run it (and back to the same one only when none can).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from hub.clock import Clock
from hub.tasks import Task, TaskStatus, WaitingReason, set_waiting

if TYPE_CHECKING:
    from hub.queue import TaskQueue

CODE = "retry_backoff"
MAX_POLL_S = 1.0
"""Longest the wake-up loop sleeps while a retry waits (so a clock that jumps, as in tests, is noticed soon)."""

A = TypeVar("A")


def backoff_ms(ended: int, base_s: float, max_s: float) -> int:
    """The wait before the attempt after ``ended`` attempts ended: ``base_s * 2**(ended-1)``, at most ``max_s``."""
    if base_s <= 0 or ended < 1:
        return 0
    return int(min(base_s * 2.0 ** min(ended - 1, 30), max_s) * 1000)


def countdown(task: Task, now_ms: int) -> WaitingReason | None:
    """The waiting reason of a task held back by its backoff at ``now_ms``, or None when it is not."""
    if task.status is not TaskStatus.QUEUED or task.retry_at is None or task.retry_at <= now_ms:
        return None
    seconds = -(-(task.retry_at - now_ms) // 1000)  # rounded up: never "retry in 0s" while it still waits
    return {"code": CODE, "detail": f"retry in {seconds}s (attempt {task.retry_count + 1} of {task.max_retries})"}


def prefer_fresh(task: Task, agents: Sequence[A], agent_id: Callable[[A], str]) -> Sequence[A]:
    """``agents`` with those that already failed ``task`` moved to the end (stable; unchanged for a first try)."""
    if not task.failed_on:
        return agents
    tried = set(task.failed_on)
    fresh = [a for a in agents if agent_id(a) not in tried]
    if len(fresh) == len(agents):
        return agents
    return [*fresh, *(a for a in agents if agent_id(a) in tried)]


def attempts(task: Task) -> list[dict[str, Any]]:
    """The task's history grouped per attempt, oldest first: who ran it, when, and how it ended (from the entries
    the task keeps, so a task with a long history shows its latest attempts)."""
    by_attempt: dict[int, dict[str, Any]] = {}
    for entry in task.history:
        details = entry.get("details") or {}
        n = details.get("attempt")
        if not isinstance(n, int):
            continue
        row = by_attempt.setdefault(n, {"attempt": n, "agent_id": None, "assigned_at": None, "accepted_at": None})
        event, at = entry.get("event"), entry.get("timestamp")
        row["agent_id"] = details.get("agent_id") or row["agent_id"]
        if event == "assigned":
            row["assigned_at"] = at
        elif event == "accepted":
            row["accepted_at"] = at
        elif event in ("completed", "retried", "dead_letter"):
            row["ended_at"] = at
            row["result"] = event
            row["outcome"] = details.get("outcome", "failed")
            for key in ("reason", "error", "retry_at"):
                if details.get(key) is not None:
                    row[key] = details[key]
    return [by_attempt[n] for n in sorted(by_attempt)]


def retry_view(task: Task, now_ms: int, full: bool) -> dict[str, Any]:
    """What ``GET /api/tasks/{id}`` adds: the countdown as of now while the task waits out its backoff, and (for a
    reader of its history) its ``attempts``."""
    out: dict[str, Any] = {}
    if (reason := countdown(task, now_ms)) is not None:
        out["waiting_reason"] = reason
    if full:
        out["attempts"] = attempts(task)
    return out


class Scheduling(Protocol):
    """What the backoff needs of the scheduler (hub/scheduler.py): its queued-task filter and its wake-up."""

    admit: Callable[[Iterable[Task]], Iterable[Task]]

    def wake(self) -> None: ...


class RetryBackoff:
    """Holds back queued retries until their ``retry_at`` and wakes the scheduler when the first one is due."""

    def __init__(
        self, queue: TaskQueue, scheduler: Scheduling, clock: Clock, base_s: float, max_s: float = 300.0
    ) -> None:
        self._queue = queue
        self._scheduler = scheduler
        self._clock = clock
        self.base_s = base_s
        self.max_s = max_s
        self._due: list[tuple[int, str]] = []
        """(retry_at, task id) of the retries held back, earliest first (entries may be stale: checked on pop)."""
        self._in_heap: dict[str, int] = {}
        """Task id -> the retry_at it is in ``_due`` with (one entry per wait: rounds do not grow the heap)."""
        self._changed = asyncio.Event()
        self.n_held = 0
        queue.backoff = self.delay_ms
        inner = scheduler.admit  # the quotas' filter: it counts what it lets through, so held retries go first
        scheduler.admit = lambda tasks: inner(self.admit(tasks))

    def __repr__(self) -> str:
        return f"<RetryBackoff base={self.base_s}s waiting={len(self._due)} held={self.n_held}>"

    def delay_ms(self, ended: int) -> int:
        return backoff_ms(ended, self.base_s, self.max_s)

    def admit(self, queued: Iterable[Task]) -> Iterator[Task]:
        """``queued`` without the retries still waiting out their backoff (each given its countdown reason)."""
        now = self._clock.now_ms()
        for task in queued:
            if task.retry_at is not None and task.retry_at > now:
                self.n_held += 1
                set_waiting(task, countdown(task, now))
                if self._in_heap.get(task.id) != task.retry_at:
                    self._in_heap[task.id] = task.retry_at
                    heapq.heappush(self._due, (task.retry_at, task.id))
                    self._changed.set()
                continue
            if (task.waiting_reason or {}).get("code") == CODE:
                set_waiting(task, None)
            yield task

    def _next_due(self, now: int) -> int | None:
        """The earliest ``retry_at`` still ahead of a queued task; the scheduler is woken for those now past."""
        woke = False
        while self._due:
            at, task_id = self._due[0]
            task = self._queue.tasks.get(task_id)
            if task is None or task.status is not TaskStatus.QUEUED or task.retry_at != at:
                heapq.heappop(self._due)  # assigned, cancelled or pushed back since: stale
            elif at <= now:
                heapq.heappop(self._due)
                woke = True
            else:
                break
            if self._in_heap.get(task_id) == at:
                del self._in_heap[task_id]
        if woke:
            self._scheduler.wake()
        return self._due[0][0] if self._due else None

    async def run(self) -> None:
        """Wake the scheduler whenever a held retry becomes due (owned by the hub's TaskGroup)."""
        while True:
            self._changed.clear()
            due = self._next_due(self._clock.now_ms())
            timeout = None if due is None else min(MAX_POLL_S, max(0.0, (due - self._clock.now_ms()) / 1000))
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
