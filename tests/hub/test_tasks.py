"""The task state machine (hub/tasks.py), outcome classification and the timeout sweep decision, as pure tables."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from hub import tasks as T
from hub.agents import Agent
from hub.settings import HubSettings
from hub.sweeps import Reclaim, due_reclaims
from hub.tasks import EndReason, Task, TaskStatus, TransitionError
from shared.payloads import TaskResult, VerificationReport

NOW = 1_700_000_000_000
AGENT = "agent-a"
GEN = 4
"""The generation every in-flight task in the table is at."""

S = TaskStatus
IN_FLIGHT = {S.ASSIGNED, S.WORKING}


def task_in(status: TaskStatus, **overrides: Any) -> Task:
    """A task sitting in ``status``, built directly (not through the transitions under test)."""
    task = Task(
        id="task-0123456789abcdef",
        description="d",
        created_at=NOW - 10_000,
        updated_at=NOW - 10_000,
        status=status,
        generation=GEN,
        max_retries=3,
    )
    if status in IN_FLIGHT or status is S.COMPLETED:
        task.assigned_to = AGENT
        task.assigned_at = NOW - 5_000
    if status is S.WORKING:
        task.accepted_at = NOW - 4_000
    if status is S.DEAD_LETTER:
        task.retry_count = 3
        task.dead_letter_reason = "agent_error"
    for key, value in overrides.items():
        setattr(task, key, value)
    return task


Op = Callable[[Task], object]
OPS: dict[str, Op] = {
    "assign": lambda t: T.assign(t, AGENT, NOW),
    "accept": lambda t: T.accept(t, AGENT, t.generation, NOW),
    "complete": lambda t: T.complete(t, AGENT, t.generation, {"status": "success"}, "verified", NOW),
    "end_attempt": lambda t: T.end_attempt(t, EndReason.AGENT_ERROR, "boom", NOW),
    "fail_dependency": lambda t: T.fail_dependency(t, "task-dep", NOW),
    "cancel": lambda t: T.cancel(t, NOW, by="admin"),
    "retry": lambda t: T.retry(t, NOW, by="admin"),
}

# (status, operation) -> new status, or the TransitionError code. Every pair is listed.
TABLE: dict[tuple[TaskStatus, str], TaskStatus | str] = {
    (S.QUEUED, "assign"): S.ASSIGNED,
    (S.QUEUED, "accept"): "invalid_state",
    (S.QUEUED, "complete"): "invalid_state",
    (S.QUEUED, "end_attempt"): "invalid_state",
    (S.QUEUED, "fail_dependency"): S.DEAD_LETTER,
    (S.QUEUED, "cancel"): S.CANCELLED,
    (S.QUEUED, "retry"): "invalid_state",
    (S.ASSIGNED, "assign"): "invalid_state",
    (S.ASSIGNED, "accept"): S.WORKING,
    (S.ASSIGNED, "complete"): S.COMPLETED,
    (S.ASSIGNED, "end_attempt"): S.QUEUED,
    (S.ASSIGNED, "fail_dependency"): S.DEAD_LETTER,
    (S.ASSIGNED, "cancel"): S.CANCELLED,
    (S.ASSIGNED, "retry"): "invalid_state",
    (S.WORKING, "assign"): "invalid_state",
    (S.WORKING, "accept"): S.WORKING,
    (S.WORKING, "complete"): S.COMPLETED,
    (S.WORKING, "end_attempt"): S.QUEUED,
    (S.WORKING, "fail_dependency"): S.DEAD_LETTER,
    (S.WORKING, "cancel"): S.CANCELLED,
    (S.WORKING, "retry"): "invalid_state",
    (S.COMPLETED, "assign"): "invalid_state",
    (S.COMPLETED, "accept"): "invalid_state",
    (S.COMPLETED, "complete"): "invalid_state",
    (S.COMPLETED, "end_attempt"): "invalid_state",
    (S.COMPLETED, "fail_dependency"): "invalid_state",
    (S.COMPLETED, "cancel"): "invalid_state",
    (S.COMPLETED, "retry"): "invalid_state",
    (S.DEAD_LETTER, "assign"): "invalid_state",
    (S.DEAD_LETTER, "accept"): "invalid_state",
    (S.DEAD_LETTER, "complete"): "invalid_state",
    (S.DEAD_LETTER, "end_attempt"): "invalid_state",
    (S.DEAD_LETTER, "fail_dependency"): "invalid_state",
    (S.DEAD_LETTER, "cancel"): S.CANCELLED,
    (S.DEAD_LETTER, "retry"): S.QUEUED,
    (S.CANCELLED, "assign"): "invalid_state",
    (S.CANCELLED, "accept"): "invalid_state",
    (S.CANCELLED, "complete"): "invalid_state",
    (S.CANCELLED, "end_attempt"): "invalid_state",
    (S.CANCELLED, "fail_dependency"): "invalid_state",
    (S.CANCELLED, "cancel"): "invalid_state",
    (S.CANCELLED, "retry"): S.QUEUED,
}


def test_table_covers_every_status_and_operation() -> None:
    """The transition table lists every (status, operation) pair exactly once."""
    assert set(TABLE) == {(s, op) for s in TaskStatus for op in OPS}


@pytest.mark.parametrize(("status", "op"), list(TABLE), ids=[f"{s}-{op}" for s, op in TABLE])
def test_transition_table(status: TaskStatus, op: str) -> None:
    """Each operation either moves the task to the listed status or is refused with the listed code, unchanged."""
    task = task_in(status)
    before = copy.deepcopy(task.as_dict())
    expected = TABLE[(status, op)]
    if isinstance(expected, TaskStatus):
        OPS[op](task)
        assert task.status is expected
    else:
        with pytest.raises(TransitionError) as info:
            OPS[op](task)
        assert info.value.code == expected
        assert task.as_dict() == before, "a refused transition changes nothing"


FENCED: list[tuple[TaskStatus, str, Op, str]] = [
    (S.ASSIGNED, "accept stale generation", lambda t: T.accept(t, AGENT, GEN - 1, NOW), "stale_generation"),
    (S.WORKING, "accept stale generation", lambda t: T.accept(t, AGENT, GEN - 1, NOW), "stale_generation"),
    (S.ASSIGNED, "accept newer generation", lambda t: T.accept(t, AGENT, GEN + 1, NOW), "stale_generation"),
    (S.ASSIGNED, "accept by another agent", lambda t: T.accept(t, "intruder", GEN, NOW), "not_assigned_to_you"),
    (S.WORKING, "accept by another agent", lambda t: T.accept(t, "intruder", None, NOW), "not_assigned_to_you"),
    (
        S.ASSIGNED,
        "complete stale generation",
        lambda t: T.complete(t, AGENT, GEN - 1, {}, "verified", NOW),
        "stale_generation",
    ),
    (
        S.WORKING,
        "complete stale generation",
        lambda t: T.complete(t, AGENT, GEN - 1, {}, "verified", NOW),
        "stale_generation",
    ),
    (
        S.WORKING,
        "complete by another agent",
        lambda t: T.complete(t, "intruder", GEN, {}, "verified", NOW),
        "not_assigned_to_you",
    ),
    (
        S.WORKING,
        "complete by another agent, stale too",
        lambda t: T.complete(t, "intruder", GEN - 1, {}, "verified", NOW),
        "stale_generation",
    ),
    (
        S.COMPLETED,
        "complete again, stale generation",
        lambda t: T.complete(t, AGENT, GEN - 1, {}, "verified", NOW),
        "invalid_state",
    ),
    (
        S.QUEUED,
        "accept stale generation of a requeued task",
        lambda t: T.accept(t, AGENT, GEN - 1, NOW),
        "invalid_state",
    ),
]


@pytest.mark.parametrize(("status", "case", "op", "code"), FENCED, ids=[c for _, c, _, _ in FENCED])
def test_agent_reports_are_fenced(status: TaskStatus, case: str, op: Op, code: str) -> None:
    """An agent report is checked for status, then generation, then assignee, and a refusal changes nothing."""
    task = task_in(status)
    before = copy.deepcopy(task.as_dict())
    with pytest.raises(TransitionError) as info:
        op(task)
    assert info.value.code == code
    assert task.as_dict() == before


def test_accept_without_generation_is_allowed() -> None:
    """A task_accepted without a generation (older sidecars) is accepted for the assignee."""
    task = task_in(S.ASSIGNED)
    T.accept(task, AGENT, None, NOW)
    assert task.status is S.WORKING and task.accepted_at == NOW


def test_assign_hands_out_a_new_generation() -> None:
    """Assigning bumps the generation, records the agent and time and appends an ``assigned`` history entry."""
    task = task_in(S.QUEUED, assigned_to=None, accepted_at=123)
    T.assign(task, AGENT, NOW)
    assert (task.generation, task.assigned_to, task.assigned_at, task.accepted_at) == (GEN + 1, AGENT, NOW, None)
    assert task.history[-1] == {
        "event": "assigned",
        "timestamp": NOW,
        "details": {"agent_id": AGENT, "generation": GEN + 1, "attempt": 1},
    }


def test_accept_twice_records_once() -> None:
    """Accepting an already working task is a no-op: no second ``accepted`` entry."""
    task = task_in(S.ASSIGNED)
    T.accept(task, AGENT, GEN, NOW)
    T.accept(task, AGENT, GEN, NOW + 1)
    assert [h["event"] for h in task.history] == ["accepted"]
    assert task.accepted_at == NOW


def test_complete_records_the_result() -> None:
    """Completion stores result, outcome, tokens and verification data and clears the last error."""
    task = task_in(S.WORKING, last_error="timeout: earlier attempt")
    report = {"status": "pass"}
    T.complete(
        task,
        AGENT,
        GEN,
        {"status": "success"},
        "verified",
        NOW,
        tokens_used=42,
        verification_report=report,
        verification_history=[report],
    )
    assert (task.result, task.outcome, task.tokens_used, task.completed_at) == (
        {"status": "success"},
        "verified",
        42,
        NOW,
    )
    assert task.verification_report == report and task.verification_history == [report]
    assert task.last_error is None
    assert task.history[-1]["event"] == "completed"
    assert task.history[-1]["details"] == {"agent_id": AGENT, "outcome": "verified", "generation": GEN, "attempt": 1}


@pytest.mark.parametrize("reason", list(EndReason), ids=str)
def test_every_ended_attempt_counts(reason: EndReason) -> None:
    """Whatever ended the attempt, it counts toward max_retries and the task is requeued under a new generation."""
    task = task_in(S.WORKING)
    assert T.end_attempt(task, reason, "why", NOW) == "retried"
    assert (task.status, task.retry_count, task.generation, task.assigned_to) == (S.QUEUED, 1, GEN + 1, None)
    assert task.last_error == f"{reason}: why"
    assert task.history[-1]["event"] == "retried"
    assert task.history[-1]["details"]["reason"] == str(reason)


@pytest.mark.parametrize("reason", list(EndReason), ids=str)
def test_last_attempt_dead_letters_with_reason(reason: EndReason) -> None:
    """The attempt that reaches max_retries dead-letters the task with the reason code that ended it."""
    task = task_in(S.ASSIGNED, retry_count=2)
    assert T.end_attempt(task, reason, "", NOW, result={"status": "failed"}) == "dead_letter"
    assert (task.status, task.retry_count, task.dead_letter_reason) == (S.DEAD_LETTER, 3, str(reason))
    assert task.result == {"status": "failed"}
    assert task.last_error == str(reason)
    assert task.history[-1]["event"] == "dead_letter"


@pytest.mark.parametrize(("max_retries", "attempts"), [(1, 1), (2, 2), (3, 3), (5, 5)])
def test_poison_task_dead_letters_after_max_retries(max_retries: int, attempts: int) -> None:
    """A task whose every attempt fails dead-letters after exactly max_retries attempts."""
    task = task_in(S.QUEUED, max_retries=max_retries, assigned_to=None)
    outcomes = []
    while task.status is S.QUEUED:
        T.assign(task, AGENT, NOW)
        outcomes.append(T.end_attempt(task, EndReason.TIMEOUT, "", NOW))
    assert outcomes == ["retried"] * (attempts - 1) + ["dead_letter"]
    assert task.retry_count == max_retries


def test_fail_dependency_names_the_dependency() -> None:
    """A dependent whose dependency cannot complete dead-letters with reason dependency_failed."""
    task = task_in(S.QUEUED)
    T.fail_dependency(task, "task-dep", NOW)
    assert task.dead_letter_reason == "dependency_failed"
    assert task.last_error == "dependency_failed: task-dep"
    assert task.history[-1]["details"] == {"reason": "dependency_failed", "dependency": "task-dep"}


@pytest.mark.parametrize("status", [S.QUEUED, S.ASSIGNED, S.WORKING, S.DEAD_LETTER], ids=str)
def test_cancel_fences_and_reports_previous_status(status: TaskStatus) -> None:
    """Cancelling returns the previous status and bumps the generation, so the old attempt's reports go stale."""
    task = task_in(status)
    assert T.cancel(task, NOW, by="admin") is status
    assert task.generation == GEN + 1
    assert task.history[-1]["details"]["previous_status"] == str(status)


@pytest.mark.parametrize("status", [S.DEAD_LETTER, S.CANCELLED], ids=str)
def test_retry_gives_a_fresh_budget(status: TaskStatus) -> None:
    """Retrying a dead-lettered or cancelled task requeues it with retry_count 0 and no error."""
    task = task_in(status, retry_count=3, last_error="agent_error: x")
    T.retry(task, NOW, by="admin")
    assert (task.status, task.retry_count, task.generation) == (S.QUEUED, 0, GEN + 1)
    assert (task.last_error, task.dead_letter_reason, task.assigned_to) == (None, None, None)
    assert task.history[-1]["event"] == "requeued"


def test_history_is_capped() -> None:
    """History keeps only the newest ``max_history`` entries."""
    task = task_in(S.QUEUED)
    for n in range(12):
        T.record(task, f"e{n}", NOW + n, max_history=5)
    assert [h["event"] for h in task.history] == ["e7", "e8", "e9", "e10", "e11"]
    assert task.updated_at == NOW + 11


def test_json_round_trip() -> None:
    """A task survives serialisation to its stored JSON and back, unknown stored keys ignored."""
    task = task_in(S.WORKING, metadata={"k": [1, 2]}, needed_capabilities=["code"], depends_on=["task-x"])
    T.record(task, "accepted", NOW)
    text = task.to_json().replace("{", '{"obsolete_field":1,', 1)
    back = Task.from_json(text)
    assert back == task and back.status is S.WORKING


def test_public_view_names_the_priority() -> None:
    """The API view of a task adds the priority's name."""
    assert [task_in(S.QUEUED, priority=p).public()["priority_name"] for p in range(4)] == [
        "urgent",
        "high",
        "normal",
        "low",
    ]


PASS = [{"name": "a", "status": "pass"}]
MIXED = [{"name": "a", "status": "pass"}, {"name": "b", "status": "fail"}]
FAIL = [{"name": "a", "status": "fail"}, {"name": "b", "status": "timeout"}]
OUTCOMES: list[tuple[dict[str, Any], dict[str, Any] | None, str]] = [
    # the sidecar's decision, recorded as is when the checks bear it out
    ({"status": "success", "outcome": "verified"}, {"outcome": "verified", "checks": PASS}, "verified"),
    ({"status": "success", "outcome": "partial_pass"}, {"outcome": "partial_pass", "checks": MIXED}, "partial_pass"),
    ({"status": "success", "outcome": "unverified"}, {"outcome": "unverified", "checks": []}, "unverified"),
    ({"status": "success", "outcome": "unverified"}, None, "unverified"),
    ({"status": "success", "outcome": "failed"}, {"outcome": "failed", "checks": FAIL}, "failed"),
    # ... and corrected when they do not: no check behind a success claim makes it unverified
    ({"status": "success", "outcome": "verified"}, None, "unverified"),
    ({"status": "success", "outcome": "verified"}, {"outcome": "verified", "checks": []}, "unverified"),
    ({"status": "success", "outcome": "partial_pass"}, {"checks": []}, "unverified"),
    ({"status": "success", "outcome": "verified"}, {"outcome": "verified", "checks": MIXED}, "partial_pass"),
    ({"status": "success", "outcome": "verified"}, {"outcome": "verified", "checks": FAIL}, "failed"),
    ({"status": "success", "outcome": "unverified"}, {"checks": PASS}, "verified"),
    ({"status": "success", "outcome": "verified"}, {"outcome": "failed", "checks": []}, "failed"),
    # a failure anywhere is a failure
    ({"status": "failed", "outcome": "verified"}, {"outcome": "verified", "checks": PASS}, "failed"),
    ({"status": "FAILED"}, None, "failed"),
    ({"status": "error"}, None, "failed"),
    ({"status": "timeout"}, None, "failed"),
    ({"status": "failure", "verification_status": "verified"}, None, "failed"),
    ({"status": "failed", "verification_status": "partial_pass"}, None, "failed"),
    # version-1 results: the same rules over their words
    ({"status": "success"}, None, "unverified"),
    ({}, None, "unverified"),
    ({"status": "success", "verification_status": "verified"}, None, "unverified"),
    ({"status": "success", "verification_status": "pass"}, None, "unverified"),
    ({"status": "success"}, {"status": "passed"}, "unverified"),
    ({"status": "success"}, {"status": "pass", "checks": PASS}, "verified"),
    ({"status": "success", "verification_status": "verified"}, {"status": "auto_pass", "checks": []}, "unverified"),
    ({"status": "success", "verification_status": "verified"}, {"status": "skip", "checks": []}, "unverified"),
    ({"status": "success", "verification_status": "partial_pass"}, None, "unverified"),
    ({"status": "success", "verification_status": "partial_pass"}, {"status": "fail", "checks": MIXED}, "partial_pass"),
    ({"status": "success"}, {"status": "partial_pass"}, "unverified"),
    ({"status": "success", "verification_status": "failed"}, None, "failed"),
    ({"status": "success"}, {"status": "failed"}, "failed"),
    ({"status": "success"}, {"status": "timeout", "checks": []}, "failed"),
    ({"status": "success", "verification_status": "execution_failed"}, None, "failed"),
    ({"status": "success", "verification_status": "error"}, None, "failed"),
    ({"status": "success", "verification_status": "skipped"}, None, "unverified"),
]


@pytest.mark.parametrize(("result", "report", "outcome"), OUTCOMES)
def test_outcome_of(result: dict[str, Any], report: dict[str, Any] | None, outcome: str) -> None:
    """The sidecar's outcome is recorded when its checks bear it out, corrected to what they show when not, and a
    reported failure is never a success; version-1 words follow the same rules."""
    typed = None if report is None else VerificationReport.model_validate(report)
    assert T.outcome_of(TaskResult.model_validate(result), typed) == outcome


# --- the timeout sweep decision (hub/sweeps.due_reclaims) ---------------------------------------------------------

SETTINGS = HubSettings(acceptance_timeout_s=60, reconnect_grace_s=15, stuck_after_s=600, stuck_working_after_s=1200)
STARTED = NOW - 3_600_000
MIN = 60_000


def sweep_case(
    status: TaskStatus,
    *,
    connected: bool = True,
    departed_ago_ms: int | None = None,
    awaiting_ms: int | None = None,
    assigned_ago_ms: int = 0,
    updated_ago_ms: int = 0,
) -> list[Reclaim]:
    task = task_in(status, assigned_at=NOW - assigned_ago_ms, updated_at=NOW - updated_ago_ms)
    agents = {}
    if connected:
        agent = Agent(agent_id=AGENT, connected_at=STARTED)
        agent.awaiting_report_since = None if awaiting_ms is None else NOW - awaiting_ms
        agents[AGENT] = agent
    departed = {} if departed_ago_ms is None else {AGENT: NOW - departed_ago_ms}
    return due_reclaims([task], agents, departed, STARTED, NOW, SETTINGS)


SWEEPS: list[tuple[str, dict[str, Any], EndReason | None]] = [
    ("fresh assignment", {"status": S.ASSIGNED}, None),
    ("assigned just under the acceptance timeout", {"status": S.ASSIGNED, "assigned_ago_ms": 59_999}, None),
    ("assigned past the acceptance timeout", {"status": S.ASSIGNED, "assigned_ago_ms": MIN}, EndReason.TIMEOUT),
    (
        "working long after assignment",
        {"status": S.WORKING, "assigned_ago_ms": 30 * MIN, "updated_ago_ms": 19 * MIN},
        None,
    ),
    (
        "working past the stuck limit",
        {"status": S.WORKING, "assigned_ago_ms": 30 * MIN, "updated_ago_ms": 20 * MIN},
        EndReason.STUCK,
    ),
    ("agent left within the grace", {"status": S.WORKING, "connected": False, "departed_ago_ms": 14_999}, None),
    (
        "agent left past the grace",
        {"status": S.WORKING, "connected": False, "departed_ago_ms": 15_000},
        EndReason.AGENT_LOST,
    ),
    ("agent never came back after a hub restart", {"status": S.ASSIGNED, "connected": False}, EndReason.AGENT_LOST),
    ("reconnected, report still due", {"status": S.WORKING, "awaiting_ms": 14_999}, None),  # state_report_timeout_s
    ("reconnected, no report in time", {"status": S.WORKING, "awaiting_ms": 15_000}, EndReason.AGENT_LOST),
]


@pytest.mark.parametrize(("case", "kwargs", "reason"), SWEEPS, ids=[c for c, _, _ in SWEEPS])
def test_due_reclaims(case: str, kwargs: dict[str, Any], reason: EndReason | None) -> None:
    """The sweep reclaims an in-flight attempt exactly when its timeout has run out, with the matching reason."""
    out = sweep_case(**kwargs)
    if reason is None:
        assert out == []
    else:
        assert [(r.task_id, r.generation, r.reason) for r in out] == [("task-0123456789abcdef", GEN, reason)]


def test_hub_restart_counts_restart_grace_from_start() -> None:
    """An assignee not seen since a restart gets the restart grace (longer than a sidecar's backoff cap) from the
    hub's start, not the shorter reconnect grace."""
    task = task_in(S.WORKING)
    assert SETTINGS.restart_grace_s > SETTINGS.reconnect_grace_s
    grace_ms = int(SETTINGS.restart_grace_s * 1000)
    assert due_reclaims([task], {}, {}, NOW - int(SETTINGS.reconnect_grace_s * 1000), NOW, SETTINGS) == []
    assert due_reclaims([task], {}, {}, NOW - grace_ms + 1000, NOW, SETTINGS) == []
    assert len(due_reclaims([task], {}, {}, NOW - grace_ms, NOW, SETTINGS)) == 1


def test_long_task_timeout_extends_the_stuck_limit() -> None:
    """A working task with a long ``metadata.timeout_ms`` is not stuck before that timeout plus the grace."""
    task = task_in(S.WORKING)
    task.metadata = {"timeout_ms": 3_000_000}
    agent = Agent(AGENT, 0)
    agent.state = "working"
    quiet_for = lambda s: NOW - int(s * 1000)  # noqa: E731
    task.updated_at = quiet_for(SETTINGS.stuck_working_after_s + 1)
    assert due_reclaims([task], {AGENT: agent}, {}, 0, NOW, SETTINGS) == []
    task.updated_at = quiet_for(3000 + SETTINGS.stuck_after_timeout_grace_s)
    assert [r.reason for r in due_reclaims([task], {AGENT: agent}, {}, 0, NOW, SETTINGS)] == [EndReason.STUCK]
