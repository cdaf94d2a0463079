"""Chat models behind one seam: ``ChatModel.chat(messages, tools) -> ModelTurn``; ``ollama.py`` and ``claude.py``
implement it (``claude.py`` alone imports the Anthropic SDK, so only a sidecar that uses Claude loads it).

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

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
ToolSpec = Mapping[str, Any]
ProgressCallback = Callable[[int], Awaitable[None]]
"""Called while a reply streams with the estimated number of tokens generated so far in this turn."""
CHARS_PER_TOKEN = 4


class ModelError(Exception):
    """The model call failed; ``retryable`` says whether the same request may succeed if sent again."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


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

    def as_message(self) -> Message:
        """This reply as a neutral history message."""
        return {"role": "assistant", "content": self.content, "thinking": self.thinking,
                "tool_calls": self.tool_calls, "provider_message": self.provider_message}  # fmt: skip


class ChatModel(Protocol):
    provider: str
    """``ollama`` or ``claude``."""
    model: str

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, on_progress: ProgressCallback | None = None
    ) -> ModelTurn:
        """Send the conversation, return the reply. Raises ``ModelError`` (or a subclass) only."""
        ...


def estimate_tokens(payload: Any) -> int:
    """A rough token count of a request (JSON characters / 4), for pre-flight overflow checks and live progress."""
    return len(json.dumps(payload, ensure_ascii=False, default=str)) // CHARS_PER_TOKEN
