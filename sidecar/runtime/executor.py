"""Executors: what turns one ``task_assign`` into an :class:`Outcome`, and the registry that picks one.

An executor reports the command's (or model's) own failure in the ``Outcome``; it raises only for bugs. It never
sends anything itself: progress goes to the :class:`EventSink`, the result back to the runner.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from shared.protocol import TaskAssign

OutcomeStatus = Literal["success", "failed"]

TARGET_TYPES = {"sidecar": "shell", "shell": "shell", "ollama": "ollama", "claude": "claude"}
"""``routing_decision.target_type`` → executor name (the hub's ``sidecar`` tier means "run it here as shell")."""


@dataclass(frozen=True)
class Outcome:
    """What an execution produced; ``status`` is a fact about the run, never the model's opinion."""

    status: OutcomeStatus
    output: str = ""
    exit_code: int | None = None
    reason: str | None = None
    """Machine-readable cause of a failure: ``exit_code``, ``timeout``, ``executor_unavailable``, ..."""
    error: str | None = None
    """Human-readable cause of a failure."""
    duration_ms: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    """Executor-specific fields of the ``TaskResult`` (``stderr``, ``truncated``, ``termination_reason``...); a model
    executor also puts its verdict here (``outcome``, ``verification_report``, ``verification_history``) and its
    ``usage``."""

    @classmethod
    def failed(cls, reason: str, error: str, **kwargs: Any) -> Outcome:
        """A failed outcome with a reason code and a message."""
        return cls(status="failed", reason=reason, error=error, **kwargs)


STOP_CODES: dict[str, str] = {
    "repetition": "repetition",
    "max_iterations": "max_iterations",
    "token_budget": "budget",
    "wall_clock": "wall_clock",
    "context_overflow": "context_overflow",
    "model_error": "model_error",
    "no_progress": "no_progress",
    "format_errors": "format_errors",
}
"""A model loop's stop reason (``Outcome.reason``: the agent loop's ``TerminationReason`` values) -> the code a failed
task reports in ``task_failed.reason``, which the hub records as the dead-letter reason (``completed`` and
``cancelled`` are not guardrail stops)."""


def tokens_used(outcome: Outcome) -> int | None:
    """Prompt plus completion tokens of the model calls behind ``outcome``; ``None`` when no model ran."""
    values = [outcome.details.get(key) for key in ("tokens_in", "tokens_out")]
    counts = [n for n in values if isinstance(n, int) and not isinstance(n, bool)]
    return sum(counts) if counts else None


class EventSink(Protocol):
    """Where an executor streams what it is doing (sent to the hub as ``task_progress``)."""

    async def emit(self, event_type: str, text: str, **fields: Any) -> None:
        """Report one execution event (``output``, ``command_started``, ``tool_call``...)."""
        ...


class Executor(Protocol):
    """Runs one task in its workspace."""

    name: str

    def is_idempotent(self, task: TaskAssign) -> bool:
        """Whether running ``task`` again after a sidecar restart is safe (else it is failed and retried by the hub)."""
        ...

    async def run(self, task: TaskAssign, workspace: Path, events: EventSink) -> Outcome:
        """Execute ``task`` with ``workspace`` as its only writable directory."""
        ...


class UnavailableExecutor:
    """Stands in for an executor this sidecar does not have: every run fails with a clear reason."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    def __repr__(self) -> str:
        return f"<UnavailableExecutor {self.name!r}>"

    def is_idempotent(self, task: TaskAssign) -> bool:
        """Failing again is harmless."""
        return True

    async def run(self, task: TaskAssign, workspace: Path, events: EventSink) -> Outcome:
        """Fail at once with reason ``executor_unavailable``."""
        return Outcome.failed("executor_unavailable", self.why)


class ExecutorRegistry:
    """The executors this sidecar has, by name."""

    def __init__(self, executors: Mapping[str, Executor]) -> None:
        self._executors = dict(executors)

    def __repr__(self) -> str:
        return f"<ExecutorRegistry {sorted(self._executors)}>"

    @property
    def names(self) -> list[str]:
        """Names of the available executors."""
        return sorted(self._executors)

    def pick(self, task: TaskAssign) -> Executor:
        """The executor for ``task``, or an :class:`UnavailableExecutor` that explains why there is none."""
        name = executor_name(task)
        if name is None:
            return UnavailableExecutor(
                "none",
                "the task names no executor, has no metadata.shell_command and no routing_decision.target_type "
                "(it needs LLM routing)",
            )
        executor = self._executors.get(name)
        if executor is None:
            return UnavailableExecutor(
                name, f"executor {name!r} is not available on this sidecar (available: {', '.join(self.names)})"
            )
        return executor

    def get(self, name: str) -> Executor | None:
        """The executor named ``name``, if this sidecar has it."""
        return self._executors.get(name)


def executor_name(task: TaskAssign) -> str | None:
    """Which executor a task asks for: ``task.executor``, else ``shell`` for a ``shell_command``, else routing."""
    if task.executor:
        return task.executor
    if task.metadata.get("shell_command"):
        return "shell"
    target = task.routing_decision.target if task.routing_decision is not None else None
    if target:
        return TARGET_TYPES.get(target, target)
    return None


def task_timeout_s(task: TaskAssign, default_s: float) -> float:
    """The task's wall-clock limit: ``metadata.timeout_ms`` if it is a positive number, else ``default_s``."""
    timeout_ms = task.metadata.get("timeout_ms")
    if isinstance(timeout_ms, int | float) and not isinstance(timeout_ms, bool) and timeout_ms > 0:
        return timeout_ms / 1000
    return default_s


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch (the protocol's timestamp unit)."""
    return int(time.time() * 1000)
