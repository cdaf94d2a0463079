"""Chat models behind one seam: ``ChatModel.chat(messages, tools) -> ModelTurn``; ``ollama.py``,
``openai_compat.py`` and ``claude.py`` implement it (``claude.py`` alone imports the Anthropic SDK, so only a sidecar
that uses Claude loads it).

Messages are provider-neutral dicts (the loop and the trajectory keep them so)::

    {"role": "system" | "user", "content": str}
    {"role": "assistant", "content", "thinking", "tool_calls": [{"id", "name", "arguments"}], "provider_message"}
    {"role": "tool", "tool_call_id", "name", "content", "is_error"}

``provider_message`` is the assistant message exactly as the provider sent it; it is what goes back on the next
request. Tools are ``{"name", "description", "parameters"}``. Foreign errors are translated in the adapters, nothing
above them sees an ``ollama``, ``httpx`` or ``anthropic`` exception::

    ModelError                 the call failed (bad request, server error, malformed response)
     +-- ModelUnavailable      no answer could be had (connection, timeout, auth, unknown model, overload)
     +-- ContextOverflow       the conversation no longer fits the model's context window
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Message = dict[str, Any]
ToolSpec = Mapping[str, Any]
ProgressCallback = Callable[[int], Awaitable[None]]
"""Called while a reply streams with the estimated number of tokens generated so far in this turn."""
RetryCallback = Callable[["ModelError", int, float], Awaitable[None]]
"""Called as ``await on_retry(error, retry, delay_s)`` before a failed call is sent again (``retry`` counts from 1)."""
CHARS_PER_TOKEN = 4
MAX_RETRY_AFTER_S = 60.0
"""The longest wait a server's ``retry-after`` may ask for."""


class ModelError(Exception):
    """The model call failed; ``retryable`` says whether the same request may succeed if sent again."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        """How long the server asked us to wait before trying again, if it said."""


class ModelUnavailable(ModelError):
    """No answer could be had from the model's service."""


class ContextOverflow(ModelError):
    """The prompt fills (or exceeds) the context window, so the model would see a truncated conversation."""


@dataclass(frozen=True)
class ModelTurn:
    """One assistant reply."""

    content: str
    thinking: str | None
    tool_calls: list[dict[str, Any]]
    """Native calls, ``{"id", "name", "arguments"}`` in the order sent."""
    tokens_in: int
    tokens_out: int
    provider_message: dict[str, Any]
    """The assistant message as received, to be sent back unchanged."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The provider's final response object (usage, stop reason, timings) for the trajectory."""
    truncated: bool = False
    """The reply hit the output-token limit."""
    tokens_reevaluated: int | None = None
    """Prompt tokens the server evaluated for this reply (the rest came from its KV cache), when it reports it."""

    def as_message(self) -> Message:
        """This reply as a neutral history message."""
        return {"role": "assistant", "content": self.content, "thinking": self.thinking,
                "tool_calls": self.tool_calls, "provider_message": self.provider_message}  # fmt: skip


class ChatModel(Protocol):
    provider: str
    """``ollama``, ``openai`` or ``claude``."""
    model: str

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, on_progress: ProgressCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> ModelTurn:  # fmt: skip
        """Send the conversation, return the reply; a retryable failure is retried (``on_retry`` is told first).

        Raises ``ModelError`` (or a subclass) only.
        """
        ...


async def with_retries(
    call: Callable[[], Awaitable[ModelTurn]], *, name: str, max_retries: int, retry_delay_s: float,
    on_retry: RetryCallback | None = None,
) -> ModelTurn:  # fmt: skip
    """``call()``, sent again after a retryable ``ModelError`` up to ``max_retries`` times.

    The n-th retry waits ``retry_delay_s * n``, or longer when the server asked for it (``retry_after_s``, capped).
    """
    for attempt in range(max_retries + 1):
        try:
            return await call()
        except ModelError as exc:
            if not exc.retryable or attempt == max_retries:
                raise
            delay_s = max(retry_delay_s * (attempt + 1), min(exc.retry_after_s or 0.0, MAX_RETRY_AFTER_S))
            logger.warning("%s: %s; retrying (%d/%d) in %g s", name, exc, attempt + 1, max_retries, delay_s)
            if on_retry is not None:
                await on_retry(exc, attempt + 1, delay_s)
            await asyncio.sleep(delay_s)
    raise AssertionError("unreachable")


def estimate_tokens(payload: Any) -> int:
    """A rough token count of a request (JSON characters / 4), for pre-flight overflow checks and live progress."""
    return len(json.dumps(payload, ensure_ascii=False, default=str)) // CHARS_PER_TOKEN
