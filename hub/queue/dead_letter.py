"""Dead letters of the task queue: a task that can no longer complete takes its queued dependents down with it
(visibly, transitively), a stopped goal dead-letters its queued tasks, and a retry requeues a dead letter together
with the dependents it took down."""

from __future__ import annotations

from collections.abc import Sequence

from hub import lifecycle as L
from hub import tasks as T
from hub.queue.commits import QueueCommits, Told
from hub.tasks import EndReason, Task, TaskStatus


class DeadLetters(QueueCommits):
    """Dead-lettering and retrying, for :class:`hub.queue.TaskQueue`."""

    def _cascaded(self, failed: list[Task], root: Task) -> list[Told]:
        return [
            self._told(L.TaskDeadLettered, t, reason=str(EndReason.DEPENDENCY_FAILED), dependency_id=root.id)
            for t in failed
        ]

    def _cascade(self, root: Task, now: int) -> list[Task]:
        """Dependents of a task that can no longer complete fail visibly (transitively)."""
        failed: list[Task] = []
        stack = [root.id]
        while stack:
            for dep_id in sorted(self._dependents.get(stack.pop(), ())):
                dep = self.tasks.get(dep_id)
                if dep is not None and dep.status in T.LIVE and dep.status is TaskStatus.QUEUED:
                    T.fail_dependency(dep, root.id, now)
                    failed.append(dep)
                    stack.append(dep.id)
        return failed

    async def retry(self, task_id: str, by: str | None = None) -> Task:
        """Requeue a dead-lettered (or cancelled) task, and with it the dependents it took down with it."""
        task = self.get(task_id)
        now = self._clock.now_ms()
        T.retry(task, now, by)
        revived = [task]
        stack = [task.id]
        while stack:
            for dep_id in sorted(self._dependents.get(stack.pop(), ())):
                dep = self.tasks.get(dep_id)
                if (
                    dep is not None
                    and dep.status is TaskStatus.DEAD_LETTER
                    and (dep.dead_letter_reason == EndReason.DEPENDENCY_FAILED)
                ):
                    T.retry(dep, now, by)
                    revived.append(dep)
                    stack.append(dep.id)
        await self._commit(revived, [self._told(L.TaskRequeued, t, by=by, generation=t.generation) for t in revived])
        return task

    async def dead_letter_queued(self, tasks: Sequence[Task], reason: str, detail: str) -> list[Task]:
        """Dead-letter queued tasks that will not be run (a goal stopped by fail-fast), their dependents with them;
        tasks no longer queued are left alone. Returns the tasks dead-lettered (the dependents included)."""
        now = self._clock.now_ms()
        changed: list[Task] = []
        events: list[Told] = []
        for task in tasks:
            if task.status is not TaskStatus.QUEUED:
                continue
            task.status = TaskStatus.DEAD_LETTER
            task.dead_letter_reason = reason
            task.last_error = f"{reason}: {detail}"[:2000]
            T.record(task, "dead_letter", now, reason=reason, detail=detail[:500])
            cascaded = self._cascade(task, now)
            changed += [task, *cascaded]
            events += [
                self._told(L.TaskDeadLettered, task, reason=reason, dependency_id=""),
                *self._cascaded(cascaded, task),
            ]
        if changed:
            await self._commit(changed, events)
        return changed
