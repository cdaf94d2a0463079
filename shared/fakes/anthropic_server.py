"""A fake Anthropic Messages API (``POST /v1/messages``) replaying scripted turns.

Replies carry the full message shape (``id``, ``type``, ``role``, ``model``, ``content``, ``stop_reason``,
``usage``) so the SDK's strict validation passes; ``"stream": true`` answers with the SSE event sequence
``message_start``, ``ping``, per block ``content_block_start/delta/stop``, ``message_delta``, ``message_stop``.
Thinking blocks are sent only when the request enables ``thinking``. Auth: ``x-api-key`` or ``Authorization: Bearer``.

Run it for a demo: ``python -m shared.fakes.anthropic_server --port 8765 --script hello_world`` (prints its URL).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.fakes import serving
from shared.fakes.script import Script, ScriptedServer, Turn, split_text


def _text(content: Any) -> str:
    """Plain text of a ``system`` or message ``content`` (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _error(status: int, kind: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_{uuid4().hex[:24]}"}
    return JSONResponse(body, status_code=status)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode()


class FakeAnthropicServer(ScriptedServer):
    """Fake Anthropic: ``anthropic.AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=0)``.

    With ``api_key`` set, other keys get 401; otherwise any non-empty key is accepted.
    """

    def __init__(self, script: Script | str = "hello_world", *, api_key: str | None = None) -> None:
        super().__init__(script)
        self.api_key = api_key

    def build_app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    def _authorized(self, request: Request) -> bool:
        bearer = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
        return bool(key) and (self.api_key is None or key == self.api_key)

    async def messages(self, request: Request) -> Response:
        body = await self.record(request)
        if not self._authorized(request):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return _error(400, "invalid_request_error", "model and messages are required")
        if not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        first_user = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
        try:
            turn = await serving.next_turn(self, [_text(body.get("system")), first_user], messages)
        except KeyError as exc:
            return _error(400, "invalid_request_error", str(exc.args[0]))
        if turn.failure == "http_500":
            return _error(500, "api_error", "Internal server error")
        thinking = isinstance(body.get("thinking"), dict) and body["thinking"].get("type") in ("enabled", "adaptive")
        message = self._message(turn, str(body["model"]), thinking)
        headers = {"request-id": f"req_{uuid4().hex[:24]}"}
        if body.get("stream"):
            return StreamingResponse(self._stream(turn, message), media_type="text/event-stream", headers=headers)
        return serving.json_reply(message, turn, headers)

    def _message(self, turn: Turn, model: str, thinking: bool) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if turn.failure != "empty":
            if thinking and turn.thinking:
                content.append({"type": "thinking", "thinking": turn.thinking, "signature": f"sig_{uuid4().hex}"})
            if turn.content:
                content.append({"type": "text", "text": turn.content})
            content += [
                {"type": "tool_use", "id": f"toolu_{uuid4().hex[:24]}", "name": c.name, "input": c.arguments}
                for c in turn.tool_calls
            ]
        return {
            "id": f"msg_{uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if turn.tool_calls and content else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": turn.prompt_tokens, "output_tokens": turn.eval_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }  # fmt: skip

    async def _stream(self, turn: Turn, message: dict[str, Any]) -> AsyncIterator[bytes]:
        start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
        yield _sse("message_start", {"message": start})
        yield _sse("ping", {})
        for index, block in enumerate(message["content"]):
            for event in _block_events(index, block):
                yield event
            if turn.failure == "malformed_json":
                break
        if turn.failure == "malformed_json":
            yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 1, "del\n\n'
            return
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        yield _sse("message_delta", {"delta": delta, "usage": {"output_tokens": turn.eval_tokens,
                                                               "input_tokens": turn.prompt_tokens}})  # fmt: skip
        yield _sse("message_stop", {})


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    """``content_block_start``, deltas (tool input JSON split in two), ``content_block_stop`` for one block."""
    start: dict[str, Any]
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in split_text(block["text"])]
    elif block["type"] == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in split_text(block["thinking"])]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:
        start = {**block, "input": {}}
        arguments = json.dumps(block["input"])
        half = len(arguments) // 2
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in (arguments[:half], arguments[half:])]
    return [
        _sse("content_block_start", {"index": index, "content_block": start}),
        *(_sse("content_block_delta", {"index": index, "delta": delta}) for delta in deltas),
        _sse("content_block_stop", {"index": index}),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = serving.demo_parser("Fake Anthropic Messages API replaying a scripted conversation.", 8765)
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    serving.run_demo(parser, lambda args: FakeAnthropicServer(args.script, api_key=args.api_key), argv)


if __name__ == "__main__":
    main()
