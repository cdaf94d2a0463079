"""Chat models behind one seam: ``ChatModel.chat(messages, tools) -> ModelTurn``, for Ollama and for Claude.

Messages are provider-neutral dicts (the loop and the trajectory keep them so)::

    {"role": "system" | "user", "content": str}
    {"role": "assistant", "content", "thinking", "tool_calls": [{"id", "name", "arguments"}], "provider_message"}
    {"role": "tool", "tool_call_id", "name", "content", "is_error"}

``provider_message`` is the assistant message exactly as the provider sent it; it is what goes back on the next
request. Tools are ``{"name", "description", "parameters"}``. Foreign errors are translated here, nothing above
this module sees an ``ollama``, ``httpx`` or ``anthropic`` exception::

    ModelError                 the call failed (bad request, server error, malformed response)
     +-- ModelUnavailable      no answer could be had (connection, timeout, auth, unknown model, overload)
     +-- ContextOverflow       the conversation no longer fits the model's context window
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import httpx
import httpx2  # the anthropic SDK's HTTP client (a fork of httpx, not httpx itself)
import ollama
import pydantic

logger = logging.getLogger(__name__)

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


# --- Ollama --------------------------------------------------------------------------------------------------------


class OllamaChatModel:
    """``/api/chat`` with native tools, streamed; ``num_ctx`` is always sent, so the window is never a guess."""

    provider = "ollama"

    def __init__(
        self, host: str, model: str, *, num_ctx: int = 32768, temperature: float | None = None,
        keep_alive: str | None = "30m", think: bool | None = None, connect_timeout_s: float = 10.0,
        idle_timeout_s: float = 300.0, max_retries: int = 1, retry_delay_s: float = 1.0,
        overflow_fraction: float = 0.95,
    ) -> None:  # fmt: skip
        self.host, self.model, self.num_ctx = host, model, num_ctx
        self.options: dict[str, Any] = {"num_ctx": num_ctx}
        if temperature is not None:
            self.options["temperature"] = temperature
        self.keep_alive, self.think = keep_alive, think
        self.max_retries, self.retry_delay_s, self.overflow_fraction = max_retries, retry_delay_s, overflow_fraction
        # The read timeout applies per chunk, so it is an idle timeout: a stalled stream fails, a long one does not.
        timeout = httpx.Timeout(connect=connect_timeout_s, read=idle_timeout_s, write=60.0, pool=connect_timeout_s)
        self._client = ollama.AsyncClient(host=host, timeout=timeout)

    def __repr__(self) -> str:
        return f"<OllamaChatModel {self.model!r} host={self.host!r} num_ctx={self.num_ctx}>"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()  # type: ignore[no-untyped-call]

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, on_progress: ProgressCallback | None = None
    ) -> ModelTurn:
        wire = [_ollama_message(m) for m in messages]
        wire_tools = [{"type": "function", "function": dict(t)} for t in tools]
        estimate = estimate_tokens([wire, wire_tools])
        if estimate > self.num_ctx:
            raise ContextOverflow(f"the request is about {estimate} tokens, more than num_ctx={self.num_ctx}")
        for attempt in range(self.max_retries + 1):
            try:
                return self._checked(await self._chat_once(wire, wire_tools, on_progress))
            except ModelError as exc:
                if not exc.retryable or attempt == self.max_retries:
                    raise
                logger.warning("ollama %s: %s; retrying (%d/%d)", self.model, exc, attempt + 1, self.max_retries)
                await asyncio.sleep(self.retry_delay_s * (attempt + 1))
        raise AssertionError("unreachable")

    def _checked(self, turn: ModelTurn) -> ModelTurn:
        # Ollama truncates an overlong prompt with only a server-side warning: a full window means we lost context.
        if turn.tokens_in >= self.overflow_fraction * self.num_ctx:
            raise ContextOverflow(f"the prompt used {turn.tokens_in} of num_ctx={self.num_ctx} tokens")
        return turn

    async def _chat_once(
        self, wire: list[Message], tools: list[dict[str, Any]], on_progress: ProgressCallback | None
    ) -> ModelTurn:
        content: list[str] = []
        thinking: list[str] = []
        calls: list[dict[str, Any]] = []
        final: ollama.ChatResponse | None = None
        pieces = 0
        try:
            stream = await self._client.chat(self.model, wire, tools=tools, stream=True, think=self.think,
                                             options=self.options, keep_alive=self.keep_alive)  # fmt: skip
            async for part in stream:
                delta = part.message
                content.append(delta.content or "")
                thinking.append(delta.thinking or "")
                calls += [c.model_dump(exclude_none=True) for c in delta.tool_calls or []]
                if delta.content or delta.thinking:  # Ollama streams about one token per chunk
                    pieces += 1
                    if on_progress is not None:
                        await on_progress(pieces)
                if part.done:
                    final = part
        except ollama.ResponseError as exc:
            raise _ollama_error(exc) from None
        except (ConnectionError, httpx.ConnectError) as exc:  # refused (the client wraps it only when not streaming)
            raise ModelUnavailable(f"cannot connect to Ollama at {self.host}: {exc}", retryable=True) from None
        except httpx.TimeoutException as exc:
            raise ModelUnavailable(f"Ollama at {self.host} timed out ({type(exc).__name__})", retryable=True) from None
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"Ollama at {self.host}: {type(exc).__name__}: {exc}", retryable=True) from None
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise ModelError(f"malformed response from Ollama: {str(exc)[:200]}", retryable=True) from None
        if final is None:
            raise ModelError("the Ollama stream ended without a final (done) chunk", retryable=True)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if any(thinking):
            message["thinking"] = "".join(thinking)
        if calls:
            message["tool_calls"] = calls
        tool_calls = [
            {"id": f"call_{uuid.uuid4().hex[:12]}", "name": c["function"]["name"],
             "arguments": c["function"].get("arguments") or {}}
            for c in calls
        ]  # fmt: skip
        return ModelTurn(
            content=message["content"], thinking=message.get("thinking"), tool_calls=tool_calls,
            tokens_in=final.prompt_eval_count or 0, tokens_out=final.eval_count or 0, provider_message=message,
            raw={**final.model_dump(exclude_none=True), "message": message}, truncated=final.done_reason == "length",
        )  # fmt: skip


def _ollama_message(message: Message) -> dict[str, Any]:
    if message["role"] == "assistant":
        return dict(message["provider_message"])
    if message["role"] == "tool":
        return {"role": "tool", "tool_name": message["name"], "content": message["content"]}
    return {"role": message["role"], "content": message["content"]}


def _ollama_error(exc: ollama.ResponseError) -> ModelError:
    text, status = str(exc.error), exc.status_code
    if "context length" in text.lower() or "context window" in text.lower():
        return ContextOverflow(f"Ollama: {text}")
    if status == 404:
        return ModelUnavailable(f"Ollama: {text}")
    # 5xx covers "error parsing tool call"; -1 is an error line inside an otherwise fine stream.
    return ModelError(f"Ollama answered {status}: {text[:500]}", retryable=status >= 500 or status == -1)


# --- Claude --------------------------------------------------------------------------------------------------------


class ClaudeChatModel:
    """The Anthropic Messages API, streamed, with native ``tool_use``; the SDK retries 429/5xx ``max_retries`` times."""

    provider = "claude"

    def __init__(
        self, model: str, *, api_key: str, base_url: str | None = None, max_tokens: int = 8192,
        max_retries: int = 2, timeout_s: float = 600.0, thinking: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.model, self.max_tokens, self.thinking = model, max_tokens, thinking
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout_s
        )

    def __repr__(self) -> str:
        return f"<ClaudeChatModel {self.model!r}>"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, on_progress: ProgressCallback | None = None
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
            raise ModelUnavailable(f"Claude unavailable: {type(exc).__name__}: {exc}", retryable=True) from None
        except (anthropic.AnthropicError, json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise ModelError(f"Claude call failed: {type(exc).__name__}: {str(exc)[:300]}", retryable=True) from None
        return _claude_turn(final)


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
