"""``OpenAIChatModel``: an OpenAI-compatible ``/v1/chat/completions`` with ``tools`` (llama.cpp's server, vLLM,
LM Studio, Ollama's own ``/v1``), non-streamed, behind the same ``ChatModel`` seam as :mod:`sidecar.agent.ollama`.

Native ``tool_calls`` arrive with their ``arguments`` as a JSON string; they reach the parser as sent (which decodes
them or answers the model with a format error) and go back to the server unchanged in the assistant message. Calls a
model writes in its content go through the same parser chain as Ollama's. ``usage`` gives the token counts; the
tokens the server actually evaluated (the rest came from its KV cache) come from llama.cpp's ``timings.prompt_n`` or
``usage.prompt_tokens_details.cached_tokens`` when the server reports either. The API key is sent as a bearer token
and never appears in ``repr``, errors or logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sidecar.agent.http_chat import HttpChatModel, count, transport_errors
from sidecar.agent.models import ContextOverflow, Message, ModelError, ModelTurn, ModelUnavailable, ProgressCallback


class OpenAIChatModel(HttpChatModel):
    """``/v1/chat/completions`` with tools; ``context_length`` is the server's window (checked before sending)."""

    provider = "openai"

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, context_length: int = 8192,
        temperature: float | None = None, max_tokens: int | None = 1024, connect_timeout_s: float = 10.0,
        read_timeout_s: float = 600.0, max_retries: int = 1, retry_delay_s: float = 1.0,
    ) -> None:  # fmt: skip
        self.base_url = v1_url(base_url)
        self.temperature, self.max_tokens = temperature, max_tokens
        # Not streamed: the whole reply is one read, so the read timeout bounds one generation.
        super().__init__(self.base_url, model, context_length, connect_timeout_s=connect_timeout_s,
                         read_timeout_s=read_timeout_s, max_retries=max_retries, retry_delay_s=retry_delay_s,
                         headers={"Authorization": f"Bearer {api_key}"} if api_key else None)  # fmt: skip

    def __repr__(self) -> str:
        return f"<OpenAIChatModel {self.model!r} url={self.base_url!r} context_length={self.num_ctx}>"

    def _window(self) -> str:
        return f"the {self.num_ctx}-token window"

    def _wire_message(self, message: Message) -> dict[str, Any]:
        if message["role"] == "assistant":
            return dict(message["provider_message"])
        if message["role"] == "tool":
            if message.get("tool_call_id"):
                return {"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]}
            # The call was written in the content (no native id): its result goes back as a user message.
            return {"role": "user", "content": f"Result of {message['name']}:\n{message['content']}"}
        return {"role": message["role"], "content": message["content"]}

    async def _chat_once(
        self, wire: list[dict[str, Any]], tools: list[dict[str, Any]], on_progress: ProgressCallback | None
    ) -> ModelTurn:
        body: dict[str, Any] = {"model": self.model, "messages": wire, "stream": False}
        if tools:
            body["tools"] = tools
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        with transport_errors(self.base_url):
            response = await self._client.post("/chat/completions", json=body)
        if response.status_code >= 400:
            raise _http_error(response.status_code, _error_text(response.text))
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"]
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelError(f"malformed response from {self.base_url}: {str(exc)[:200]}", retryable=True) from None
        raw_content, raw_calls = message.get("content"), message.get("tool_calls")
        content: str = raw_content if isinstance(raw_content, str) else ""
        calls: list[Any] = raw_calls if isinstance(raw_calls, list) else []
        tool_calls = []
        for index, call in enumerate(calls):
            function = call.get("function") if isinstance(call, Mapping) else None
            function = function if isinstance(function, Mapping) else {}
            call_id = call.get("id") if isinstance(call, Mapping) and isinstance(call.get("id"), str) else None
            arguments = function.get("arguments")
            tool_calls.append({"id": call_id or f"call_{index}", "name": function.get("name"),
                               "arguments": {} if arguments is None else arguments})  # fmt: skip
        sent_back: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            sent_back["tool_calls"] = [
                {"id": tc["id"], "type": "function",
                 "function": {"name": tc["name"], "arguments": _as_json_text(tc["arguments"])}}
                for tc in tool_calls
            ]  # fmt: skip
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens_in = count(usage.get("prompt_tokens"))
        meta = {k: v for k, v in data.items() if k != "choices"}
        meta["finish_reason"] = choice.get("finish_reason")
        return ModelTurn(
            content=content, thinking=_reasoning(message), tool_calls=tool_calls, tokens_in=tokens_in,
            tokens_out=count(usage.get("completion_tokens")), provider_message=sent_back, raw=meta,
            truncated=choice.get("finish_reason") == "length", tokens_reevaluated=reevaluated(data, tokens_in),
        )  # fmt: skip


def v1_url(base_url: str) -> str:
    """The API root ending in ``/v1``: ``http://host:8080`` and ``http://host:8080/v1/`` both give ``.../v1``."""
    url = base_url.rstrip("/") if "://" in base_url else f"http://{base_url.rstrip('/')}"
    return url if url.endswith("/v1") else f"{url}/v1"


def reevaluated(data: Mapping[str, Any], tokens_in: int) -> int | None:
    """Prompt tokens the server evaluated (not taken from its KV cache), when it says; else ``None``."""
    timings = data.get("timings")
    if isinstance(timings, Mapping) and isinstance(timings.get("prompt_n"), int):
        return max(0, int(timings["prompt_n"]))
    usage = data.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    if isinstance(details, Mapping) and isinstance(details.get("cached_tokens"), int):
        return max(0, tokens_in - int(details["cached_tokens"]))
    return None


def _reasoning(message: Mapping[str, Any]) -> str | None:
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) and value else None


def _as_json_text(arguments: Any) -> str:
    """Arguments as OpenAI sends them back: the string as received, or an object encoded."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _error_text(body: str) -> str:
    """The error message of an error response (``{"error": {"message"}}`` or ``{"error": "..."}``), or the body."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return body[:500]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, Mapping):
        return str(error.get("message") or error)[:500]
    return str(error)[:500] if error else body[:500]


def _http_error(status: int, text: str) -> ModelError:
    lowered = text.lower()
    if "context" in lowered and ("length" in lowered or "window" in lowered or "exceed" in lowered):
        return ContextOverflow(f"the server answered {status}: {text}")
    if status in (401, 403, 404):
        return ModelUnavailable(f"the server answered {status}: {text}")
    if status == 429:
        return ModelUnavailable(f"the server answered {status}: {text}", retryable=True)
    return ModelError(f"the server answered {status}: {text}", retryable=status >= 500)
