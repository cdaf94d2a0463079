"""Text search over tasks: what ``GET /api/tasks?q=`` accepts and which tasks it keeps.

A task matches when the search text is a substring of its id, description, repository, assigned agent or goal id,
ignoring case (both sides lowercased, as the dashboard does for the rows it updates live). The text is at most
:data:`MAX_QUERY` characters with no control characters or lone surrogates, so it never spans two fields of the
joined haystack (they are separated by a control character). Matching is one pass over the fields of each task
visited: linear in the tasks and their text, with no index to keep.
"""

from __future__ import annotations

from collections.abc import Callable

from hub.tasks import Task

MAX_QUERY = 200
"""Longest search text accepted, in characters (the ``q`` parameter of :mod:`hub.api_tasks` holds to it)."""


_SEP = "\x00"


def haystack(task: Task) -> str:
    """The task's searchable fields, lowercased, joined by a separator no search text can hold."""
    fields = (task.id, task.description, task.repo or "", task.assigned_to or "", task.goal_id or "")
    return _SEP.join(fields).lower()


def matcher(q: str) -> Callable[[Task], bool]:
    """A predicate keeping the tasks whose searchable fields hold ``q``, ignoring case."""
    needle = q.lower()
    return lambda task: needle in haystack(task)
