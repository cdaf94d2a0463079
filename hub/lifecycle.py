"""Typed task lifecycle events: what happened to a task, told by the queue once the commit that made it so is done.

Every event carries ``seq``, a number that grows with every event the hub ever records (never reused, not even
after the rows of pruned tasks are deleted), and ``at``, the hub's time in ms. The queue writes each event as a row
of ``task_events`` in the same transaction as the task rows it describes, so the table is the history, and
delivers it to listeners (:mod:`hub.listeners`) after that transaction committed, in order of ``seq``.

``attempt`` counts hand-outs that ended or may end (1 for the first attempt, ``retry_count + 1`` at the time);
``generation`` is the fencing number of a hand-out (it also moves on cancel and requeue), so the two differ.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    kind: ClassVar[str] = "event"
    seq: int
    at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent(LifecycleEvent):
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSubmitted(TaskEvent):
    kind: ClassVar[str] = "task_submitted"
    priority: int
    goal_id: str | None = None
    submitted_by: str | None = None
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAssigned(TaskEvent):
    kind: ClassVar[str] = "task_assigned"
    agent_id: str
    generation: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAccepted(TaskEvent):
    kind: ClassVar[str] = "task_accepted"
    agent_id: str
    generation: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEnded(TaskEvent):
    """An attempt ended: completed, or failed and then ``retried`` (queued again) or ``dead_letter``."""

    kind: ClassVar[str] = "task_ended"
    outcome: str
    """``verified``, ``partial_pass``, ``unverified`` (no checks ran) or ``failed``."""
    reason: str | None
    """Why a failed attempt ended (an :class:`hub.tasks.EndReason` value); None for a completion."""
    then: str
    """What the task became: ``completed``, ``retried`` or ``dead_letter``."""
    agent_id: str | None
    generation: int
    attempt: int
    usage: dict[str, Any] | None = None
    """What the attempt reported it used (tokens, model, provider, cost), when it said."""
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDeadLettered(TaskEvent):
    """A task that never ran failed because a task it depends on can no longer complete."""

    kind: ClassVar[str] = "task_dead_lettered"
    reason: str
    dependency_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCancelled(TaskEvent):
    kind: ClassVar[str] = "task_cancelled"
    previous_status: str
    by: str | None = None
    agent_id: str | None = None
    """The agent that held it, when it was in flight."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRequeued(TaskEvent):
    """A dead-lettered or cancelled task queued again with a fresh retry budget."""

    kind: ClassVar[str] = "task_requeued"
    by: str | None = None
    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksPruned(LifecycleEvent):
    """Retention forgot these finished tasks, and their events with them."""

    kind: ClassVar[str] = "tasks_pruned"
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnreadableEvent(LifecycleEvent):
    """A stored row that is not an event this hub can read (a listener still gets its place in the order)."""

    kind: ClassVar[str] = "unreadable"
    stored_kind: str
    task_id: str | None = None
    detail: str = ""


KINDS: dict[str, type[LifecycleEvent]] = {
    cls.kind: cls
    for cls in (
        TaskSubmitted,
        TaskAssigned,
        TaskAccepted,
        TaskEnded,
        TaskDeadLettered,
        TaskCancelled,
        TaskRequeued,
        TasksPruned,
    )
}
_ADAPTERS = {kind: TypeAdapter(cls) for kind, cls in KINDS.items()}

USAGE_KEYS = (
    "tokens_in",
    "tokens_out",
    "tokens_used",
    "model_used",
    "provider",
    "cost_usd",
    "equivalent_claude_cost_usd",
    "duration_ms",
)


def usage_of(result: Mapping[str, Any] | None, tokens_used: int | None = None) -> dict[str, Any] | None:
    """The usage fields of a reported result (scalars only), or None when it reported none."""
    usage = {
        k: v
        for k, v in (result or {}).items()
        if k in USAGE_KEYS and isinstance(v, int | float | str) and not isinstance(v, bool)
    }
    if tokens_used is not None:
        usage["tokens_used"] = tokens_used
    return usage or None


def body(event: LifecycleEvent) -> str:
    """The stored JSON of ``event``. Text SQLite or UTF-8 cannot hold (a lone surrogate) is escaped, never fatal."""
    try:
        return to_json(event).decode()
    except ValueError:
        return json.dumps(asdict(event), separators=(",", ":"), default=str)


def from_row(seq: int, ts: int, task_id: str | None, kind: str, text: str | bytes) -> LifecycleEvent:
    """An event read back from its row; a row that cannot be read becomes :class:`UnreadableEvent`."""
    adapter = _ADAPTERS.get(kind)
    if adapter is not None:
        try:
            event: LifecycleEvent = adapter.validate_json(text)
        except ValidationError as exc:
            logger.warning("task event %s (%s): unreadable row (%d errors)", seq, kind[:64], exc.error_count())
        else:
            if event.seq == seq:
                return event
    return UnreadableEvent(
        seq=seq,
        at=ts,
        stored_kind=str(kind)[:64],
        task_id=task_id,
        detail="the stored event is not one this hub can read",
    )


def as_dict(event: LifecycleEvent) -> dict[str, Any]:
    """The event as the HTTP API shows it: its fields and its ``kind``."""
    return {"kind": event.kind, **asdict(event)}
