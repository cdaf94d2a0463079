"""A fake Ollama server speaking the real ``/api`` wire protocol, replaying scripted turns.

Serves ``/api/tags``, ``/api/version``, ``/api/show``, ``/api/ps`` and ``/api/chat`` (NDJSON streaming, or one JSON
object when ``"stream": false``; a missing ``stream`` streams, like the real server). Unknown models get 404.
Ollama's OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions`` (without streaming) are served too.

Run it for a demo: ``python -m shared.fakes.ollama_server --port 11434 --script hello_world`` (prints its URL).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from shared.fakes import serving
from shared.fakes.script import Script, ScriptedServer, Turn, get_script, split_text

DIGEST = "sha256:" + "f" * 64
DETAILS = {
    "parent_model": "", "format": "gguf", "family": "fake", "families": ["fake"],
    "parameter_size": "1B", "quantization_level": "Q4_0",
}  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeOllamaServer(ScriptedServer):
    """Fake Ollama: ``async with FakeOllamaServer() as server: ollama.AsyncClient(host=server.url)``."""

    def __init__(
        self,
        script: Script | str = "hello_world",
        *,
        model: str = "fake-coder:latest",
        version: str = "0.12.6",
        models: Mapping[str, Script | str] | None = None,
        warm: Collection[str] | None = None,
    ) -> None:
        super().__init__(script)
        self.model = model
        self.version = version
        self.models: dict[str, Script] = {
            name: get_script(s) if isinstance(s, str) else s for name, s in (models or {}).items()
        }
        """More models beside ``model``, each replaying its own default script (as the models of one real server
        each behave their own way)."""
        self.warm = set(warm) if warm is not None else None
        """Models ``/api/ps`` lists as loaded (None: every model)."""

    def build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self.root, methods=["GET", "HEAD"]),
                Route("/api/version", self.api_version, methods=["GET"]),
                Route("/api/tags", self.tags, methods=["GET"]),
                Route("/api/ps", self.ps, methods=["GET"]),
                Route("/api/show", self.show, methods=["POST"]),
                Route("/api/chat", self.chat, methods=["POST"]),
                Route("/v1/models", self.v1_models, methods=["GET"]),
                Route("/v1/chat/completions", self.v1_chat, methods=["POST"]),
            ]
        )

    def knows(self, name: Any) -> bool:
        return self._name(name) is not None

    def _name(self, name: Any) -> str | None:
        """The served model ``name`` means (``x`` means ``x:latest``), or None."""
        if not isinstance(name, str):
            return None
        return next((m for m in (self.model, *self.models) if m in (name, f"{name}:latest")), None)

    def _model_entry(self, name: str | None = None) -> dict[str, Any]:
        name = name or self.model
        return {"name": name, "model": name, "modified_at": "2026-01-01T00:00:00Z", "size": 1_000_000_000,
                "digest": DIGEST, "details": DETAILS}  # fmt: skip

    async def root(self, request: Request) -> Response:
        await self.record(request)
        return PlainTextResponse("Ollama is running")

    async def api_version(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"version": self.version})

    async def tags(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"models": [self._model_entry(m) for m in (self.model, *self.models)]})

    async def ps(self, request: Request) -> Response:
        await self.record(request)
        loaded = [m for m in (self.model, *self.models) if self.warm is None or m in self.warm]
        running = [{**self._model_entry(m), "expires_at": "2099-01-01T00:00:00Z", "size_vram": 1_000_000_000,
                    "context_length": 32768} for m in loaded]  # fmt: skip
        return JSONResponse({"models": running})

    async def show(self, request: Request) -> Response:
        body = await self.record(request)
        name = (body.get("model") or body.get("name")) if isinstance(body, dict) else None
        if not self.knows(name):
            return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)
        return JSONResponse({
            "license": "", "modelfile": f"FROM {self._name(name)}\n", "parameters": "temperature 0",
            "template": "{{ .Prompt }}", "details": DETAILS, "modified_at": "2026-01-01T00:00:00Z",
            "model_info": {"general.architecture": "fake", "fake.context_length": 32768},
            "capabilities": ["completion", "tools", "thinking"],
        })  # fmt: skip

    async def chat(self, request: Request) -> Response:
        body = await self.record(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "invalid request body"}, status_code=400)
        if not self.knows(body.get("model")):
            return JSONResponse({"error": f'model "{body.get("model")}" not found, try pulling it first'}, 404)
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        try:
            model = self._name(body.get("model")) or self.model
            turn = await serving.next_turn(self, serving.chat_markers(messages), messages, self.models.get(model))
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0])}, status_code=400)
        if turn.failure == "http_500":
            return JSONResponse({"error": serving.PARSE_ERROR}, status_code=500)
        if body.get("stream", True):
            return StreamingResponse(self._stream(turn), media_type="application/x-ndjson")
        reply = {"model": self.model, "created_at": _now(), "message": self._message(turn), **self._metrics(turn)}
        return serving.json_reply(reply, turn)

    def _message(self, turn: Turn) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if turn.failure == "empty":
            return message
        message["content"] = turn.content
        if turn.thinking:
            message["thinking"] = turn.thinking
        if turn.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid4().hex[:8]}",
                    "function": {
                        "index": i,
                        "name": c.name,
                        "arguments": c.arguments if c.raw_arguments is None else c.raw_arguments,
                    },
                }
                for i, c in enumerate(turn.tool_calls)
            ]
        return message

    def _metrics(self, turn: Turn) -> dict[str, Any]:
        prompt_ns, eval_ns = turn.prompt_tokens * 1_000_000, turn.eval_tokens * 10_000_000
        return {
            "done": True, "done_reason": "stop", "total_duration": 5_000_000 + prompt_ns + eval_ns,
            "load_duration": 5_000_000, "prompt_eval_count": turn.prompt_tokens, "prompt_eval_duration": prompt_ns,
            "eval_count": turn.eval_tokens, "eval_duration": eval_ns,
        }  # fmt: skip

    async def _stream(self, turn: Turn) -> AsyncIterator[bytes]:
        """Thinking and content as deltas, all tool calls in one chunk, then a ``done`` chunk with the metrics."""
        message = self._message(turn)

        def chunk(delta: dict[str, Any], done: bool = False) -> bytes:
            part = {"model": self.model, "created_at": _now(), "message": {"role": "assistant", "content": "", **delta}}
            return json.dumps({**part, **(self._metrics(turn) if done else {"done": False})}).encode() + b"\n"

        for piece in split_text(message.get("thinking", "")):
            yield chunk({"thinking": piece})
        for piece in split_text(message["content"]):
            yield chunk({"content": piece})
        if turn.failure == "malformed_json":
            yield b'{"model": "' + self.model.encode() + b'", "message": {"role": "assistant", "content": "tru\n'
            return
        if "tool_calls" in message:
            yield chunk({"tool_calls": message["tool_calls"]})
        yield chunk({}, done=True)

    # --- Ollama's OpenAI-compatible /v1 API (non-streaming only): arguments as a JSON string, usage counters ---

    async def v1_models(self, request: Request) -> Response:
        await self.record(request)
        data = [{"id": m, "object": "model", "created": 1_767_225_600, "owned_by": "library"}
                for m in (self.model, *self.models)]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    async def v1_chat(self, request: Request) -> Response:
        body = await self.record(request)
        if not isinstance(body, dict) or body.get("stream"):
            return JSONResponse({"error": {"message": "this fake answers /v1 without streaming only"}}, 400)
        model = self._name(body.get("model"))
        if model is None:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, 404)
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        texts = [serving.text_of(m.get("content")) for m in messages if m.get("role") in ("system", "user")][:2]
        turn = self.pick_turn(texts, sum(m.get("role") == "assistant" for m in messages), self.models.get(model))
        message: dict[str, Any] = {"role": "assistant", "content": turn.content or None}
        if turn.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{uuid4().hex[:8]}", "index": i, "type": "function",
                 "function": {"name": c.name, "arguments": c.raw_arguments or json.dumps(c.arguments)}}
                for i, c in enumerate(turn.tool_calls)
            ]  # fmt: skip
        usage = serving.openai_usage(turn)
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if turn.tool_calls else "stop"}
        reply = {"id": f"chatcmpl-{uuid4().hex[:8]}", "object": "chat.completion", "created": 1_767_225_600,
                 "model": model, "choices": [choice], "usage": usage}  # fmt: skip
        return JSONResponse(reply)


def main(argv: list[str] | None = None) -> None:
    parser = serving.demo_parser(
        "Fake Ollama server replaying a scripted conversation.", 11434, model="fake-coder:latest"
    )
    serving.run_demo(parser, lambda args: FakeOllamaServer(args.script, model=args.model), argv)


if __name__ == "__main__":
    main()
