"""``OllamaChatModel``: Ollama's ``/api/chat`` with native tools, streamed (see :mod:`sidecar.agent.models`).

The NDJSON stream is read here with httpx rather than through the ``ollama`` client, whose typed parts refuse a
tool call whose ``arguments`` is a JSON string (as OpenAI-style servers send it): such a call reaches the parser as
sent, which decodes it or answers the model with a format error, and it goes back to the server as an object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from sidecar.agent.http_chat import HttpChatModel, count, transport_errors
from sidecar.agent.models import ContextOverflow, Message, ModelError, ModelTurn, ModelUnavailable, ProgressCallback


class OllamaChatModel(HttpChatModel):
    """``/api/chat`` with native tools, streamed; ``num_ctx`` is always sent, so the window is never a guess."""

    provider = "ollama"

    def __init__(
        self, host: str, model: str, *, num_ctx: int = 32768, temperature: float | None = None,
        keep_alive: str | None = "30m", think: bool | None = None, connect_timeout_s: float = 10.0,
        idle_timeout_s: float = 300.0, max_retries: int = 1, retry_delay_s: float = 1.0,
        overflow_fraction: float = 0.95,
    ) -> None:  # fmt: skip
        self.host = host
        self.options: dict[str, Any] = {"num_ctx": num_ctx}
        if temperature is not None:
            self.options["temperature"] = temperature
        self.keep_alive, self.think, self.overflow_fraction = keep_alive, think, overflow_fraction
        # The read timeout applies per chunk, so it is an idle timeout: a stalled stream fails, a long one does not.
        super().__init__(base_url(host), model, num_ctx, connect_timeout_s=connect_timeout_s,
                         read_timeout_s=idle_timeout_s, max_retries=max_retries, retry_delay_s=retry_delay_s,
                         follow_redirects=True)  # fmt: skip

    def __repr__(self) -> str:
        return f"<OllamaChatModel {self.model!r} host={self.host!r} num_ctx={self.num_ctx}>"

    def _window(self) -> str:
        return f"num_ctx={self.num_ctx}"

    def _wire_message(self, message: Message) -> dict[str, Any]:
        if message["role"] == "assistant":
            return dict(message["provider_message"])
        if message["role"] == "tool":
            return {"role": "tool", "tool_name": message["name"], "content": message["content"]}
        return {"role": message["role"], "content": message["content"]}

    async def _chat_once(
        self, wire: list[dict[str, Any]], tools: list[dict[str, Any]], on_progress: ProgressCallback | None
    ) -> ModelTurn:
        body: dict[str, Any] = {"model": self.model, "messages": wire, "tools": tools, "stream": True,
                                "options": self.options}  # fmt: skip
        if self.think is not None:
            body["think"] = self.think
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        content: list[str] = []
        thinking: list[str] = []
        calls: list[Any] = []
        final: dict[str, Any] | None = None
        pieces = 0
        try:
            with transport_errors(f"Ollama at {self.host}"):
                async with self._client.stream("POST", "/api/chat", json=body) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise _ollama_error(_error_text(response.text), response.status_code)
                    async for line in response.aiter_lines():
                        if not line.strip():
                            continue
                        part = json.loads(line)
                        if not isinstance(part, dict):
                            raise ModelError(f"malformed response from Ollama: {line[:200]}", retryable=True)
                        if part.get("error"):
                            raise _ollama_error(str(part["error"]), -1)
                        delta: dict[str, Any] = part["message"] if isinstance(part.get("message"), dict) else {}
                        text, thought = _text(delta.get("content")), _text(delta.get("thinking"))
                        content.append(text)
                        thinking.append(thought)
                        if isinstance(delta.get("tool_calls"), list):
                            calls += delta["tool_calls"]
                        if text or thought:  # Ollama streams about one token per chunk
                            pieces += 1
                            if on_progress is not None:
                                await on_progress(pieces)
                        if part.get("done"):
                            final = part
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"malformed response from Ollama: {str(exc)[:200]}", retryable=True) from None
        if final is None:
            raise ModelError("the Ollama stream ended without a final (done) chunk", retryable=True)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if any(thinking):
            message["thinking"] = "".join(thinking)
        tool_calls, sent_back = [], []
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            function = function if isinstance(function, Mapping) else {}
            arguments = function.get("arguments")
            tool_calls.append({"id": f"call_{uuid.uuid4().hex[:12]}", "name": function.get("name"),
                               "arguments": {} if arguments is None else arguments})  # fmt: skip
            sent_back.append({**call, "function": {**function, "arguments": as_object(arguments)}})
        if sent_back:
            message["tool_calls"] = sent_back
        tokens_in = count(final.get("prompt_eval_count"))
        # Ollama truncates an overlong prompt with only a server-side warning: a full window means we lost context.
        if tokens_in >= self.overflow_fraction * self.num_ctx:
            raise ContextOverflow(f"the prompt used {tokens_in} of num_ctx={self.num_ctx} tokens")
        return ModelTurn(
            content=message["content"], thinking=message.get("thinking"), tool_calls=tool_calls, tokens_in=tokens_in,
            tokens_out=count(final.get("eval_count")), provider_message=message, raw={**final, "message": message},
            truncated=final.get("done_reason") == "length",
        )  # fmt: skip


def base_url(host: str) -> str:
    """Ollama's address as a base URL: ``http://`` when no scheme is given, and then port 11434 when none is."""
    if "://" in host:
        return host.rstrip("/")
    url = httpx.URL(f"http://{host}")
    return str(url.copy_with(port=url.port or 11434)).rstrip("/")


def as_object(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the JSON object Ollama expects back: decoded from a JSON string, else empty."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return {}
    return dict(arguments) if isinstance(arguments, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _error_text(body: str) -> str:
    """The ``error`` field of an error response, or the body itself."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return body
    return str(data["error"]) if isinstance(data, dict) and "error" in data else body


def _ollama_error(text: str, status: int) -> ModelError:
    if "context length" in text.lower() or "context window" in text.lower():
        return ContextOverflow(f"Ollama: {text}")
    if status == 404:
        return ModelUnavailable(f"Ollama: {text}")
    # 5xx covers "error parsing tool call"; -1 is an error line inside an otherwise fine stream.
    return ModelError(f"Ollama answered {status}: {text[:500]}", retryable=status >= 500 or status == -1)
