"""``OllamaChatModel``: Ollama's ``/api/chat`` with native tools, streamed (see :mod:`sidecar.agent.models`)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import ollama
import pydantic

from sidecar.agent.models import (
    ContextOverflow,
    Message,
    ModelError,
    ModelTurn,
    ModelUnavailable,
    ProgressCallback,
    ToolSpec,
    estimate_tokens,
)

logger = logging.getLogger(__name__)


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
