"""Typed payloads inside the protocol's frames: a task's result, its verification report and checks, its usage, and
the routing decision the hub sends with it.

Each has a known shape: typed fields, unknown fields ignored (older and newer peers keep working), immutable. What a
sidecar sends as a whole is held to the limits of :mod:`shared.jsonsafe` all through, the fields ignored included.
The outcome vocabulary lives here too, with the one function that reads it off the checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from shared import jsonsafe
from shared.fields import Count, JsonObject, ShortText, TimestampMs
from shared.payload_base import Payload as Payload  # re-exported: the payloads' base
from shared.payload_base import SafePayload as SafePayload
from shared.repos import ChangeReport

Outcome = Literal["verified", "partial_pass", "unverified", "failed"]
"""How a finished task turned out, decided once on the sidecar from its verification report and recorded by the hub
as is (after checking it against the checks): ``verified`` every check passed, ``partial_pass`` some passed,
``unverified`` no check ran, ``failed`` none passed (or the run itself failed)."""
OUTCOMES: tuple[Outcome, ...] = ("verified", "partial_pass", "unverified", "failed")
CheckStatus = Literal["pass", "fail", "error", "timeout"]
"""One check: passed, failed, could not be evaluated (``error``), or was killed at its time limit."""
CHECK_OUTPUT_CHARS = 4000
"""Longest check output a report carries; longer output keeps its head and its tail."""
FAILED_RESULT_STATUSES = frozenset({"failed", "failure", "error", "timeout"})
"""``TaskResult.status`` words that mean the run failed, whatever the verification says."""

_VERSION1_OUTCOMES: dict[str, Outcome] = {
    "verified": "verified", "pass": "verified", "passed": "verified", "partial_pass": "partial_pass",
    "failed": "failed", "fail": "failed", "failure": "failed", "error": "failed", "timeout": "failed",
    "execution_failed": "failed", "unverified": "unverified", "auto_pass": "unverified", "skip": "unverified",
    "skipped": "unverified",
}  # fmt: skip
_CHECK_STATUSES: dict[str, CheckStatus] = {
    "pass": "pass", "passed": "pass", "ok": "pass", "success": "pass", "fail": "fail", "failed": "fail",
    "failure": "fail", "timeout": "timeout", "timed_out": "timeout",
}  # fmt: skip


def version1_outcome(word: str | None) -> Outcome | None:
    """The outcome a version-1 word stands for (a result's ``verification_status`` or a report's ``status``, such
    as ``pass``, ``auto_pass``, ``skip`` or ``execution_failed``); None for no word or one it does not know."""
    return _VERSION1_OUTCOMES.get(word.lower()) if isinstance(word, str) else None


def outcome_from_checks(statuses: Iterable[str]) -> Outcome:
    """The outcome the check statuses show: none ran → unverified, all pass → verified, some → partial_pass."""
    total = passed = 0
    for status in statuses:
        total += 1
        passed += status == "pass"
    if not total:
        return "unverified"
    return "verified" if passed == total else "partial_pass" if passed else "failed"


def excerpt(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: its head and its tail (where errors usually are) around a marker."""
    if len(text) <= limit:
        return text
    marker = f"\n[... {len(text) - limit} characters cut ...]\n"
    keep = max(limit - len(marker), 2)
    return text[: keep // 2] + marker + text[len(text) - (keep - keep // 2) :]


Usd = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


class Check(Payload):
    """One verification check as reported."""

    name: str = ""
    """What was checked, for people (``file_exists answer.txt``); version-1 checks get it from type and target."""
    status: CheckStatus = "error"
    output: Annotated[str, AfterValidator(lambda text: excerpt(text, CHECK_OUTPUT_CHARS))] = ""
    duration_ms: Count | None = None
    type: ShortText | None = None
    """file_exists | test_passes | git_clean | command_succeeds."""
    target: str | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_version1(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data:
            named = data.get("description") or " ".join(str(data[k]) for k in ("type", "target") if data.get(k))
            return {**data, "name": str(named)}
        return data

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: Any) -> Any:
        return _CHECK_STATUSES.get(value.lower(), "error") if isinstance(value, str) else "error"


class CheckSummary(Payload):
    total: Count = 0
    passed: Count = 0
    failed: Count = 0
    errors: Count = 0
    timed_out: Count = 0


class VerificationReport(SafePayload):
    """One verification run over a task's workspace: its checks and the outcome they show."""

    outcome: Outcome | None = None
    """What the checks show (:func:`outcome_from_checks`); absent in version-1 reports, see :attr:`claimed`."""
    checks: list[Check] = []
    status: ShortText | None = None
    """The checks' aggregate status (pass, fail, error, timeout; absent when none ran). Version-1 reports also say
    ``auto_pass`` (no steps) or ``skip`` here, and no :attr:`outcome`."""
    skipped: bool = False
    """The task asked for no verification (``skip_verification``)."""
    summary: CheckSummary | None = None
    run_number: Count | None = None
    started_at: TimestampMs | None = None
    duration_ms: Count | None = None
    timeout_ms: Count | None = None
    """Set when the whole run was stopped at this limit."""

    @property
    def claimed(self) -> Outcome | None:
        """The outcome the report states: its ``outcome``, or in a version-1 report without checks its ``status``
        word (with checks, that word only aggregates them: ``fail`` when some passed is a partial pass)."""
        return self.outcome or (None if self.checks else version1_outcome(self.status))

    def verdict(self) -> Outcome:
        """The outcome the facts allow: the checks' when any ran; with none, ``failed`` if the report says so (a
        run stopped before its first check) and otherwise ``unverified``, whatever it claims."""
        if self.checks:
            return outcome_from_checks(check.status for check in self.checks)
        return "failed" if self.claimed == "failed" else "unverified"


class TaskResult(SafePayload):
    """What an execution produced, as the sidecar reports it (``task_complete`` and ``task_failed``)."""

    status: ShortText = "success"
    """``success`` or ``failed``: a fact about the run (version 1 also says error, timeout, failure)."""
    outcome: Outcome | None = None
    """The sidecar's one decision from its verification report (see :data:`Outcome`)."""
    output: str | None = None
    error: str | None = None
    reason: str | None = None
    """Machine-readable cause of a failure: ``exit_code``, ``timeout``, ``verification_failed``, a guardrail..."""
    exit_code: Annotated[int, Field(ge=-jsonsafe.MAX_INT, le=jsonsafe.MAX_INT)] | None = None
    executor: ShortText | None = None
    execution_ms: Count | None = None
    duration_ms: Count | None = None
    verification_status: ShortText | None = None
    """The version-1 name of :attr:`outcome` (sent alongside it, so older hubs read the same decision)."""
    verification_attempts: Count | None = None
    files_changed: list[str] | None = None
    stderr: str | None = None
    timed_out: bool | None = None
    truncated: bool | None = None
    termination_reason: ShortText | None = None
    """Why a model executor's loop ended: completed, max_iterations, budget, wall_clock, repetition..."""
    termination_detail: str | None = None
    iterations_used: Count | None = None
    parse_stats: dict[str, dict[str, Count]] | None = None
    """Tool-call parse paths per model (``sidecar.parser.ParseStats``)."""
    trajectory_path: str | None = None
    change: ChangeReport | None = None
    """The change made on the task's repository (:mod:`shared.repos`), None for a task without a repository."""
    # Version-1 sidecars put their usage here: read by :meth:`version1_usage`, never kept with the result.
    tokens_in: Count | None = Field(default=None, exclude=True)
    tokens_out: Count | None = Field(default=None, exclude=True)
    model_used: ShortText | None = Field(default=None, exclude=True)
    provider: ShortText | None = Field(default=None, exclude=True)
    cost_usd: Usd | None = Field(default=None, exclude=True)
    equivalent_claude_cost_usd: Usd | None = Field(default=None, exclude=True)
    # Prompt efficiency (agent loop): prompt tokens the model server evaluated rather than took from its KV cache.
    prompt_tokens_reevaluated: Count | None = None
    """Summed over the run's model calls, when the server reports it (llama.cpp ``timings``, OpenAI cached tokens)."""

    def version1_usage(self) -> Usage | None:
        """The usage a version-1 result carried (tokens, model, provider, cost), if it carried tokens."""
        if self.tokens_in is None and self.tokens_out is None:
            return None
        fields: dict[str, object] = {
            "tokens_in": self.tokens_in or 0, "tokens_out": self.tokens_out or 0, "model": self.model_used,
            "provider": self.provider, "cost_usd": self.cost_usd,
            "equivalent_cost_usd": self.equivalent_claude_cost_usd,
        }  # fmt: skip
        return Usage.model_validate({name: value for name, value in fields.items() if value is not None})

    @property
    def failed(self) -> bool:
        """The run itself failed (its status says so), whatever any verification claims."""
        return self.status.lower() in FAILED_RESULT_STATUSES


class Usage(SafePayload):
    """What an attempt consumed, for the cost ledger."""

    tokens_in: Count = 0
    tokens_out: Count = 0
    model: ShortText | None = None
    provider: ShortText | None = None
    cost_usd: Usd | None = None
    equivalent_cost_usd: Usd | None = None
    """What the same tokens would have cost on the reference Claude model."""
    gpu_seconds: Seconds | None = None
    eval_seconds: Seconds | None = None

    @property
    def tokens_total(self) -> int:
        return self.tokens_in + self.tokens_out


def _wire_name(name: str) -> Any:
    """A field known on the wire by its version-1 ``name`` (read under either name, written under that one)."""
    return Field(default=None, validation_alias=name, serialization_alias=name)


class RoutingDecision(Payload):
    """Which executor and model should run a task, decided by the hub at assignment. On the wire it keeps its
    version-1 names (``target_type``, ``selected_model``...), which older sidecars read."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    # Strings are unconstrained (the frame limit bounds them): the hub builds this, and a sidecar must read whatever
    # it sends, such as a model name a task's metadata asked for.
    target: str | None = _wire_name("target_type")
    """The executor: shell, ollama, claude (``sidecar`` is read as shell)."""
    provider: str | None = None
    """Who serves the model: ollama, claude (as ``Usage.provider`` names it); none for a shell command."""
    endpoint: str | None = _wire_name("selected_endpoint")
    """Where the model is served (an Ollama URL), when the hub picks it."""
    model: str | None = _wire_name("selected_model")
    reason: str | None = _wire_name("classification_reason")
    tier: str | None = _wire_name("effective_tier")
    preferred_target: str | None = None
    """The target the task prefers; another ``target`` means the agent lacked it (``fallback_used``)."""
    fallback_used: bool | None = None
    decided_at: TimestampMs | None = None
    endpoint_id: str | None = None
    """The hub's id of the endpoint serving the model (``GET /api/endpoints/{id}``)."""
    score: float | None = None
    """The chosen agent's routing score; ``score_parts`` its terms, ``explanation`` the why in words."""
    score_parts: dict[str, float] | None = None
    explanation: str | None = None

    def stored(self) -> JsonObject:
        """The decision as the task record keeps it and the API shows it (its wire form)."""
        return self.model_dump(mode="json", exclude_none=True)
