"""The ReAct loop: ask the model, run the tools it calls, send back what they returned, until it answers.

``ReactLoop.run(prompt, guardrails)`` appends ``prompt`` to the conversation and repeats ``step()``. Every way out is
an exception, and ``run`` turns each into a ``TerminationReason``; its ``finally`` saves the trajectory::

    StopLoop(reason)    the model called ``finish`` or gave a final answer (completed), or a guardrail
    ContextOverflow     from the model: the conversation no longer fits     -> context_overflow
    ModelError          from the model: no usable reply                     -> model_error
    CancelledError      the task was cancelled                              -> cancelled (re-raised)

Guardrails (checked before every model call unless said otherwise):

- ``max_iterations`` model calls per attempt (by tier: trivial 5, standard 10, complex 20);
- ``token_budget``: prompt plus completion tokens over the whole run;
- ``deadline``: a model call or tool still running at the deadline is cancelled (wall_clock);
- format errors: ``max_format_errors`` (3) replies in a row with nothing usable; each gets a corrective message;
- repetition: a call identical (name and arguments) to one of the previous step is not run, it gets a corrective
  observation instead; the same call once more ends the attempt;
- no progress: ``no_progress_limit`` steps in a row without one call that both succeeded and was new in this
  attempt (every call failed, was blocked, or repeated an earlier call, rewrites of the same content included;
  format errors count as such steps too).

The end of the work is a ``finish`` call (see :mod:`sidecar.agent.nudges`); a reply without any call is a format
error answered with a nudge (``no_call``), unless the model already acted in this attempt and the text holds no
code; code shown in a fenced block beside calls that write no file gets a note that it was not saved (a
``nudge`` step). The conversation only grows (nothing per step is written before the newest message), so a model
server can reuse its KV cache for the whole prefix; the prompt tokens it still evaluated are summed in
``tokens_reevaluated``.

A failing tool, a sandbox denial included, is an observation for the model, never the end of the loop. A model
call that is retried is streamed as a ``model_retry`` event, one that fails for good as ``model_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from sidecar.agent.models import ChatModel, ContextOverflow, ModelError, ModelTurn
from sidecar.agent.nudges import (
    FINISH,
    FINISH_TEXT,
    FINISH_TOOL,
    UNSAVED_TEXT,
    compact_specs,
    may_end_with_text,
    no_call_message,
    unsaved_code,
)
from sidecar.agent.parser import FormatError, ParsedReply, ParseStats, ToolCall, parse_reply
from sidecar.agent.tools import Observation, ToolError, ToolRegistry, summarize_args, summarize_result
from sidecar.agent.trajectory import Trajectory, turn_event
from sidecar.runtime.executor import EventSink

logger = logging.getLogger(__name__)


class TerminationReason(StrEnum):
    COMPLETED = "completed"
    MAX_ITERATIONS = "max_iterations"
    REPETITION = "repetition"
    NO_PROGRESS = "no_progress"
    TOKEN_BUDGET = "token_budget"
    WALL_CLOCK = "wall_clock"
    FORMAT_ERRORS = "format_errors"
    CONTEXT_OVERFLOW = "context_overflow"
    MODEL_ERROR = "model_error"
    CANCELLED = "cancelled"


RETRYABLE_ENDINGS = frozenset({TerminationReason.COMPLETED, TerminationReason.MAX_ITERATIONS,
                               TerminationReason.REPETITION, TerminationReason.NO_PROGRESS,
                               TerminationReason.FORMAT_ERRORS})  # fmt: skip
"""Endings after which a verification retry may continue the conversation (budget, time and model are spent)."""
ITERATIONS_BY_TIER = {"trivial": 5, "standard": 10, "complex": 20}
EVENT_ERROR_CHARS = 500
"""Longest model error message in a live ``model_error`` / ``model_retry`` event (the trajectory keeps it whole)."""
CHANGING_TOOLS = frozenset({"write_file", "edit_file", "run_command"})
"""A successful call of one of these counts as work done (``ReactLoop.changes``)."""
REPEAT_TEXT = (
    "Not run: you made exactly this call ({call}) in your previous step, so it would return the same "
    "result. Use that result, or try something different. Repeating it once more ends the task."
)
STOP_TEXT = "Not run: the same call was repeated again, so the task is being stopped."
SKIPPED_TEXT = "Not run: the task was stopped before this call ({why})."
NOT_FINISHED_TEXT = (
    "Not finished: {tool} failed earlier in this same reply. Read its result above, fix the problem, and call "
    "finish on its own once everything works."
)
"""A ``finish`` sent in the same reply as a call that failed (small models send edit, test and finish at once): the
model has not seen the failure yet, so the work is not over."""
NOTHING_DONE_TEXT = (
    "Not finished: nothing was changed or run yet in this attempt (no edit_file, write_file or run_command "
    "succeeded). Do the work first: read the file, change it, run the check; then call finish. If the task truly "
    "needs no change, call finish again."
)
"""A first ``finish`` in an attempt where no changing call succeeded (a 1.5B model answers a bug report with
``finish`` alone, and again after the checks failed): refused once per attempt; a second one stands."""
TRUNCATED_TEXT = ("Your reply was cut off at the output limit, so it could not be used. Be shorter: "
                  "write large files in several smaller steps (write_file, then edit_file).")  # fmt: skip


class StopLoop(Exception):
    """Control flow: ends the current attempt with ``reason``."""

    def __init__(self, reason: TerminationReason, detail: str = "") -> None:
        super().__init__(detail or reason.value)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Guardrails:
    max_iterations: int = 10
    token_budget: int | None = None
    deadline: float | None = None
    """A ``time.monotonic()`` value."""
    max_format_errors: int = 3
    no_progress_limit: int = 4


@dataclass(frozen=True)
class LoopResult:
    termination_reason: TerminationReason
    final_answer: str
    """The model's final answer, or its last text when the loop was stopped."""
    detail: str
    iterations: int
    """Model calls in this attempt."""


class ReactLoop:
    """One conversation (``trajectory.messages``), run in attempts; the totals add up over all attempts."""

    def __init__(self, model: ChatModel, tools: ToolRegistry, events: EventSink, trajectory: Trajectory,
                 parse_stats: ParseStats, *, token_interval_s: float = 0.1, compact: bool = False) -> None:  # fmt: skip
        self.model, self.tools, self.events, self.trajectory = model, tools, events, trajectory
        self.parse_stats, self.token_interval_s = parse_stats, token_interval_s
        specs = [schema["function"] for schema in tools.schemas_ollama()]
        self.tool_specs = [*(compact_specs(specs) if compact else specs), FINISH_TOOL]
        """The tools offered, ``finish`` last; ``compact``: first sentences only, for small context windows."""
        self._schemas = {spec["name"]: spec["parameters"] for spec in self.tool_specs}
        self.tool_names = [spec["name"] for spec in self.tool_specs]
        self.tokens_in = self.tokens_out = self.iterations = self.changes = self.attempt = 0
        self.tokens_reevaluated: int | None = None
        """Prompt tokens the server evaluated rather than took from its KV cache, when it reports them."""
        self._live_tokens = self._tokens_sent = 0
        self._tokens_sent_at = 0.0
        self._last_text = ""
        self._start_attempt(Guardrails())

    def _start_attempt(self, guardrails: Guardrails) -> None:
        """Per-attempt state: a corrective turn is new information, so the stuck detectors start over."""
        self.g = guardrails
        self._step_in_attempt = self._format_errors = self._idle = 0
        self._acted = False
        """A tool call succeeded in this attempt (a plain-text answer may end it)."""
        self._worked = self._finish_refused = False
        """A changing call (:data:`CHANGING_TOOLS`) succeeded in this attempt; a finish was refused for lack of one."""
        self._previous: set[str] = set()
        """Call signatures of the previous step."""
        self._blocked: set[str] = set()
        """Signatures blocked as repeats in the previous step: one more means stop."""
        self._seen: set[str] = set()

    def __repr__(self) -> str:
        return (f"<ReactLoop {self.model.model} attempt={self.attempt} iterations={self.iterations} "
                f"tokens={self.tokens_in}+{self.tokens_out}>")  # fmt: skip

    async def run(self, prompt: str, guardrails: Guardrails) -> LoopResult:
        """Send ``prompt`` and loop until the model answers or a guardrail stops it."""
        self.attempt += 1
        self._start_attempt(guardrails)
        self.trajectory.messages.append({"role": "user", "content": prompt})
        reason, detail = None, ""
        try:
            while True:
                await self.step()
        except StopLoop as stop:
            reason, detail = stop.reason, stop.detail
        except ContextOverflow as exc:
            reason, detail = TerminationReason.CONTEXT_OVERFLOW, str(exc)
        except ModelError as exc:
            reason, detail = TerminationReason.MODEL_ERROR, f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            reason = TerminationReason.CANCELLED
            raise
        finally:
            ending = reason or "crashed"
            self.trajectory.add("stop", attempt=self.attempt, iteration=self.iterations, reason=ending, detail=detail)
            self.trajectory.save(termination_reason=ending, iterations=self.iterations, tokens_in=self.tokens_in,
                                 tokens_out=self.tokens_out, tokens_reevaluated=self.tokens_reevaluated)  # fmt: skip
        assert reason is not None  # every path that gets here set it
        logger.info("agent loop %s ended: %s %s", self.model.model, reason, detail)
        answer = detail if reason is TerminationReason.COMPLETED else self._last_text
        return LoopResult(reason, answer, detail, self._step_in_attempt)

    async def step(self) -> None:
        """One model call and whatever it asks for; raises ``StopLoop`` when the attempt is over."""
        self._check_limits()
        self.iterations += 1
        self._step_in_attempt += 1
        turn = await self._query()
        reply = parse_reply(turn.content, turn.tool_calls, self.tool_names, schemas=self._schemas)
        if not reply.calls and reply.error is None and not may_end_with_text(turn.content, self._acted):
            reply = ParsedReply(error=FormatError("no_call", no_call_message(turn.content, self.tool_names)))
        self.parse_stats.record(self.model.model, reply)
        if reply.error is not None:
            await self._format_error(turn, reply.error)
        elif reply.calls:
            self._format_errors = 0
            try:
                await self._act(turn, reply.calls)
            finally:
                if unsaved_code(turn.content, (call.name for call in reply.calls)):
                    self.trajectory.messages.append({"role": "user", "content": UNSAVED_TEXT})
                    self.trajectory.add("nudge", attempt=self.attempt, iteration=self.iterations, reason="unsaved_code")
        else:
            raise StopLoop(TerminationReason.COMPLETED, reply.final_answer or "")
        self.trajectory.save()

    def _check_limits(self) -> None:
        g = self.g
        if self._step_in_attempt >= g.max_iterations:
            raise StopLoop(TerminationReason.MAX_ITERATIONS, f"used all {g.max_iterations} model calls")
        if g.token_budget is not None and self.tokens_in + self.tokens_out >= g.token_budget:
            raise StopLoop(TerminationReason.TOKEN_BUDGET,
                           f"used {self.tokens_in + self.tokens_out} of {g.token_budget} tokens")  # fmt: skip
        if g.deadline is not None and time.monotonic() >= g.deadline:
            raise StopLoop(TerminationReason.WALL_CLOCK, "the time limit was reached")

    @contextlib.asynccontextmanager
    async def _until_deadline(self, doing: str) -> AsyncIterator[None]:
        if self.g.deadline is None:
            yield
            return
        scope = asyncio.timeout_at(asyncio.get_running_loop().time() + self.g.deadline - time.monotonic())
        try:
            async with scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            raise StopLoop(TerminationReason.WALL_CLOCK, f"the time limit was reached while {doing}") from None

    async def _query(self) -> ModelTurn:
        request_messages, started = len(self.trajectory.messages), time.monotonic()
        try:
            async with self._until_deadline("waiting for the model"):
                turn = await self.model.chat(self.trajectory.messages, self.tool_specs, on_progress=self._progress,
                                             on_retry=self._retrying)  # fmt: skip
        except ModelError as exc:
            self.trajectory.add("model_error", attempt=self.attempt, iteration=self.iterations,
                                error=type(exc).__name__, message=str(exc))  # fmt: skip
            await self.events.emit("model_error", f"{type(exc).__name__}: {str(exc)[:EVENT_ERROR_CHARS]}",
                                   error=type(exc).__name__, retryable=exc.retryable, iteration=self.iterations,
                                   model=self.model.model)  # fmt: skip
            raise
        finally:
            self._live_tokens = 0
        self.tokens_in += turn.tokens_in
        self.tokens_out += turn.tokens_out
        if turn.tokens_reevaluated is not None:
            self.tokens_reevaluated = (self.tokens_reevaluated or 0) + turn.tokens_reevaluated
        self._last_text = turn.content.strip() or self._last_text
        self.trajectory.messages.append(turn.as_message())
        step = self.trajectory.add_turn(turn, attempt=self.attempt, iteration=self.iterations,
                                        request_messages=request_messages,
                                        duration_ms=int((time.monotonic() - started) * 1000))  # fmt: skip
        text, fields = turn_event(step)
        await self.events.emit("model_turn", text, model=self.model.model, **fields)
        await self._emit_tokens(force=True)
        return turn

    async def _retrying(self, error: ModelError, retry: int, delay_s: float) -> None:
        """A model call failed and is about to be sent again: recorded and streamed as ``model_retry``."""
        self.trajectory.add("model_retry", attempt=self.attempt, iteration=self.iterations, error=type(error).__name__,
                            message=str(error), retry=retry, delay_s=delay_s)  # fmt: skip
        await self.events.emit("model_retry", f"{type(error).__name__}: {str(error)[:EVENT_ERROR_CHARS]}; retry "
                               f"{retry} in {delay_s:g} s", error=type(error).__name__, retry=retry, delay_s=delay_s,
                               iteration=self.iterations, model=self.model.model)  # fmt: skip

    async def _progress(self, turn_tokens: int) -> None:
        self._live_tokens = turn_tokens
        await self._emit_tokens()

    async def _emit_tokens(self, force: bool = False) -> None:
        """``token`` events, at most one per ``token_interval_s`` while a reply streams, and one after it."""
        total, now = self.tokens_out + self._live_tokens, time.monotonic()
        if total == self._tokens_sent or (not force and now - self._tokens_sent_at < self.token_interval_s):
            return
        self._tokens_sent, self._tokens_sent_at = total, now
        await self.events.emit("token", f"{total} tokens", tokens_so_far=total, model=self.model.model)

    async def _format_error(self, turn: ModelTurn, error: FormatError) -> None:
        self._format_errors += 1
        message = TRUNCATED_TEXT if turn.truncated else error.message
        self.trajectory.add("format_error", attempt=self.attempt, iteration=self.iterations, reason=error.reason,
                            message=message)  # fmt: skip
        if turn.tool_calls:  # refused native calls: each still needs its result message
            for call in turn.tool_calls:
                self.trajectory.messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "name": call["name"], "content": message,
                     "is_error": True}
                )  # fmt: skip
        else:
            self.trajectory.messages.append({"role": "user", "content": message})
        await self.events.emit("format_error", message, reason=error.reason, iteration=self.iterations)
        if self._format_errors >= self.g.max_format_errors:
            raise StopLoop(TerminationReason.FORMAT_ERRORS, f"{self._format_errors} unusable replies in a row")
        self._count_idle(progress=False)

    async def _act(self, turn: ModelTurn, calls: tuple[ToolCall, ...]) -> None:
        ids = [call["id"] for call in turn.tool_calls] if turn.tool_calls else [None] * len(calls)
        signatures, blocked, stop, progress = [], set(), None, False
        failed: str | None = None
        """The first call of this reply that failed: a ``finish`` after it is refused (:data:`NOT_FINISHED_TEXT`)."""
        for call, call_id in zip(calls, ids, strict=True):
            signature = json.dumps([call.name, call.arguments], sort_keys=True, default=str)
            signatures.append(signature)
            if stop is not None:
                obs = _not_run(call.name, "not_run", SKIPPED_TEXT.format(why=stop.reason.value))
            elif call.name == FINISH and failed is not None:
                obs = _not_run(FINISH, "not_finished", NOT_FINISHED_TEXT.format(tool=failed))
            elif call.name == FINISH and not self._worked and not self._finish_refused:
                self._finish_refused = True
                obs = _not_run(FINISH, "nothing_done", NOTHING_DONE_TEXT)
            elif call.name == FINISH:
                summary = call.arguments.get("summary")
                stop = StopLoop(TerminationReason.COMPLETED, summary if isinstance(summary, str) else FINISH_TEXT)
                obs = Observation(success=True, tool=FINISH, output=FINISH_TEXT)
            elif signature in self._blocked:
                stop = StopLoop(TerminationReason.REPETITION, f"{summarize_args(call.name, call.arguments)} repeated")
                obs = _not_run(call.name, "repeated_call", STOP_TEXT)
            elif signature in self._previous:
                blocked.add(signature)
                obs = _not_run(call.name, "repeated_call",
                               REPEAT_TEXT.format(call=summarize_args(call.name, call.arguments)))  # fmt: skip
            else:
                try:
                    async with self._until_deadline(f"running {call.name}"):
                        obs = await self.tools.execute(call.name, call.arguments)
                except StopLoop as exc:
                    stop, obs = exc, _not_run(call.name, "interrupted", exc.detail)
                progress |= obs.success and signature not in self._seen
                self._acted |= obs.success
                self._seen.add(signature)
            if not obs.success and failed is None and call.name != FINISH:
                failed = call.name
            await self._observe(call, call_id, obs)
        self._previous, self._blocked = set(signatures), blocked
        if stop is not None:
            raise stop
        self._count_idle(progress)

    def _count_idle(self, progress: bool) -> None:
        self._idle = 0 if progress else self._idle + 1
        if self._idle >= self.g.no_progress_limit:
            raise StopLoop(TerminationReason.NO_PROGRESS, f"{self._idle} steps in a row without progress")

    async def _observe(self, call: ToolCall, call_id: str | None, obs: Observation) -> None:
        self.trajectory.messages.append({"role": "tool", "tool_call_id": call_id, "name": call.name,
                                         "content": obs.to_model_text(), "is_error": not obs.success})  # fmt: skip
        self.trajectory.add(
            "observation", attempt=self.attempt, iteration=self.iterations, call_id=call_id, tool=call.name,
            arguments=call.arguments, parsed_by=call.parsed_by, success=obs.success, output=obs.output,
            error=obs.error.model_dump() if obs.error else None, duration_ms=obs.duration_ms,
        )  # fmt: skip
        if obs.success and call.name in CHANGING_TOOLS:
            self.changes += 1
            self._worked = True
        args_summary, result_summary = summarize_args(call.name, call.arguments), summarize_result(obs)
        await self.events.emit(
            "tool_call", f"{args_summary} -> {result_summary}", tool_name=call.name, args_summary=args_summary,
            result_summary=result_summary, success=obs.success, duration_ms=obs.duration_ms,
            iteration=self.iterations,
        )  # fmt: skip


def _not_run(tool: str, code: str, message: str) -> Observation:
    return Observation(success=False, tool=tool, error=ToolError(code=code, message=message))
