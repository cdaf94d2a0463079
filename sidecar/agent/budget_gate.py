"""The hub's budgets, asked before every model call: :class:`BudgetGate` and the :class:`GatedModel` wrapper.

Before a call :class:`GatedModel` sends ``budget_request`` (the task, the model, the estimated prompt tokens of the
conversation and the completion tokens it may use) and waits for ``budget_grant``. A refusal, or no answer within
``budget_timeout_s`` (fail closed), ends the agent loop as ``token_budget``, which the task reports as reason
``budget``; a refusal by a pausing budget (``budget_paused``) is asked again every ``budget_pause_retry_s``
until granted or the loop's time is up. After the call it sends ``usage_report`` (tokens, wall time, the server's
eval seconds) with the grant's id, so the hub records it and releases the reservation; a failed call reports zero
usage. A hub too old to know
``budget_request`` answers ``unknown_message_type``: from then on calls run ungated and nothing is reported (the
hub charges the attempt from its final usage).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from shared.payloads import Usage
from shared.protocol import BudgetGrant, BudgetRequest, ErrorReply, UsageReport
from sidecar.agent.loop import StopLoop, TerminationReason
from sidecar.agent.models import (
    ChatModel,
    Message,
    ModelError,
    ModelTurn,
    ProgressCallback,
    RetryCallback,
    ToolSpec,
    estimate_tokens,
)
from sidecar.runtime.connection import HubLink

logger = logging.getLogger(__name__)

MAX_PENDING = 64
"""Budget requests waiting for an answer at once (one sidecar runs one task: a handful at most)."""


class BudgetGate:
    """Asks the hub over ``link`` whether a model call may run; fed the hub's answers by the message dispatch."""

    def __init__(self, link: HubLink, timeout_s: float = 10.0, output_tokens: int = 2048,
                 pause_retry_s: float = 30.0) -> None:  # fmt: skip
        self.link, self.timeout_s, self.output_tokens = link, timeout_s, output_tokens
        """``output_tokens``: what a request reserves for the reply when the model has no output limit of its own."""
        self.pause_retry_s = pause_retry_s
        """A call refused with ``budget_paused`` asks again this often (until granted, stopped, or out of time)."""
        self._pending: dict[str, asyncio.Future[BudgetGrant]] = {}
        self.supported = True
        """False once the hub said it does not know ``budget_request``."""
        self.n_granted = self.n_refused = self.n_timeouts = 0

    def __repr__(self) -> str:
        return f"<BudgetGate granted={self.n_granted} refused={self.n_refused} timeouts={self.n_timeouts}>"

    async def request(self, task_id: str, model: str, provider: str, tokens_in: int, tokens_out: int) -> BudgetGrant:
        """The hub's answer for one call (a refusal with reason ``budget_timeout`` if none came in time)."""
        if not self.supported:
            return BudgetGrant(request_id="-", granted=True, reason="ungated")
        request_id = uuid.uuid4().hex
        if len(self._pending) >= MAX_PENDING:
            return BudgetGrant(request_id=request_id, granted=False, reason="too_many_requests")
        future: asyncio.Future[BudgetGrant] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message = BudgetRequest(
            type="budget_request", request_id=request_id, task_id=task_id, model=model[:256], provider=provider[:256],
            est_tokens_in=tokens_in, est_tokens_out=tokens_out,
        )  # fmt: skip
        try:
            async with asyncio.timeout(self.timeout_s):
                while not future.done() and not await self.link.send(message):
                    await self._connected_or(future)  # not connected: wait for the next connection
                grant = await future
        except TimeoutError:
            self.n_timeouts += 1
            logger.warning("no budget_grant within %g s for a call of task %s; not calling", self.timeout_s, task_id)
            return BudgetGrant(request_id=request_id, granted=False, reason="budget_timeout")
        finally:
            self._pending.pop(request_id, None)
        if grant.granted:
            self.n_granted += 1
        else:
            self.n_refused += 1
        return grant

    async def _connected_or(self, future: asyncio.Future[BudgetGrant]) -> None:
        """Return once the link is connected again or ``future`` has its answer (whichever comes first)."""
        connected = asyncio.ensure_future(self.link.wait_connected())
        waiters: list[asyncio.Future[Any]] = [connected, future]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()

    def on_grant(self, message: BudgetGrant) -> None:
        """A ``budget_grant`` from the hub."""
        future = self._pending.get(message.request_id)
        if future is not None and not future.done():
            future.set_result(message)

    def on_error(self, message: ErrorReply) -> bool:
        """An ``error`` from the hub: True if it was about a budget request (an older hub: calls go ungated)."""
        if message.message_type not in ("budget_request", "usage_report"):
            return False
        if message.error == "unknown_message_type":
            logger.warning("the hub does not gate model calls (no budget_request); running them ungated")
            self.supported = False
            for request_id, future in self._pending.items():
                if not future.done():
                    future.set_result(BudgetGrant(request_id=request_id, granted=True, reason="ungated"))
        else:
            logger.warning("hub error on %s: %s %s", message.message_type, message.error, message.errors or "")
        return True

    async def report(self, task_id: str, grant_id: str | None, usage: Usage, wall_ms: int,
                     eval_seconds: float | None) -> None:  # fmt: skip
        """Tell the hub what one call used (lost if the connection is down: the hub then under-counts it)."""
        if self.supported:
            await self.link.send(UsageReport(type="usage_report", task_id=task_id, grant_id=grant_id, usage=usage,
                                             wall_ms=wall_ms, eval_seconds=eval_seconds))  # fmt: skip


class GatedModel:
    """A ``ChatModel`` whose every call is reserved with the hub before and reported after."""

    def __init__(self, inner: ChatModel, gate: BudgetGate, task_id: str, output_tokens: int = 2048) -> None:
        self.inner, self.gate, self.task_id = inner, gate, task_id
        self.provider, self.model = inner.provider, inner.model
        limit = getattr(inner, "max_tokens", None)
        self.output_tokens = limit if isinstance(limit, int) and limit > 0 else output_tokens

    def __repr__(self) -> str:
        return f"<GatedModel {self.inner!r}>"

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, on_progress: ProgressCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> ModelTurn:  # fmt: skip
        tokens_in = estimate_tokens([list(messages), list(tools)])
        grant = await self.gate.request(self.task_id, self.model, self.provider, tokens_in, self.output_tokens)
        while not grant.granted and grant.reason == "budget_paused":  # wait for a new window or a higher limit
            await asyncio.sleep(self.gate.pause_retry_s)
            grant = await self.gate.request(self.task_id, self.model, self.provider, tokens_in, self.output_tokens)
        if not grant.granted:
            raise StopLoop(TerminationReason.TOKEN_BUDGET, f"the hub refused the model call ({grant.reason})")
        started = time.monotonic()
        try:
            turn = await self.inner.chat(messages, tools, on_progress=on_progress, on_retry=on_retry)
        except ModelError:  # (a cancelled call reports nothing: its reservation expires on the hub)
            await self._report(grant, Usage(model=self.model, provider=self.provider), started, None)
            raise
        usage = Usage(tokens_in=turn.tokens_in, tokens_out=turn.tokens_out, model=self.model, provider=self.provider)
        await self._report(grant, usage, started, _eval_seconds(turn.raw))
        return turn

    async def _report(self, grant: BudgetGrant, usage: Usage, started: float, eval_seconds: float | None) -> None:
        wall_ms = int((time.monotonic() - started) * 1000)
        await self.gate.report(self.task_id, grant.grant_id, usage, wall_ms, eval_seconds)


def _eval_seconds(raw: dict[str, Any]) -> float | None:
    """Prompt plus completion evaluation time from an Ollama response (nanoseconds), if it gave them."""
    parts = [raw.get("prompt_eval_duration"), raw.get("eval_duration")]
    counted = [n for n in parts if isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 10**18]
    return sum(counted) / 1e9 if counted else None


def gated(model: ChatModel, gate: BudgetGate | None, task_id: str) -> ChatModel:
    """``model`` behind ``gate`` (unchanged when the sidecar has no gate)."""
    return model if gate is None else GatedModel(model, gate, task_id, gate.output_tokens)
