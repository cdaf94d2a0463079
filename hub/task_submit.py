"""The body of ``POST /api/tasks`` and of the batch: every field validated, bounded and turned into a task.

Unknown fields are ignored and reported back as warnings; free-form ``metadata`` passes the JSON safety checks; a
submission whose ``task_assign`` frame could not fit the sidecar's frame limit is refused here, at submit.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub import complexity
from hub.fleet import assign_message
from hub.routing import WORST_PLACEMENT, routing_decision
from hub.tasks import Priority, Task, new_task_id
from shared import jsonsafe
from shared.protocol import MAX_FRAME_BYTES, MAX_TASK_TIMEOUT_MS, MAX_TIMESTAMP_MS, NoControl, encode

PriorityName = Literal["urgent", "high", "normal", "low"]
MAX_STEPS_WITHOUT_WARNING = 10
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]
Identifier = Annotated[str, Field(min_length=1, max_length=128), NoControl]
FRAME_SLACK_BYTES = 64 * 1024
"""What a task_assign frame adds to the submitted fields at most (ids, complexity, routing without the model);
a submission serialising to under half the frame limit minus this cannot make a frame over it."""


class FileHint(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    path: Annotated[str, Field(min_length=1, max_length=1024), NoControl]
    reason: Annotated[str, Field(max_length=1000)] | None = None


class VerificationStep(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    type: Literal["file_exists", "test_passes", "git_clean", "command_succeeds"]
    target: Annotated[str, Field(min_length=1, max_length=2000)]
    description: Annotated[str, Field(max_length=1000)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=3600)] | None = None


class TaskSubmit(BaseModel):
    """Body of ``POST /api/tasks``; unknown fields are ignored and reported back as warnings."""

    model_config = ConfigDict(extra="allow", strict=True)

    description: Annotated[str, Field(min_length=1, max_length=10_000)]
    priority: PriorityName | Annotated[int, Field(ge=0, le=3)] = "normal"
    needed_capabilities: list[Identifier] = Field(default_factory=list)
    metadata: jsonsafe.SafeJson = Field(default_factory=dict)
    max_retries: Annotated[int, Field(ge=1, le=100)] = 3
    depends_on: list[Identifier] = Field(default_factory=list)
    assign_to: Identifier | None = None
    complexity_tier: Literal["trivial", "standard", "complex", "unknown"] | None = None
    success_criteria: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list)
    verification_steps: list[VerificationStep] = Field(default_factory=list)
    file_hints: list[FileHint] = Field(default_factory=list)
    repo: Annotated[str, Field(max_length=512), NoControl] | None = None
    branch: Annotated[str, Field(max_length=256), NoControl] | None = None
    goal_id: Annotated[str, Field(max_length=128), NoControl] | None = None
    executor: Literal["shell", "ollama", "claude", "openai"] | None = None
    skip_verification: bool = False
    verification_timeout_ms: Annotated[int, Field(gt=0, le=3_600_000)] | None = None
    max_verification_retries: Annotated[int, Field(ge=0, le=5)] = 0
    complete_by: Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS)] | None = None
    idempotency_key: IdempotencyKey | None = None

    @field_validator("priority", mode="wrap")
    @classmethod
    def _one_priority_error(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One error naming ``priority`` instead of one per union member (``priority.literal[...]``...)."""
        try:
            return handler(v)
        except ValidationError:
            raise ValueError("one of urgent, high, normal, low (or 0-3)") from None

    @field_validator("metadata")
    @classmethod
    def _timeout_in_range(cls, v: dict[str, Any]) -> dict[str, Any]:
        """``metadata.timeout_ms``, which the hub's sweeps compute with, is a positive number of at most 7 days."""
        timeout_ms = v.get("timeout_ms")
        if timeout_ms is not None and (
            not isinstance(timeout_ms, int | float)
            or isinstance(timeout_ms, bool)
            or not 0 < timeout_ms <= MAX_TASK_TIMEOUT_MS
        ):
            raise PydanticCustomError(
                "invalid_value",
                "timeout_ms must be a number of milliseconds in (0, {max}]",
                {"max": MAX_TASK_TIMEOUT_MS, "json_path": "timeout_ms"},
            )
        return v

    @model_validator(mode="after")
    def _fits_in_a_frame(self) -> TaskSubmit:
        """The task_assign frame handing this task to an agent must fit in the agents' frame limit."""
        if len(self.__pydantic_serializer__.to_json(self)) <= (MAX_FRAME_BYTES - FRAME_SLACK_BYTES) // 2:
            return self  # the common case, without building the frame
        task = self.to_task("", MAX_TIMESTAMP_MS)
        task.generation, task.assigned_at = jsonsafe.MAX_INT, MAX_TIMESTAMP_MS
        task.routing_decision = routing_decision(  # longest model name, largest placement
            task, ("m" * 256,), MAX_TIMESTAMP_MS, placement=WORST_PLACEMENT
        ).stored()
        size = len(encode(assign_message(task)).encode())
        if size > MAX_FRAME_BYTES:
            raise PydanticCustomError(
                "too_large",
                "handing this task to an agent takes a {size}-byte frame, over the agents' limit of "
                "{limit} bytes: keep large data out of the task (metadata, description, steps)",
                {"size": size, "limit": MAX_FRAME_BYTES},
            )
        return self

    @field_validator("repo")
    @classmethod
    def _normalise_repo(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().rstrip("/")
        return v[:-4] if v.endswith(".git") else v

    def to_task(
        self, submitted_by: str, now_ms: int, idempotency: dict[str, Any] | None = None, task_id: str | None = None
    ) -> Task:
        """The task to queue (``task_id``: one chosen beforehand, as a goal's tasks are named before they exist)."""
        priority = self.priority if isinstance(self.priority, int) else Priority[self.priority.upper()].value
        assign_to = self.assign_to or (
            self.metadata.get("assign_to") if isinstance(self.metadata.get("assign_to"), str) else None
        )
        return Task(
            id=task_id or new_task_id(),
            description=self.description,
            created_at=now_ms,
            updated_at=now_ms,
            priority=priority,
            metadata=self.metadata,
            needed_capabilities=sorted(set(self.needed_capabilities)),
            max_retries=self.max_retries,
            depends_on=list(dict.fromkeys(self.depends_on)),
            assign_to=assign_to,
            complexity_tier=self.complexity_tier,
            complexity=complexity.build(
                self.complexity_tier, self.description, len(self.file_hints), len(self.verification_steps)
            ),
            success_criteria=self.success_criteria,
            verification_steps=[s.model_dump(exclude_none=True) for s in self.verification_steps],
            file_hints=[h.model_dump(exclude_none=True) for h in self.file_hints],
            repo=self.repo,
            branch=self.branch,
            goal_id=self.goal_id,
            executor=self.executor,
            skip_verification=self.skip_verification,
            verification_timeout_ms=self.verification_timeout_ms,
            max_verification_retries=self.max_verification_retries,
            complete_by=self.complete_by,
            submitted_by=submitted_by,
            idempotency=idempotency,
        )


class TaskBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tasks: Annotated[list[TaskSubmit], Field(min_length=1, max_length=1000)]
    idempotency_key: IdempotencyKey | None = None
    """One key for the whole batch (a retry answers the same list of ids); items may not carry their own."""
