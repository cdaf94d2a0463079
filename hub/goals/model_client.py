"""The hub's own model client: the local model first (Ollama ``/api/chat``, JSON mode), Claude as the fallback.

Every call of the hub's own (decomposing, verifying goals) goes through :meth:`ModelClient.complete`. Each
endpoint gets one try with a timeout and a bounded reply; when neither answers, :class:`ModelUnavailable` names why
each failed. The Anthropic key is read from the settings or ``ANTHROPIC_API_KEY`` and only ever placed in a header:
errors carry the URL and the failure, never a header.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from hub.costs.budgets import REFUSED, Estimate, Refusal, Scope
from hub.costs.ledger import CostEntry
from hub.settings import HubSettings
from shared.capped_body import read_capped

if TYPE_CHECKING:
    from hub.costs.service import Costs

logger = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
MAX_TOKENS = 4096


class ModelUnavailable(Exception):
    """No model endpoint gave a usable answer; the message says why for each one tried."""


class BudgetRefused(ModelUnavailable):
    """A budget refused the call before any endpoint was asked; the message is the budget's reason. No fallback is
    tried: every budget of a call (its goal's, its hub state's) applies whichever endpoint would answer it.

    ``stops``: the budget's action is ``stop`` (``budget_exhausted``); ``period_end_ms``: when the period of a
    period budget (a hub state's hour or day) ends, None for one without a period (a goal's, a task's) and for one
    whose limit the call would pass even with nothing spent (``fits`` false: no new period helps)."""

    def __init__(self, refusal: Refusal, fits: bool = True) -> None:
        super().__init__(f"{refusal.reason}: {refusal.detail}")
        self.refusal = refusal
        self.stops = refusal.reason == REFUSED["stop"]
        self.period_end_ms = period_end_ms(refusal.budget) if fits else None


PERIODS = {"hour": ("%Y-%m-%dT%H", timedelta(hours=1)), "day": ("%Y-%m-%d", timedelta(days=1))}
"""The periods a budget key may name (:meth:`hub.costs.budgets.Budgets.checks`: ``hub_state:<state>:hour:<hour>``
and ``hub_state:<state>:day:<day>``, in UTC): the format of their start and their length."""


def period_end_ms(budget: str) -> int | None:
    """When the period the budget key ``budget`` names ends, in ms (``hub_state:executing:hour:2021-06-01T12`` ends
    at 13:00 UTC); None when it names none."""
    head, _, start = budget.rpartition(":")
    period = PERIODS.get(head.rpartition(":")[2]) if budget.startswith("hub_state:") else None
    if period is None:
        return None
    try:
        begun = datetime.strptime(start, period[0]).replace(tzinfo=UTC)
    except ValueError:
        return None
    return int((begun + period[1]).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class ModelReply:
    text: str
    provider: str
    """``ollama`` or ``anthropic``."""
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    """``input_tokens`` and ``output_tokens`` as the endpoint reported them."""


Message = dict[str, str]
"""``{"role": "user" | "assistant", "content": text}``."""


class ModelClient:
    def __init__(self, settings: HubSettings) -> None:
        self._settings = settings
        self.costs: Costs | None = None
        """The hub's ledger and budgets (set once the hub has built them); None: calls are not metered."""
        self.n_calls = 0
        self.n_fallbacks = 0
        self.n_unavailable = 0
        self.n_refused = 0
        """Calls a budget refused before any endpoint was asked."""

    def __repr__(self) -> str:
        return f"<ModelClient local={self._settings.hub_model_url is not None} claude={self._claude_key() is not None}>"

    def _claude_key(self) -> str | None:
        configured = self._settings.hub_claude_api_key
        key = configured.get_secret_value() if configured is not None else os.environ.get("ANTHROPIC_API_KEY")
        return key or None

    async def complete(
        self, purpose: str, system: str, messages: list[Message], goal_id: str | None = None
    ) -> ModelReply:
        """One answer to ``messages`` under ``system``, from the first endpoint that gives one (``purpose`` names the
        call for the ledger and the logs: ``decompose``, ``verify``). Each call is reserved against the hub's
        budgets first, its goal's (``goal_id``: the goal it is made for) among them, and booked after under that
        goal; a refusal is :class:`BudgetRefused` with the budget's reason."""
        self.n_calls += 1
        failures: list[str] = []
        prompt_chars = len(system) + sum(len(m.get("content", "")) for m in messages)
        if self._settings.hub_model_url:
            try:
                return await self._metered(purpose, "ollama", self._settings.hub_model, prompt_chars, goal_id,
                                           lambda: self._ollama(system, messages))  # fmt: skip
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(f"local model at {_safe_url(self._settings.hub_model_url)}: {_describe(exc)}")
        else:
            failures.append("no local model configured (hub_model_url)")
        key = self._claude_key()
        if key is not None:
            self.n_fallbacks += 1
            try:
                return await self._metered(purpose, "anthropic", self._settings.hub_claude_model, prompt_chars,
                                           goal_id, lambda: self._anthropic(system, messages, key))  # fmt: skip
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(f"Claude at {_safe_url(self._settings.hub_claude_url)}: {_describe(exc)}")
        else:
            failures.append("no Claude fallback (no API key)")
        self.n_unavailable += 1
        reason = "; ".join(failures)
        logger.warning("%s: no model answered: %s", purpose, reason)
        raise ModelUnavailable(reason)

    async def _metered(
        self, purpose: str, provider: str, model: str, prompt_chars: int, goal_id: str | None,
        call: Callable[[], Awaitable[ModelReply]],
    ) -> ModelReply:  # fmt: skip
        """``call`` under the hub's budgets and ``goal_id``'s: reserved before (the prompt at ~4 characters a token
        plus a full answer: :data:`MAX_TOKENS`, what each endpoint is told it may answer at most), booked in the cost
        ledger after (under the goal, at the hub's clock), released if it failed."""
        costs = self.costs
        if costs is None:
            return await call()
        tokens_in = prompt_chars // 4 + 1
        tokens_out = min(MAX_TOKENS, self._settings.hub_model_max_output_bytes // 4)
        scope = Scope(goal_id=goal_id, hub_state=costs.hub_state(), model=model, provider=provider)
        usd = costs.prices.usd(model, provider, tokens_in, tokens_out)
        estimate = Estimate(tokens_in + tokens_out, usd)
        grant = costs.reserve(scope, estimate)
        if isinstance(grant, Refusal):
            self.n_refused += 1
            raise BudgetRefused(grant, _fits(costs, scope, grant.budget, estimate))
        started = time.monotonic()
        try:
            reply = await call()
        except BaseException:
            costs.budgets.release(grant.grant_id)
            raise
        entry = CostEntry(
            ts=costs.clock.now_ms(), goal_id=goal_id, model=model, provider=provider, hub_state=scope.hub_state,
            source="hub",
            tokens_in=reply.usage.get("input_tokens", 0), tokens_out=reply.usage.get("output_tokens", 0),
            wall_ms=int((time.monotonic() - started) * 1000), grant_id=grant.grant_id,
        )  # fmt: skip
        await costs.settle(grant, entry)
        logger.info("%s: %s %s usage=%s", purpose, reply.provider, reply.model, reply.usage)
        return reply

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """POST ``body``; the JSON object answered, read up to the output bound (more is an error, not a cut)."""
        limit = self._settings.hub_model_max_output_bytes
        timeout = httpx.Timeout(self._settings.hub_model_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            async with client.stream("POST", url, json=body, headers=headers) as response:
                raw = await read_capped(response, limit)  # TooLarge is a ValueError: the call failed
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("reply is not a JSON object")
        return data

    async def _ollama(self, system: str, messages: list[Message]) -> ModelReply:
        base = str(self._settings.hub_model_url).rstrip("/")
        body = {
            "model": self._settings.hub_model,
            "messages": [{"role": "system", "content": system}, *messages],
            "stream": False,
            "format": "json",
            "options": {"temperature": 0, "num_predict": MAX_TOKENS},
        }
        data = await self._post(f"{base}/api/chat", body, {})
        message = data.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty reply")
        usage = {"input_tokens": _count(data.get("prompt_eval_count")), "output_tokens": _count(data.get("eval_count"))}
        return ModelReply(text, "ollama", self._settings.hub_model, usage)

    async def _anthropic(self, system: str, messages: list[Message], key: str) -> ModelReply:
        base = self._settings.hub_claude_url.rstrip("/")
        body = {
            "model": self._settings.hub_claude_model,
            "max_tokens": MAX_TOKENS,
            "system": system,
            "messages": messages,
        }
        headers = {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        data = await self._post(f"{base}/v1/messages", body, headers)
        blocks = data.get("content")
        text = "".join(
            b["text"]
            for b in (blocks if isinstance(blocks, list) else [])
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
        if not text.strip():
            raise ValueError("empty reply")
        raw = data.get("usage")
        usage = raw if isinstance(raw, dict) else {}
        tokens = {
            "input_tokens": _count(usage.get("input_tokens")),
            "output_tokens": _count(usage.get("output_tokens")),
        }
        return ModelReply(text, "anthropic", str(data.get("model") or self._settings.hub_claude_model)[:128], tokens)


def _fits(costs: Costs, scope: Scope, budget: str, estimate: Estimate) -> bool:
    """Whether a call of ``estimate`` is within the limit of ``budget`` (one of ``scope``'s) at all, nothing spent."""
    for check in costs.budgets.checks(scope):
        if check.key == budget:
            tokens, usd = check.limit.tokens, check.limit.usd
            return (tokens is None or estimate.tokens <= tokens) and (usd is None or estimate.usd <= usd + 1e-12)
    return True


def _safe_url(url: str) -> str:
    """``url`` without any user or password in it (what errors and logs may show)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else url


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53 else 0


def _describe(exc: Exception) -> str:
    """A short reason without anything of the request but its URL (no headers, so no key)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    if isinstance(exc, json.JSONDecodeError):
        return "reply is not JSON"
    return (str(exc) or type(exc).__name__)[:300]
