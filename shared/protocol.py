"""AgentCom wire protocol: every message on the agents' socket, as pydantic models.

Frames are JSON text objects with a string ``type``. Message names, field names and error replies follow the
original AgentCom so its sidecars and tools keep working; unknown fields pass through (are ignored). Types are
strict: a string where an integer is expected is an error, never coerced.

Sidecar -> hub: ``SidecarMessage`` (decoded with :func:`decode_sidecar`).
Hub -> sidecar: ``HubMessage`` (decoded with :func:`decode_hub`, used by sidecars and test clients).
Inside frames, objects of a known shape are typed payloads (:class:`TaskResult`, :class:`VerificationReport`,
:class:`Usage`, :class:`RoutingDecision`); only genuinely free-form objects stay :data:`Json`.

Versions: every frame carries ``protocol_version``, an integer major version (a frame without one is version 1).
Within a major version fields are only ever added, and unknown ones are ignored, so every version-1 sidecar keeps
working; a change older peers would misread takes a new major version. The hub answers a frame of a major version
it does not speak with ``unsupported_protocol_version``, naming the versions it does.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared import jsonsafe
from shared.field_errors import echo, field_errors
from shared.fields import MAX_TIMESTAMP_MS as MAX_TIMESTAMP_MS  # re-exported: the API bounds timestamps with it
from shared.fields import AgentId, Count, CpuPercent, ErrorText, Json, JsonObject, ShortText, TaskId, TimestampMs
from shared.fields import NoControl as NoControl  # re-exported: the API checks identifiers with it
from shared.payloads import RoutingDecision, TaskResult, Usage, VerificationReport
from shared.repos import RepoCheckout

PROTOCOL_VERSION = 1
"""The major protocol version this code speaks, sent in every frame."""
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
"""The major versions the hub accepts from a sidecar."""
MAX_FRAME_BYTES = 1024 * 1024
"""Largest frame either side accepts; bigger frames close the socket with 1009."""
MAX_TASK_TIMEOUT_MS = 7 * 24 * 3600 * 1000
"""Longest ``metadata.timeout_ms`` a task may ask for (7 days). The sweeps read a larger stored value as this, and
a non-positive, non-finite or non-numeric one as absent."""


class Message(BaseModel):
    """Base of every frame: strict types, unknown fields ignored, immutable."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    protocol_version: Annotated[int, Field(ge=0, le=jsonsafe.MAX_INT)] = PROTOCOL_VERSION


# --- sidecar -> hub ---------------------------------------------------------------------------------------------


class Identify(Message):
    type: Literal["identify"]
    agent_id: AgentId
    token: Annotated[str, Field(min_length=1, max_length=256)]
    name: ShortText | None = None
    status: ShortText | None = None
    capabilities: list[Annotated[str, Field(max_length=128), NoControl]] = []
    ollama_url: Annotated[str, Field(max_length=512), NoControl] | None = None
    client_type: ShortText | None = None
    sandbox_level: ShortText | None = None
    models: list[ShortText] = []
    pm2_info: Json | None = None
    executors: Annotated[list[Annotated[str, Field(max_length=64), NoControl]], Field(max_length=32)] | None = None
    """Executors this agent runs (``shell``, ``ollama``, ``claude``); left out by older sidecars, for which the
    hub derives them from the rest of the frame."""


class Ping(Message):
    type: Literal["ping"]


class TaskAccepted(Message):
    type: Literal["task_accepted"]
    task_id: TaskId
    generation: Count | None = None


class TaskProgress(Message):
    type: Literal["task_progress"]
    task_id: TaskId
    generation: Count | None = None
    progress: Count | None = None
    execution_event: Json | None = None


class TaskComplete(Message):
    """The sidecar produced a result (success or not) for its attempt; ``result.outcome`` is its verdict."""

    type: Literal["task_complete"]
    task_id: TaskId
    generation: Count
    result: TaskResult = TaskResult()
    tokens_used: Count | None = None
    """Tokens the attempt used (``usage.tokens_in + usage.tokens_out`` when there is a usage)."""
    usage: Usage | None = None
    verification_report: VerificationReport | None = None
    """The last verification run; the outcome follows from it."""
    verification_history: list[VerificationReport] | None = None
    """Every verification run of the attempt, the last one included (a model executor fixes and re-runs)."""

    @property
    def reported_usage(self) -> Usage | None:
        """``usage``, or the usage a version-1 sidecar put in its result."""
        return self.usage or self.result.version1_usage()


class TaskFailed(Message):
    """The sidecar could not produce a result for its attempt (crashed, restarted mid-task...)."""

    type: Literal["task_failed"]
    task_id: TaskId
    generation: Count
    error: ErrorText | None = None
    reason: ErrorText | None = None
    result: TaskResult | None = None
    tokens_used: Count | None = None
    usage: Usage | None = None
    verification_report: VerificationReport | None = None

    @property
    def reported_usage(self) -> Usage | None:
        """``usage``, or the usage a version-1 sidecar put in its result."""
        return self.usage or (self.result.version1_usage() if self.result is not None else None)


class TaskRejected(Message):
    type: Literal["task_rejected"]
    task_id: TaskId
    generation: Count | None = None
    reason: ErrorText | None = None


class TaskRecovering(Message):
    type: Literal["task_recovering"]
    task_id: TaskId
    generation: Count | None = None


class StateReport(Message):
    type: Literal["state_report"]
    task_id: TaskId
    status: ShortText | None = None
    generation: Count | None = None
    assigned_at: TimestampMs | None = None


class ResourceReport(Message):
    type: Literal["resource_report"]
    cpu_percent: CpuPercent | None = None
    ram_used_bytes: Count | None = None
    ram_total_bytes: Count | None = None
    vram_used_bytes: Count | None = None
    vram_total_bytes: Count | None = None
    timestamp: TimestampMs | None = None


class AgentRestarting(Message):
    type: Literal["agent_restarting"]
    reason: ErrorText | None = None


class UnreachableRepo(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    name: ShortText
    reason: ErrorText = ""


class RepoReach(Message):
    """The sidecar's answer to ``repo_registry``: which repositories it can fetch (probed outside the sandbox, with
    its own credentials). The scheduler sends a task with a repository only to agents that reached it."""

    type: Literal["repo_reach"]
    reachable: Annotated[list[ShortText], Field(max_length=1000)] = []
    unreachable: Annotated[list[UnreachableRepo], Field(max_length=1000)] = []


class BudgetRequest(Message):
    """Before a model call: may it run? The hub reserves the estimate against every budget the call falls under
    (hub/costs) and answers ``budget_grant``."""

    type: Literal["budget_request"]
    request_id: Annotated[str, Field(min_length=1, max_length=128), NoControl]
    task_id: TaskId
    model: ShortText | None = None
    provider: ShortText | None = None
    est_tokens_in: Count = 0
    est_tokens_out: Count = 0
    est_usd: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] | None = None
    """The sidecar's own price of the estimate; the hub prices it from its table when absent."""


class UsageReport(Message):
    """After a model call: what it used. The hub records it in the cost ledger and settles the grant."""

    type: Literal["usage_report"]
    task_id: TaskId
    grant_id: Annotated[str, Field(max_length=128), NoControl] | None = None
    usage: Usage
    wall_ms: Count | None = None
    eval_seconds: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] | None = None


SidecarMessage = Annotated[
    Identify
    | Ping
    | TaskAccepted
    | TaskProgress
    | TaskComplete
    | TaskFailed
    | TaskRejected
    | TaskRecovering
    | StateReport
    | ResourceReport
    | AgentRestarting
    | RepoReach
    | BudgetRequest
    | UsageReport,
    Field(discriminator="type"),
]


# --- hub -> sidecar ---------------------------------------------------------------------------------------------


class Identified(Message):
    type: Literal["identified"] = "identified"
    agent_id: str


class ErrorReply(Message):
    type: Literal["error"] = "error"
    error: str
    message_type: str | None = None
    errors: list[JsonObject] | None = None
    detail: str | None = None
    task_id: str | None = None
    supported_versions: list[int] | None = None


class Pong(Message):
    type: Literal["pong"] = "pong"
    timestamp: int


class TaskAssign(Message):
    type: Literal["task_assign"] = "task_assign"
    task_id: str
    description: str
    generation: int
    assigned_at: int
    metadata: JsonObject = {}
    repo: str | None = None
    branch: str | None = None
    file_hints: list[JsonObject] = []
    success_criteria: list[str] = []
    verification_steps: list[JsonObject] = []
    complexity: JsonObject | None = None
    routing_decision: RoutingDecision | None = None
    executor: str | None = None
    skip_verification: bool = False
    verification_timeout_ms: int | None = None
    max_verification_retries: int = 0
    checkout: RepoCheckout | None = None
    """The task's repository (:mod:`shared.repos`); with it the sidecar works in a git worktree on ``branch``."""


class TaskAck(Message):
    type: Literal["task_ack"] = "task_ack"
    task_id: str
    status: Literal["accepted", "complete", "retried", "dead_letter", "rejected", "duplicate"]


class TaskContinue(Message):
    type: Literal["task_continue"] = "task_continue"
    task_id: str
    generation: int


class TaskReassign(Message):
    type: Literal["task_reassign"] = "task_reassign"
    task_id: str


class TaskCancelled(Message):
    type: Literal["task_cancelled"] = "task_cancelled"
    task_id: str
    timestamp: int


class StateReportAck(Message):
    type: Literal["state_report_ack"] = "state_report_ack"
    task_id: str
    action: Literal["continue", "abort"]
    generation: int | None = None


class RestartSidecar(Message):
    type: Literal["restart_sidecar"] = "restart_sidecar"
    reason: str = "hub_commanded"


class RegistryRepo(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    name: str
    url: str
    default_branch: str = "main"


class RepoRegistry(Message):
    """The hub's repositories (names and URLs, never credentials), sent after ``identified`` and whenever the
    registry changes; the sidecar answers ``repo_reach``."""

    type: Literal["repo_registry"] = "repo_registry"
    repos: list[RegistryRepo] = []


class BudgetGrant(Message):
    """The answer to ``budget_request``: ``granted`` (with the ``grant_id`` to settle) or refused with ``reason``
    (``budget_exhausted``, ``budget_paused``...); ``limit`` is the most tokens the call may use."""

    type: Literal["budget_grant"] = "budget_grant"
    request_id: str
    granted: bool
    grant_id: str | None = None
    reason: str | None = None
    limit: int | None = None


HubMessage = Annotated[
    Identified
    | ErrorReply
    | Pong
    | TaskAssign
    | TaskAck
    | TaskContinue
    | TaskReassign
    | TaskCancelled
    | StateReportAck
    | RestartSidecar
    | RepoRegistry
    | BudgetGrant,
    Field(discriminator="type"),
]

sidecar_adapter: TypeAdapter[SidecarMessage] = TypeAdapter(SidecarMessage)
hub_adapter: TypeAdapter[HubMessage] = TypeAdapter(HubMessage)

SIDECAR_TYPES: tuple[str, ...] = tuple(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in (
        Identify,
        Ping,
        TaskAccepted,
        TaskProgress,
        TaskComplete,
        TaskFailed,
        TaskRejected,
        TaskRecovering,
        StateReport,
        ResourceReport,
        AgentRestarting,
        RepoReach,
        BudgetRequest,
        UsageReport,
    )
)


class FrameError(Exception):
    """A frame that cannot be accepted; ``reply`` is the AgentCom ``error`` message to send back."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply.error)
        self.reply = reply


def unsupported_version(version: object, message_type: object = None) -> FrameError:
    """The refusal of a frame whose ``protocol_version`` is not one the hub speaks."""
    shown = echo(version, 32)
    return FrameError(
        ErrorReply(
            error="unsupported_protocol_version",
            message_type=jsonsafe.printable(message_type, 64) if isinstance(message_type, str) else None,
            detail=f"protocol_version {shown!r} is not supported; this hub speaks "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}",
            supported_versions=list(SUPPORTED_VERSIONS),
        )
    )


def decode_sidecar(text: str | bytes) -> SidecarMessage:
    """Parse and validate one frame from a sidecar, raising :class:`FrameError` with the reply to send."""
    try:  # the common case, a valid frame, parsed and validated in one pass
        message = sidecar_adapter.validate_json(text)
    except ValidationError:
        pass  # work out exactly what is wrong, in AgentCom's terms
    else:
        if message.protocol_version not in SUPPORTED_VERSIONS:
            raise unsupported_version(message.protocol_version, message.type)
        return message
    try:  # strictly: lone surrogates, and NaN or huge numbers in any field, never reach the models
        data = jsonsafe.parse(text)
    except jsonsafe.UnsafeJson as exc:
        raise FrameError(ErrorReply(error="validation_failed", errors=[exc.as_error()])) from None
    except ValueError:
        raise FrameError(ErrorReply(error="invalid_json")) from None
    if not isinstance(data, dict):
        raise FrameError(ErrorReply(error="invalid_json", detail="a frame must be a JSON object"))
    mtype = data.get("type")
    version = data.get("protocol_version", PROTOCOL_VERSION)
    if type(version) is not int or version not in SUPPORTED_VERSIONS:  # first: a newer peer may send newer types
        raise unsupported_version(version, mtype)
    if mtype is None:
        raise FrameError(ErrorReply(error="validation_failed", errors=[{"field": "type", "error": "required"}]))
    if not isinstance(mtype, str):
        error: JsonObject = {"field": "type", "error": "wrong_type"}
        if (value := echo(mtype, 64)) is not None:
            error["value"] = value
        raise FrameError(ErrorReply(error="validation_failed", errors=[error]))
    if mtype not in SIDECAR_TYPES:
        raise FrameError(
            ErrorReply(
                error="unknown_message_type",
                message_type=jsonsafe.printable(mtype, 64),
                errors=[{"field": "type", "error": "unknown_message_type", "known_types": list(SIDECAR_TYPES)}],
            )
        )
    try:
        return sidecar_adapter.validate_python(data)
    except ValidationError as exc:
        raise FrameError(
            ErrorReply(error="validation_failed", message_type=mtype, errors=field_errors(exc, skip_prefix=1))
        ) from None


def decode_hub(text: str | bytes) -> HubMessage:
    """Parse one frame from the hub (sidecar side). Raises ``ValueError`` on anything malformed."""
    return hub_adapter.validate_json(text)


def encode(message: Message) -> str:
    """Serialise a message to its JSON text frame (``None`` fields left out)."""
    return message.model_dump_json(exclude_none=True)
