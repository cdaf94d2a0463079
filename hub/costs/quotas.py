"""Quotas on agent-made work: recursion depth, running tasks per goal, and a goal's fail-fast.

- Depth: a task submitted with an agent's token and ``metadata.parent_task_id`` gets ``metadata.depth`` = its
  parent's depth + 1 (a parent without one is depth 0); deeper than ``max_task_depth`` is refused 422 ``max_depth``
  (:func:`stamp_depth`, called by the submit routes before anything is queued).
- Concurrency per goal: :meth:`GoalQuotas.admit` filters what the scheduler may assign in a round so that at most
  ``goal_max_running`` tasks of one goal are assigned or working; a task held back shows the waiting reason
  ``goal_concurrency``.
- Fail-fast: :meth:`GoalQuotas.run` follows the lifecycle events; once a goal has ``goal_fail_fast_min`` finished
  tasks and its dead-lettered share reaches ``goal_fail_fast_ratio``, its queued tasks are dead-lettered with reason
  ``goal_fail_fast`` and a ``goal_fail_fast`` event goes to the dashboard bus.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from hub import lifecycle as L
from hub.auth import Principal, Role
from hub.tasks import Task, TaskStatus, set_waiting

if TYPE_CHECKING:
    from hub.events import EventBus
    from hub.queue import TaskQueue
    from hub.settings import HubSettings

logger = logging.getLogger(__name__)

FAIL_FAST = "goal_fail_fast"
RUNNING = (TaskStatus.ASSIGNED, TaskStatus.WORKING)


def _depth(task: Task | None) -> int:
    value = task.metadata.get("depth") if task is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def stamp_depth(
    queue: TaskQueue, who: Principal, tasks: list[Task], max_depth: int
) -> tuple[list[Task], dict[str, Any] | None]:
    """The tasks, each agent-made child with its depth in ``metadata.depth`` (new, not yet queued tasks: rebuilt,
    never changed in place), and None; or the tasks unchanged and the details of the refusal when one is too deep
    (the route answers 422 ``max_depth`` with them)."""
    if who.role is not Role.AGENT:
        return tasks, None
    out: list[Task] = []
    for i, task in enumerate(tasks):
        parent_id = task.metadata.get("parent_task_id")
        if not isinstance(parent_id, str):
            out.append(task)
            continue
        depth = _depth(queue.tasks.get(parent_id)) + 1
        if depth > max_depth:
            refusal = {"detail": f"task {i} would be at depth {depth}; the limit is {max_depth}",
                       "parent_task_id": parent_id[:128], "depth": depth, "max_depth": max_depth}  # fmt: skip
            return tasks, refusal
        metadata = {**task.metadata, "depth": depth}
        out.append(dataclasses.replace(task, metadata=metadata, static_json=None, static_of=()))
    return out, None


class GoalQuotas:
    """Concurrency per goal and fail-fast (see the module docstring)."""

    def __init__(self, settings: HubSettings, queue: TaskQueue, bus: EventBus) -> None:
        self.settings, self.queue, self.bus = settings, queue, bus
        self.finished: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.stopped: set[str] = set()
        """Goals stopped by fail-fast."""
        self.n_held = 0

    def __repr__(self) -> str:
        return f"<GoalQuotas stopped={sorted(self.stopped)} held={self.n_held}>"

    def admit(self, queued: Iterable[Task]) -> Iterator[Task]:
        """``queued`` without the tasks whose goal already has ``goal_max_running`` assigned or working (counting
        those offered in this round: a task offered but not matched may hold back another one round, never more
        run than allowed)."""
        limit = self.settings.goal_max_running
        if limit <= 0:
            yield from queued
            return
        running: Counter[str] | None = None
        for task in queued:
            if task.goal_id is None:
                yield task
                continue
            if running is None:  # counted once per round, and only when a goal's task is queued
                running = Counter(t.goal_id for t in self.queue.tasks.values() if t.status in RUNNING and t.goal_id)
            if running[task.goal_id] >= limit:
                self.n_held += 1
                set_waiting(task, {"code": "goal_concurrency",
                                   "detail": f"goal {task.goal_id} has {running[task.goal_id]} of {limit} tasks "
                                             "running"})  # fmt: skip
                continue
            running[task.goal_id] += 1
            if (task.waiting_reason or {}).get("code") == "goal_concurrency":
                set_waiting(task, None)
            yield task

    def load(self) -> None:
        """Count the finished tasks of each goal from the tasks held at start."""
        for task in self.queue.tasks.values():
            if task.goal_id is not None and task.status in (TaskStatus.COMPLETED, TaskStatus.DEAD_LETTER):
                self.finished[task.goal_id] += 1
                self.failed[task.goal_id] += task.status is TaskStatus.DEAD_LETTER

    async def run(self) -> None:
        """Follow task ends and stop goals that fail too often (owned by the hub's TaskGroup)."""
        self.load()
        feed = self.queue.feed
        async with feed.subscribe_lossless(FAIL_FAST, from_seq=feed.delivered_seq) as events:
            async for event in events:
                if isinstance(event, L.TaskEnded) and event.then in ("completed", "dead_letter"):
                    await self.ended(event.task_id, event.then == "dead_letter")

    async def ended(self, task_id: str, failed: bool) -> None:
        task = self.queue.tasks.get(task_id)
        goal = task.goal_id if task is not None else None
        if goal is None:
            return
        self.finished[goal] += 1
        self.failed[goal] += failed
        s = self.settings
        if goal in self.stopped or self.finished[goal] < s.goal_fail_fast_min:
            return
        if self.failed[goal] / self.finished[goal] < s.goal_fail_fast_ratio:
            return
        self.stopped.add(goal)
        doomed = [t for t in self.queue.tasks.values() if t.goal_id == goal and t.status is TaskStatus.QUEUED]
        detail = f"{self.failed[goal]} of {self.finished[goal]} finished tasks of goal {goal} failed"
        await self.queue.dead_letter_queued(doomed, FAIL_FAST, detail)
        logger.warning("goal %s fails fast: %s; %d queued tasks dead-lettered", goal, detail, len(doomed))
        event: dict[str, Any] = {
            "kind": "goal", "event": FAIL_FAST, "goal_id": goal, "failed": self.failed[goal],
            "finished": self.finished[goal], "dead_lettered": [t.id for t in doomed][:100],
        }  # fmt: skip
        self.bus.publish(event)
