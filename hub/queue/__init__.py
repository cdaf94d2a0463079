"""The task queue: the one owner of task records, in memory and (committed before each call returns) in the store.

Decisions about single tasks are the pure functions in :mod:`hub.tasks`; the index by status, lane and submission
is :mod:`hub.task_index`. The queue applies the decisions, persists, indexes and publishes; :class:`TaskQueue` is
built from one base per concept, each in its module:

    hub/queue/task_queue.py   TaskQueue: loading, submitting, assigning, accepting, cancelling, pruning
    hub/queue/attempts.py     the end of an attempt: a result, a reported failure, a reclaim; retried or dead
    hub/queue/dead_letter.py  dependents failing with their dependency, goal stops, retrying a dead letter
    hub/queue/commits.py      one transaction per change (task rows and their events), delivery after the commit
"""

from __future__ import annotations

from hub.queue.commits import OnApplied, Told
from hub.queue.task_queue import TaskQueue, UnknownDependencies

__all__ = ["OnApplied", "TaskQueue", "Told", "UnknownDependencies"]
