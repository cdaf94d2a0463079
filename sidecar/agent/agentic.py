"""Model executors (``ollama``, ``claude``): a ReAct loop in the task workspace, checked by verification, then fixed.

Build → verify → fix: the loop runs until the model answers or a guardrail stops it; the task's
``verification_steps`` then run on the workspace as it is, also after a budget or time exit, so partial work is
kept and judged. Failed checks come back to the model in the same conversation as a corrective turn
(``corrective_prompt``), up to ``max_verification_retries`` times. The model saying it is done is never enough:

- ``verified``: every check passed;
- ``partial_pass``: some checks pass and some fail;
- ``unverified``: no check ran (none asked for, or verification skipped) and the loop completed or changed the
  workspace before a guardrail stopped it (``termination_reason`` says which);
- ``failed``: no check passed, or nothing was done (the model failed before any change); the outcome is failed.

Prompts are the templates ``prompts/agentic_system.txt`` and ``prompts/agentic_task.txt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.payloads import Outcome as Verdict
from shared.payloads import Usage, VerificationReport
from shared.protocol import TaskAssign
from sidecar.agent.budget_gate import BudgetGate, gated
from sidecar.agent.cost import claude_cost_usd, equivalent_claude_cost_usd
from sidecar.agent.loop import ITERATIONS_BY_TIER, RETRYABLE_ENDINGS, Guardrails, LoopResult, ReactLoop
from sidecar.agent.loop import TerminationReason as Ending
from sidecar.agent.nudges import COMPACT_CONTEXT, FEW_SHOT, FINISH_TOOL
from sidecar.agent.ollama import OllamaChatModel
from sidecar.agent.openai_compat import OpenAIChatModel
from sidecar.agent.parser import ParseStats
from sidecar.agent.tools import ToolRegistry
from sidecar.agent.trajectory import Trajectory, trajectory_path
from sidecar.runtime.executor import EventSink, Outcome, task_timeout_s
from sidecar.runtime.verification import corrective_prompt, run_verification, timed_out_report
from sidecar.sandbox.base import Sandbox

if TYPE_CHECKING:
    from sidecar.agent.claude import ClaudeChatModel

logger = logging.getLogger(__name__)

SETTLED: frozenset[Verdict] = frozenset({"verified", "unverified"})
"""Report outcomes that leave nothing for a retry to fix: every check passed, or there is none."""
MIN_VERIFICATION_S = 10.0
"""Verification time granted even when the task's time is used up (the runner allows 30 s beyond it)."""
MAX_VERIFICATION_RETRIES = 5
"""The hub's cap on ``max_verification_retries``, enforced here too."""


@dataclass(frozen=True)
class AgenticConfig:
    """Limits of a model executor (the lead maps sidecar settings onto these)."""

    default_timeout_s: float = 600.0
    """Wall-clock limit of a task without ``metadata.timeout_ms`` (use the runner's ``limits.task_timeout_s``)."""
    verification_timeout_s: float = 120.0
    """Limit of one verification run when the task does not set ``verification_timeout_ms``."""
    verification_reserve: float = 0.2
    """Share of the task's time kept free of model work, for the verification that follows it."""
    token_budget: int = 400_000
    """Prompt plus completion tokens per task; ``metadata.token_budget`` overrides it."""
    iterations_by_tier: Mapping[str, int] = field(default_factory=lambda: dict(ITERATIONS_BY_TIER))
    max_format_errors: int = 3
    no_progress_limit: int = 4
    token_interval_s: float = 0.1
    """``token`` progress events are sent at most this often."""


class AgenticExecutor:
    """The shared build → verify → fix run; subclasses say which model to talk to and what it costs."""

    name = "agentic"
    gate: BudgetGate | None = None
    """The hub's budgets, asked before every model call (set by the sidecar's wiring; None: ungated)."""
    few_shot = True
    """Show an example of a correct call in the system prompt (small local models need it, Claude does not)."""

    def __init__(self, sandbox: Sandbox, config: AgenticConfig | None = None) -> None:
        self.sandbox = sandbox
        self.config = config or AgenticConfig()

    def is_idempotent(self, task: TaskAssign) -> bool:
        """Yes: the agent only changes its own workspace (no network), so a re-run resumes from the files left."""
        return True

    def make_model(self, task: TaskAssign) -> OllamaChatModel | OpenAIChatModel | ClaudeChatModel:
        raise NotImplementedError

    def costs_usd(self, model: str, tokens_in: int, tokens_out: int) -> tuple[float, float]:
        """(cost, what the same tokens would cost on the reference Claude model)."""
        raise NotImplementedError

    async def run(self, task: TaskAssign, workspace: Path, events: EventSink) -> Outcome:
        """Run the agent on ``task`` in ``workspace``; the outcome's ``details`` carry the verification verdict."""
        started = time.monotonic()
        try:
            model = self.make_model(task)
        except ValueError as exc:
            return Outcome.failed("invalid_task", str(exc))
        async with contextlib.aclosing(model):
            tools = ToolRegistry(workspace, self.sandbox)
            stats = ParseStats()
            trajectory = Trajectory(workspace, task_id=task.task_id, provider=model.provider, model=model.model,
                                    tools=[s["function"] for s in tools.schemas_ollama()])  # fmt: skip
            compact = getattr(model, "num_ctx", COMPACT_CONTEXT + 1) <= COMPACT_CONTEXT
            trajectory.messages.append({"role": "system", "content": system_prompt(tools, few_shot=self.few_shot)})
            loop = ReactLoop(gated(model, self.gate, task.task_id), tools, events, trajectory, stats,
                             token_interval_s=self.config.token_interval_s, compact=compact)  # fmt: skip
            timeout_s = task_timeout_s(task, self.config.default_timeout_s)
            guardrails = self._guardrails(task, started, timeout_s)
            await events.emit(
                "agent_started", f"{model.provider} {model.model}", model=model.model,
                max_iterations=guardrails.max_iterations, token_budget=guardrails.token_budget,
            )  # fmt: skip
            result, history = await self._build_verify_fix(
                task, workspace, events, loop, trajectory, guardrails, started + timeout_s
            )
        report = history[-1]
        status = final_outcome(report, result.termination_reason, loop.changes > 0)
        # A failed task never reports "completed": the loop ended normally, the checks failed.
        ending = "verification_failed" if status == "failed" and result.termination_reason is Ending.COMPLETED \
            else result.termination_reason.value  # fmt: skip
        cost, equivalent = self.costs_usd(model.model, loop.tokens_in, loop.tokens_out)
        usage = Usage(tokens_in=loop.tokens_in, tokens_out=loop.tokens_out, model=model.model, provider=model.provider,
                      cost_usd=cost, equivalent_cost_usd=equivalent)  # fmt: skip
        details = {
            "verification_report": report, "verification_history": history, "outcome": status,
            "verification_attempts": len(history), "termination_reason": ending,
            "termination_detail": result.detail, "iterations_used": loop.iterations, "usage": usage,
            "duration_ms": int((time.monotonic() - started) * 1000), "parse_stats": stats.as_dict(),
            "trajectory_path": trajectory_path(Path(".")).as_posix(),
            "prompt_tokens_reevaluated": loop.tokens_reevaluated,
        }  # fmt: skip
        trajectory.save(outcome=status, cost_usd=cost, duration_ms=details["duration_ms"])
        text = f"{status} ({ending})"
        await events.emit("agent_finished", text, outcome=status, termination_reason=ending,
                          iterations_used=loop.iterations, tokens_in=loop.tokens_in, tokens_out=loop.tokens_out,
                          cost_usd=cost)  # fmt: skip
        common: dict[str, Any] = {
            "output": result.final_answer,
            "duration_ms": details["duration_ms"],
            "details": details,
        }
        if status != "failed":
            return Outcome(status="success", **common)
        reason = "verification_failed" if result.termination_reason is Ending.COMPLETED else result.termination_reason
        passed = sum(check.status == "pass" for check in report.checks)
        error = (f"verification {report.verdict()}: {passed} of {len(report.checks)} checks passed; the agent loop "
                 f"ended with {result.termination_reason.value}")  # fmt: skip
        return Outcome.failed(str(reason), f"{error}: {result.detail}" if result.detail else error, **common)

    def _guardrails(self, task: TaskAssign, started: float, timeout_s: float) -> Guardrails:
        cfg = self.config
        tier = (task.complexity or {}).get("effective_tier") or (task.routing_decision and task.routing_decision.tier)
        budget = task.metadata.get("token_budget")
        budget = budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else cfg.token_budget
        return Guardrails(
            max_iterations=cfg.iterations_by_tier.get(str(tier), cfg.iterations_by_tier["standard"]),
            token_budget=budget, deadline=started + timeout_s * (1 - cfg.verification_reserve),
            max_format_errors=cfg.max_format_errors, no_progress_limit=cfg.no_progress_limit,
        )  # fmt: skip

    async def _build_verify_fix(
        self, task: TaskAssign, workspace: Path, events: EventSink, loop: ReactLoop, trajectory: Trajectory,
        guardrails: Guardrails, task_deadline: float,
    ) -> tuple[LoopResult, list[VerificationReport]]:  # fmt: skip
        retries = max(0, min(task.max_verification_retries, MAX_VERIFICATION_RETRIES))
        history: list[VerificationReport] = []
        prompt = task_prompt(task)
        for attempt in range(retries + 1):
            result = await loop.run(prompt, guardrails)
            report = await self._verify(task, workspace, attempt + 1, task_deadline)
            history.append(report)
            trajectory.add(
                "verification", attempt=loop.attempt, report=report.model_dump(mode="json", exclude_none=True)
            )
            trajectory.save()
            verdict, passed = report.verdict(), sum(check.status == "pass" for check in report.checks)
            await events.emit("verification", f"run {attempt + 1}: {verdict} ({passed}/{len(report.checks)} checks "
                              "passed)", outcome=verdict, run_number=attempt + 1)  # fmt: skip
            out_of_time = guardrails.deadline is not None and time.monotonic() >= guardrails.deadline
            if verdict in SETTLED or attempt == retries or out_of_time:
                break
            if result.termination_reason not in RETRYABLE_ENDINGS:
                break
            prompt = corrective_prompt(report, task.description, attempt + 1, retries, result.final_answer)
        return result, history

    async def _verify(self, task: TaskAssign, workspace: Path, run_number: int, task_deadline: float
                      ) -> VerificationReport:  # fmt: skip
        # Verification gets its own limit, but never (much) more than what is left of the task's time.
        timeout_s = (task.verification_timeout_ms or 0) / 1000 or self.config.verification_timeout_s
        timeout_s = min(timeout_s, max(task_deadline - time.monotonic(), MIN_VERIFICATION_S))
        try:
            async with asyncio.timeout(timeout_s):
                return await run_verification(task.verification_steps, workspace, self.sandbox, run_number=run_number,
                                              skip=task.skip_verification, default_timeout_s=timeout_s)  # fmt: skip
        except TimeoutError:
            return timed_out_report(run_number, timeout_s)


class OllamaExecutor(AgenticExecutor):
    """The agent on a local Ollama model: costs nothing, reports what Claude would have cost."""

    name = "ollama"

    def __init__(self, sandbox: Sandbox, *, host: str = "http://127.0.0.1:11434", default_model: str | None = None,
                 config: AgenticConfig | None = None, **model_options: Any) -> None:  # fmt: skip
        super().__init__(sandbox, config)
        self.host, self.default_model, self.model_options = host, default_model, model_options
        """``model_options`` go to ``OllamaChatModel`` (num_ctx, temperature, keep_alive, think, max_retries...)."""

    def __repr__(self) -> str:
        return f"<OllamaExecutor host={self.host!r} default_model={self.default_model!r}>"

    def make_model(self, task: TaskAssign) -> OllamaChatModel:
        routing = task.routing_decision
        selected = routing.model if routing is not None else None
        model = selected if selected and not selected.startswith("claude") else None
        model = model or self.default_model
        if not model:
            raise ValueError("no Ollama model: the task's routing selected none and the sidecar has no default")
        endpoint = routing.endpoint if routing is not None else None
        host = (endpoint if "://" in endpoint else f"http://{endpoint}") if isinstance(endpoint, str) else self.host
        return OllamaChatModel(host, model, **self.model_options)

    def costs_usd(self, model: str, tokens_in: int, tokens_out: int) -> tuple[float, float]:
        return 0.0, equivalent_claude_cost_usd(tokens_in, tokens_out)


class OpenAIExecutor(AgenticExecutor):
    """The agent on a local OpenAI-compatible server (llama.cpp, vLLM, LM Studio): costs nothing, like Ollama.

    Its own executor name (``openai``), so the hub routes to it only when an agent really has such a server.
    """

    name = "openai"

    def __init__(self, sandbox: Sandbox, *, base_url: str, api_key: str | None = None, default_model: str | None = None,
                 config: AgenticConfig | None = None, **model_options: Any) -> None:  # fmt: skip
        super().__init__(sandbox, config)
        self.base_url, self._api_key, self.default_model = base_url, api_key, default_model
        self.model_options = model_options
        """``model_options`` go to ``OpenAIChatModel`` (context_length, temperature, max_tokens, max_retries...)."""

    def __repr__(self) -> str:
        return f"<OpenAIExecutor base_url={self.base_url!r} default_model={self.default_model!r}>"

    def make_model(self, task: TaskAssign) -> OpenAIChatModel:
        selected = task.routing_decision.model if task.routing_decision is not None else None
        model = selected if selected and not selected.startswith("claude") else self.default_model
        if not model:
            raise ValueError("no model for the OpenAI-compatible server: the routing selected none and no default")
        return OpenAIChatModel(self.base_url, model, api_key=self._api_key, **self.model_options)

    def costs_usd(self, model: str, tokens_in: int, tokens_out: int) -> tuple[float, float]:
        return 0.0, equivalent_claude_cost_usd(tokens_in, tokens_out)


class ClaudeExecutor(AgenticExecutor):
    """The agent on the Anthropic API, priced from the table in ``sidecar.agent.cost``."""

    name = "claude"
    few_shot = False

    def __init__(self, sandbox: Sandbox, *, api_key: str, base_url: str | None = None,
                 default_model: str = "claude-sonnet-4-6", config: AgenticConfig | None = None,
                 **model_options: Any) -> None:  # fmt: skip
        super().__init__(sandbox, config)
        self._api_key, self.base_url, self.default_model = api_key, base_url, default_model
        self.model_options = model_options
        """``model_options`` go to ``ClaudeChatModel`` (max_tokens, max_retries, timeout_s, thinking)."""

    def __repr__(self) -> str:
        return f"<ClaudeExecutor default_model={self.default_model!r}>"

    def make_model(self, task: TaskAssign) -> ClaudeChatModel:
        from sidecar.agent.claude import ClaudeChatModel  # the Anthropic SDK is loaded only when Claude runs

        # The router may name a local model or just "claude"; only a real Claude model name is taken.
        selected = task.routing_decision.model if task.routing_decision is not None else None
        model = selected if selected and selected.startswith("claude-") else self.default_model
        return ClaudeChatModel(model, api_key=self._api_key, base_url=self.base_url, **self.model_options)

    def costs_usd(self, model: str, tokens_in: int, tokens_out: int) -> tuple[float, float]:
        cost = claude_cost_usd(model, tokens_in, tokens_out)
        return cost, cost


def final_outcome(report: VerificationReport, ending: Ending, changed: bool) -> Verdict:
    """``verified``, ``partial_pass``, ``unverified`` or ``failed`` (see the module docstring)."""
    verdict = report.verdict()
    if verdict != "unverified":
        return verdict
    return "unverified" if ending is Ending.COMPLETED or changed else "failed"


# --- prompts -------------------------------------------------------------------------------------------------------


@functools.cache
def _template(name: str) -> str:
    return Path(__file__).with_name("prompts").joinpath(name).read_text(encoding="utf-8")


def system_prompt(tools: ToolRegistry, *, few_shot: bool = False) -> str:
    """The system prompt: role, tools (first sentence of each description), workflow, rules and, with ``few_shot``,
    an example of a correct call. It never changes during a run (the model server caches its tokens)."""
    lines = []
    for spec in [*(schema["function"] for schema in tools.schemas_ollama()), FINISH_TOOL]:
        lines.append(f"- {spec['name']}: {spec['description'].split('. ')[0].rstrip('.')}.")
    examples = f"\n{FEW_SHOT}\n" if few_shot else ""
    return _template("agentic_system.txt").format(tool_list="\n".join(lines), examples=examples)


def task_prompt(task: TaskAssign) -> str:
    """The first user message: description, success criteria, file hints, the checks that will run, the repo."""
    repository = f"\nRepository: {task.repo}" + (f" (branch {task.branch})" if task.branch else "") + "\n"
    return _template("agentic_task.txt").format(
        description=task.description.strip() or "(no description)",
        success_criteria=_bullets(task.success_criteria),
        file_hints=_bullets(_hint(hint) for hint in task.file_hints),
        verification_steps=_bullets(_check(step) for step in task.verification_steps),
        repository=repository if task.repo else "",
    )


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items if item) or "- (none given)"


def _hint(hint: Any) -> str:
    if isinstance(hint, Mapping):
        path = hint.get("path") or hint.get("file") or ""
        why = hint.get("reason") or hint.get("description") or ""
        return f"{path}: {why}" if path and why else str(path or why or json.dumps(dict(hint)))
    return str(hint)


def _check(step: Any) -> str:
    if not isinstance(step, Mapping):
        return str(step)
    text = f"{step.get('type', '?')}: `{step.get('target', '')}`"
    return f"{text} ({step['description']})" if step.get("description") else text


__all__ = [
    "AgenticConfig", "AgenticExecutor", "ClaudeExecutor", "OllamaExecutor", "OpenAIExecutor", "system_prompt",
    "task_prompt", "final_outcome",
]  # fmt: skip
