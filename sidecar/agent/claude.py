"""``ClaudeChatModel``: the Anthropic Messages API, streamed, with native ``tool_use`` (see
:mod:`sidecar.agent.models`). The only module that imports the Anthropic SDK."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic
import httpx2  # the anthropic SDK's HTTP client (a fork of httpx, not httpx itself)
import pydantic

from sidecar.agent.models import (
    CHARS_PER_TOKEN,
    ContextOverflow,
    Message,
    ModelError,
    ModelTurn,
    ModelUnavailable,
    ProgressCallback,
    RetryCallback,
    ToolSpec,
    with_retries,
)


class ClaudeChatModel:
    """The Anthropic Messages API, streamed, with native ``tool_use``; 429/5xx are retried ``max_retries`` times here
    (not in the SDK), so each retry is reported to ``on_retry``."""

    provider = "claude"

    def __init__(
        self, model: str, *, api_key: str, base_url: str | None = None, max_tokens: int = 8192,
        max_retries: int = 2, retry_delay_s: float = 0.5, timeout_s: float = 600.0,
        thinking: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.model, self.max_tokens, self.thinking = model, max_tokens, thinking
        self.max_retries, self.retry_delay_s = max_retries, retry_delay_s
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def __repr__(self) -> str:
        return f"<ClaudeChatModel {self.model!r}>"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, on_progress: ProgressCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> ModelTurn:  # fmt: skip
        return await with_retries(lambda: self._chat_once(messages, tools, on_progress), name=f"claude {self.model}",
                                  max_retries=self.max_retries, retry_delay_s=self.retry_delay_s,
                                  on_retry=on_retry)  # fmt: skip

    async def _chat_once(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], on_progress: ProgressCallback | None
    ) -> ModelTurn:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        # Typed as Any: the SDK's TypedDict unions add nothing over the shapes built (and tested) here.
        wire_tools: Any = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                           for t in tools]  # fmt: skip
        wire: Any = _claude_messages(messages)
        extra: dict[str, Any] = {"thinking": self.thinking} if self.thinking else {}
        chars = 0
        try:
            async with self._client.messages.stream(
                model=self.model, max_tokens=self.max_tokens, system=system, messages=wire,
                tools=wire_tools, **extra,
            ) as stream:  # fmt: skip
                async for event in stream:
                    if on_progress is not None and event.type in _DELTA_FIELDS:
                        chars += len(getattr(event, _DELTA_FIELDS[event.type]) or "")
                        await on_progress(max(1, chars // CHARS_PER_TOKEN))
                final = await stream.get_final_message()
        except anthropic.BadRequestError as exc:
            if any(sign in str(exc).lower() for sign in _OVERFLOW_SIGNS):
                raise ContextOverflow(f"Claude: {exc}") from None
            raise ModelError(f"Claude refused the request: {exc}") from None
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError, anthropic.NotFoundError) as exc:
            raise ModelUnavailable(f"Claude: {exc}") from None
        except (anthropic.APIConnectionError, anthropic.RateLimitError, anthropic.InternalServerError,
                httpx2.TransportError) as exc:  # fmt: skip
            raise ModelUnavailable(f"Claude unavailable: {type(exc).__name__}: {exc}", retryable=True,
                                   retry_after_s=_retry_after_s(exc)) from None  # fmt: skip
        except (anthropic.AnthropicError, json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise ModelError(f"Claude call failed: {type(exc).__name__}: {str(exc)[:300]}", retryable=True) from None
        return _claude_turn(final)


def _retry_after_s(exc: Exception) -> float | None:
    """The ``retry-after`` seconds of a refused request's response, if it has one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _claude_turn(final: Any) -> ModelTurn:
    blocks = [_claude_block(block) for block in final.content]
    usage = final.usage
    cached = sum(getattr(usage, name, 0) or 0 for name in ("cache_creation_input_tokens", "cache_read_input_tokens"))
    return ModelTurn(
        content="".join(b["text"] for b in blocks if b["type"] == "text"),
        thinking="".join(b["thinking"] for b in blocks if b["type"] == "thinking") or None,
        tool_calls=[{"id": b["id"], "name": b["name"], "arguments": b["input"]}
                    for b in blocks if b["type"] == "tool_use"],
        tokens_in=(usage.input_tokens or 0) + cached, tokens_out=usage.output_tokens or 0,
        provider_message={"role": "assistant", "content": blocks},
        raw=final.model_dump(mode="json", exclude_none=True), truncated=final.stop_reason == "max_tokens",
    )  # fmt: skip


_OVERFLOW_SIGNS = ("prompt is too long", "context window", "context length", "too many tokens")
_DELTA_FIELDS = {"text": "text", "thinking": "thinking", "input_json": "partial_json"}
"""The SDK's delta events and the attribute holding the new text."""
_BLOCK_FIELDS = {"text": ("text",), "tool_use": ("id", "name", "input"), "thinking": ("thinking", "signature"),
                 "redacted_thinking": ("data",)}  # fmt: skip


def _claude_block(block: Any) -> dict[str, Any]:
    """A response block as a request block: the same fields, minus response-only ones (``citations: null``...)."""
    data = block.model_dump(mode="json", exclude_none=True)
    fields = _BLOCK_FIELDS.get(data["type"])
    return data if fields is None else {"type": data["type"], **{k: data[k] for k in fields if k in data}}


def _claude_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral history to Messages API turns: tool results and user text merge into alternating user turns."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            continue
        if role == "assistant":
            # The API refuses an empty assistant turn; an empty reply is kept as a visible placeholder.
            content = message["provider_message"]["content"] or [{"type": "text", "text": "(empty reply)"}]
            wire.append({"role": "assistant", "content": content})
            continue
        if role == "tool" and message.get("tool_call_id"):
            block = {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": message["content"],
                     "is_error": bool(message.get("is_error"))}  # fmt: skip
        elif role == "tool":
            block = {"type": "text", "text": f"[result of {message['name']}]\n{message['content']}"}
        else:
            block = {"type": "text", "text": message["content"]}
        if wire and wire[-1]["role"] == "user":
            wire[-1]["content"].append(block)
        else:
            wire.append({"role": "user", "content": [block]})
    return wire
