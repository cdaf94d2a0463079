"""The task record and its state machine, as pure functions over plain data.

    queued --assign--> assigned --accept--> working --complete--> completed
       ^                  |                    |
       +---- end_attempt (failure, timeout, lost agent, rejection) while retries remain
                          +--------------------+--> dead_letter when they do not
    any live status --cancel--> cancelled;   dead_letter --retry--> queued

Every function checks the current status (and the generation for agent reports), changes the task in place,
appends a history entry and returns nothing; a refused transition raises :class:`TransitionError` whose ``code``
is the reason sent back to the caller. Nothing here does I/O.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields
from enum import IntEnum, StrEnum
from operator import attrgetter, is_
from typing import Any

from pydantic_core import from_json, to_json  # compact JSON, ~4x faster than json.dumps on a task body

from hub.task_shape import ELEMENTS, INT_FIELDS, MAX_INT, REQUIRED, SHAPE, CorruptTask, finite
from shared.payloads import Outcome, TaskResult, VerificationReport, version1_outcome


class TaskStatus(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    WORKING = "working"
    COMPLETED = "completed"
    DEAD_LETTER = "dead_letter"
    CANCELLED = "cancelled"


LIVE = frozenset({TaskStatus.QUEUED, TaskStatus.ASSIGNED, TaskStatus.WORKING})
IN_FLIGHT = frozenset({TaskStatus.ASSIGNED, TaskStatus.WORKING})
FINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.DEAD_LETTER, TaskStatus.CANCELLED})


class Priority(IntEnum):
    URGENT = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


class EndReason(StrEnum):
    """Why an attempt ended without success; recorded as the dead-letter reason code."""

    AGENT_ERROR = "agent_error"
    VERIFICATION_FAILED = "verification_failed"
    TIMEOUT = "timeout"
    AGENT_LOST = "agent_lost"
    REJECTED = "rejected"
    STUCK = "stuck"
    DEPENDENCY_FAILED = "dependency_failed"
    # The agent loop stopped on a guardrail (reported by the sidecar as the task_failed reason).
    REPETITION = "repetition"
    MAX_ITERATIONS = "max_iterations"
    BUDGET = "budget"
    WALL_CLOCK = "wall_clock"
    CONTEXT_OVERFLOW = "context_overflow"
    MODEL_ERROR = "model_error"
    NO_PROGRESS = "no_progress"
    FORMAT_ERRORS = "format_errors"
    MERGE_CONFLICT = "merge_conflict"
    """The sidecar could not rebase the task's change onto its repository's moved head (hub/repos/followups.py)."""

    @classmethod
    def reported(cls, code: str | None) -> EndReason:
        """The reason for an agent's ``task_failed`` with reason ``code``: a guardrail stop keeps its own code;
        anything else (no code, a free-form one, one the hub decides itself such as ``timeout``) is agent_error."""
        return cls(code) if code in GUARDRAIL_STOPS or code == cls.MERGE_CONFLICT else cls.AGENT_ERROR


GUARDRAIL_STOPS = frozenset(
    {
        EndReason.REPETITION,
        EndReason.MAX_ITERATIONS,
        EndReason.BUDGET,
        EndReason.WALL_CLOCK,
        EndReason.CONTEXT_OVERFLOW,
        EndReason.MODEL_ERROR,
        EndReason.NO_PROGRESS,
        EndReason.FORMAT_ERRORS,
    }
)
"""End reasons an agent may report: why its loop stopped."""


WaitingReason = dict[str, str]
"""``{"code": "no_agent_with_executor", "detail": "needs executor claude; connected agents offer shell"}``."""


class TransitionError(Exception):
    """A transition the task's current state does not allow; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


def new_task_id() -> str:
    return "task-" + secrets.token_hex(8)


@dataclass(slots=True)
class Task:
    id: str
    description: str
    created_at: int
    updated_at: int
    status: TaskStatus = TaskStatus.QUEUED
    priority: int = Priority.NORMAL
    metadata: dict[str, Any] = field(default_factory=dict)
    needed_capabilities: list[str] = field(default_factory=list)
    max_retries: int = 3
    retry_count: int = 0
    generation: int = 0
    depends_on: list[str] = field(default_factory=list)
    assign_to: str | None = None
    complexity_tier: str | None = None
    complexity: dict[str, Any] | None = None
    routing_decision: dict[str, Any] | None = None
    success_criteria: list[str] = field(default_factory=list)
    verification_steps: list[dict[str, Any]] = field(default_factory=list)
    file_hints: list[dict[str, Any]] = field(default_factory=list)
    repo: str | None = None
    branch: str | None = None
    goal_id: str | None = None
    executor: str | None = None
    skip_verification: bool = False
    verification_timeout_ms: int | None = None
    max_verification_retries: int = 0
    complete_by: int | None = None
    submitted_by: str | None = None
    idempotency: dict[str, Any] | None = None
    """``{"key", "sha256", "index"}`` when submitted with an idempotency key: the key, a digest of the request it
    came with, and the task's position in that request (0 for a single submission)."""
    assigned_to: str | None = None
    assigned_at: int | None = None
    accepted_at: int | None = None
    completed_at: int | None = None
    result: dict[str, Any] | None = None
    outcome: str | None = None
    tokens_used: int | None = None
    usage: dict[str, Any] | None = None
    """What the last reported attempt consumed (``shared.payloads.Usage``: tokens, model, provider, cost)."""
    verification_report: dict[str, Any] | None = None
    verification_history: list[dict[str, Any]] | None = None
    last_error: str | None = None
    dead_letter_reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    waiting_reason: WaitingReason | None = None
    """Why no connected agent can ever run this queued task (``{"code", "detail"}``), or None. Kept current by the
    hub (hub/waiting.py), not stored; every transition clears it."""
    # --- repositories (hub/repos) ---
    base_commit: str | None = None
    """The commit of the repository the current (or last) attempt started from, as the hub resolved it."""
    change: dict[str, Any] | None = None
    """The change the last attempt reported on the task's repository (``shared.repos.ChangeReport``)."""
    # --- retries (hub/retry_backoff.py) ---
    retry_at: int | None = None
    """When a queued retry may run (ms): the backoff after a failed attempt; None once assigned, or with no wait."""
    failed_on: list[str] = field(default_factory=list)
    """The agents whose attempts ended without success, oldest first (at most 16): the next attempt prefers others."""
    rerun_of: str | None = None
    """The finished task this one re-runs (``POST /api/tasks/{id}/rerun``)."""
    static_json: str | None = field(default=None, repr=False, compare=False)
    """Cache of the serialised fields in STATIC_FIELDS (not part of the record)."""
    static_of: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    """The objects ``static_json`` was made from: the cache holds while each field still holds the same object."""

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    def to_json(self) -> str:
        """The stored body. Fields fixed at submission are serialised once and the fragment reused, since a task
        is rewritten at every state change (this is the hot path of the store).

        The fragment is reused only while every static field still holds the very object it was made from, so a
        static field rebound after a write (``task.metadata = {...}``) is in the next body, never stale. Checking
        costs ~1 us a call; a ``__setattr__`` hook would cost ~0.12 us on every write of every field and ~8 us on
        every construction and load. A static value changed in place (``task.metadata["x"] = 1``) cannot be seen;
        nothing outside this module writes a static field at all (tests/hub/test_static_fields.py checks it)."""
        values = _static_values(self)
        static = self.static_json
        if static is None or not all(map(is_, values, self.static_of)):
            static = self.static_json = to_json(dict(zip(STATIC_FIELDS, values, strict=True))).decode()[1:-1]
            self.static_of = values
        fields_now = {name: getattr(self, name) for name in _DYNAMIC_FIELDS}
        fields_now["status"] = self.status.value  # an enum member costs to_json 2 us; its value 0.04 us
        dynamic = to_json(fields_now).decode()
        return "{" + static + "," + dynamic[1:]

    @classmethod
    def from_json(cls, text: str | bytes) -> Task:
        """Read a stored body back; :class:`CorruptTask` if it is not JSON or not a task the hub can work with
        (a field of the wrong type, an unknown status, a priority outside 0-3). ``NaN`` and ``Infinity``, which
        earlier versions could store in free-form fields, are read as null: no encoder or sweep trips on them."""
        try:
            data = from_json(text)
        except (ValueError, TypeError) as exc:
            raise CorruptTask(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CorruptTask("not a JSON object")
        nan, inf = (b"NaN", b"Infinity") if isinstance(text, bytes) else ("NaN", "Infinity")
        if nan in text or inf in text:  # type: ignore[operator]
            data = finite(data)
        get = data.get
        for name, types in SHAPE:
            value = get(name)
            if type(value) not in types and (value is not None or name in data or name in REQUIRED):
                raise CorruptTask(f"{name} is {'missing' if value is None else 'a ' + type(value).__name__}")
        for name in INT_FIELDS:
            value = get(name)
            if value is not None and not -MAX_INT <= value <= MAX_INT:
                raise CorruptTask(f"{name} is out of range")
        for name, element in ELEMENTS:
            if (value := get(name)) and not set(map(type, value)) <= element:
                raise CorruptTask(f"{name} holds an element of the wrong type")
        try:
            data["status"] = TaskStatus(data["status"])
        except ValueError:
            raise CorruptTask(f"unknown status {str(data['status'])[:32]!r}") from None
        if not 0 <= data.get("priority", Priority.NORMAL) <= 3:
            raise CorruptTask("priority is outside 0-3")
        return cls(**{k: v for k, v in data.items() if k in _STORED_NAMES})

    def public(self) -> dict[str, Any]:
        """The task as the HTTP API shows it."""
        out = self.as_dict()
        out["priority_name"] = Priority(self.priority).name.lower()
        return out


_FIELD_NAMES = tuple(f.name for f in fields(Task) if f.name not in {"static_json", "static_of"})
STATIC_FIELDS = (
    "id",
    "description",
    "created_at",
    "metadata",
    "needed_capabilities",
    "max_retries",
    "depends_on",
    "assign_to",
    "complexity_tier",
    "complexity",
    "success_criteria",
    "verification_steps",
    "file_hints",
    "repo",
    "branch",
    "goal_id",
    "executor",
    "skip_verification",
    "verification_timeout_ms",
    "max_verification_retries",
    "complete_by",
    "submitted_by",
    "idempotency",
    "rerun_of",
)
"""Set at submission and never changed afterwards (only the functions in this module change a task; see to_json)."""
_static_values = attrgetter(*STATIC_FIELDS)
NOT_STORED = ("waiting_reason",)
"""Shown by the API, recomputed by the hub, never stored."""
_DYNAMIC_FIELDS = tuple(name for name in _FIELD_NAMES if name not in STATIC_FIELDS and name not in NOT_STORED)
_STORED_NAMES = frozenset(_FIELD_NAMES) - frozenset(NOT_STORED)


def attempt(task: Task) -> int:
    """The current (or next) attempt, counted from 1: the attempts already ended plus one. Not the generation,
    which also moves when a task is cancelled or requeued."""
    return task.retry_count + 1


def record(task: Task, event: str, now_ms: int, max_history: int = 50, **details: Any) -> None:
    task.updated_at = now_ms
    task.waiting_reason = None  # whatever happened, it is looked at again if the task is (still) queued
    task.history.append({"event": event, "timestamp": now_ms, "details": details})
    if len(task.history) > max_history:
        del task.history[: len(task.history) - max_history]


def set_waiting(task: Task, reason: WaitingReason | None) -> bool:
    """Set why a queued task waits (None: it does not wait for lack of a capable agent); True if it changed."""
    if task.waiting_reason == reason:
        return False
    task.waiting_reason = reason
    return True


def require_status(task: Task, allowed: frozenset[TaskStatus] | set[TaskStatus]) -> None:
    if task.status not in allowed:
        raise TransitionError("invalid_state", f"task is {task.status}")


def check_generation(task: Task, generation: int | None) -> None:
    if generation is not None and generation != task.generation:
        raise TransitionError("stale_generation", f"report for generation {generation}, task is at {task.generation}")


def assign(task: Task, agent_id: str, now_ms: int) -> None:
    require_status(task, {TaskStatus.QUEUED})
    task.status = TaskStatus.ASSIGNED
    task.generation += 1
    task.assigned_to = agent_id
    task.assigned_at = now_ms
    task.accepted_at = None
    task.retry_at = None
    record(task, "assigned", now_ms, agent_id=agent_id, generation=task.generation, attempt=attempt(task))


def accept(task: Task, agent_id: str, generation: int | None, now_ms: int) -> None:
    require_status(task, IN_FLIGHT)
    check_generation(task, generation)
    if task.assigned_to != agent_id:
        raise TransitionError("not_assigned_to_you", f"task is assigned to {task.assigned_to}")
    if task.status is TaskStatus.WORKING:
        return
    task.status = TaskStatus.WORKING
    task.accepted_at = now_ms
    record(task, "accepted", now_ms, agent_id=agent_id, generation=task.generation, attempt=attempt(task))


def outcome_of(result: TaskResult, report: VerificationReport | None) -> Outcome:
    """The outcome to record for a reported result: the sidecar's decision, held to the facts.

    ``failed`` when the run failed or anything reported says failed (the agent's word never makes a success);
    otherwise what the checks of the last report show (:meth:`VerificationReport.verdict`), so a claim of
    ``verified`` with no check behind it is recorded as ``unverified``. Version-1 results (``verification_status``,
    report ``status`` words) are read the same way.
    """
    if result.failed:
        return "failed"
    claims = (result.outcome, version1_outcome(result.verification_status), report.claimed if report else None)
    if "failed" in claims:
        return "failed"
    return report.verdict() if report is not None else "unverified"


def claimed_outcome(result: TaskResult, report: VerificationReport | None) -> Outcome | None:
    """What the sidecar said the outcome was (to tell when :func:`outcome_of` had to correct it)."""
    return result.outcome or version1_outcome(result.verification_status) or (report.claimed if report else None)


def complete(
    task: Task,
    agent_id: str,
    generation: int,
    result: dict[str, Any],
    outcome: str,
    now_ms: int,
    tokens_used: int | None = None,
    verification_report: dict[str, Any] | None = None,
    verification_history: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
) -> None:
    require_status(task, IN_FLIGHT)
    check_generation(task, generation)
    if task.assigned_to != agent_id:
        raise TransitionError("not_assigned_to_you", f"task is assigned to {task.assigned_to}")
    task.status = TaskStatus.COMPLETED
    task.result = result
    task.outcome = outcome
    task.tokens_used = tokens_used
    task.usage = usage
    task.verification_report = verification_report
    task.verification_history = verification_history
    task.completed_at = now_ms
    task.last_error = None
    task.change = result.get("change") if isinstance(result.get("change"), dict) else task.change
    record(
        task,
        "completed",
        now_ms,
        agent_id=agent_id,
        outcome=outcome,
        generation=generation,
        attempt=attempt(task),
        **change_facts(task.change),
    )


def change_facts(change: dict[str, Any] | None) -> dict[str, Any]:
    """What a history entry tells of an attempt's change on its repository: its tier and how it was published."""
    if not change:
        return {}
    return {k: change[k] for k in ("tier", "published", "commit") if isinstance(change.get(k), str)}


def end_attempt(
    task: Task,
    reason: EndReason,
    error: str,
    now_ms: int,
    result: dict[str, Any] | None = None,
    backoff_ms: int = 0,
) -> str:
    """End the current attempt without success; returns ``"retried"`` or ``"dead_letter"``.

    Every ended attempt counts toward ``max_retries``, whatever ended it, so a poison task reaches dead-letter. A
    retry waits ``backoff_ms`` (``retry_at``) and its agent is remembered in ``failed_on``.
    """
    require_status(task, IN_FLIGHT)
    agent_id, ended, generation = task.assigned_to, attempt(task), task.generation
    task.retry_count += 1
    task.last_error = f"{reason}: {error}" if error else str(reason)
    if result is not None:
        task.result = result
        if isinstance(result.get("change"), dict):
            task.change = result["change"]
    task.assigned_to = None
    task.accepted_at = None
    if task.retry_count >= task.max_retries:
        task.status = TaskStatus.DEAD_LETTER
        task.dead_letter_reason = str(reason)
        record(
            task,
            "dead_letter",
            now_ms,
            reason=str(reason),
            error=error,
            agent_id=agent_id,
            attempt=ended,
            generation=generation,
        )
        return "dead_letter"
    task.status = TaskStatus.QUEUED
    task.generation += 1
    task.retry_at = now_ms + backoff_ms if backoff_ms > 0 else None
    if agent_id is not None:
        task.failed_on = [*(a for a in task.failed_on if a != agent_id), agent_id][-16:]
    record(
        task,
        "retried",
        now_ms,
        reason=str(reason),
        error=error,
        agent_id=agent_id,
        retry_count=task.retry_count,
        attempt=ended,
        generation=generation,
        retry_at=task.retry_at,
    )
    return "retried"


def fail_dependency(task: Task, dependency_id: str, now_ms: int) -> None:
    """A dependency can never complete: the dependent fails visibly instead of waiting forever."""
    require_status(task, LIVE)
    task.status = TaskStatus.DEAD_LETTER
    task.assigned_to = None
    task.dead_letter_reason = str(EndReason.DEPENDENCY_FAILED)
    task.last_error = f"dependency_failed: {dependency_id}"
    record(task, "dead_letter", now_ms, reason="dependency_failed", dependency=dependency_id)


def cancel(task: Task, now_ms: int, by: str | None = None) -> TaskStatus:
    """Cancel a task that has not finished; returns the status it had."""
    require_status(task, LIVE | {TaskStatus.DEAD_LETTER})
    previous = task.status
    task.status = TaskStatus.CANCELLED
    task.generation += 1
    record(task, "cancelled", now_ms, previous_status=str(previous), by=by, agent_id=task.assigned_to)
    return previous


def retry(task: Task, now_ms: int, by: str | None = None) -> None:
    """Put a dead-lettered (or cancelled) task back in the queue with a fresh retry budget."""
    require_status(task, {TaskStatus.DEAD_LETTER, TaskStatus.CANCELLED})
    task.status = TaskStatus.QUEUED
    task.retry_count = 0
    task.generation += 1
    task.assigned_to = None
    task.last_error = None
    task.dead_letter_reason = None
    task.retry_at = None
    record(task, "requeued", now_ms, by=by)


def place_repo(task: Task, repo: str | None) -> None:
    """Set the repository of a task being submitted, before it is first stored (hub/repos decides which)."""
    task.repo = repo


def link_rerun(task: Task, original_id: str) -> None:
    """Name the finished task a task being submitted re-runs, before it is first stored (hub/api_reruns.py)."""
    task.rerun_of = original_id
