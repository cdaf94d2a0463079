"""A fake OpenAI-compatible server (as llama.cpp's, vLLM or LM Studio serve it), replaying scripted turns.

Serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (non-streamed) with the same scripts as the fake Ollama
(:mod:`shared.fakes.script`): native calls come back as ``tool_calls`` with their ``arguments`` as a JSON string,
token counts as ``usage``. Like llama.cpp's server it keeps one KV cache: ``timings.prompt_n`` is the number of
prompt tokens (4 characters each) after the longest common prefix with the previous request's prompt, so a client
that keeps its conversation prefix stable sees only its newest messages evaluated. With ``api_key`` set, a request
without ``Authorization: Bearer <api_key>`` gets 401. Unknown models get 404.

Run it for a demo: ``python -m shared.fakes.openai_server --port 8080 --script hello_world`` (prints its URL).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from uuid import uuid4

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.fakes import serving
from shared.fakes.script import Script, ScriptedServer, Turn

CHARS_PER_TOKEN = 4


def _error(message: str, status: int, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def render_prompt(body: dict[str, Any]) -> str:
    """The prompt as a template would lay it out: tools first, then every message in order."""
    return json.dumps(body.get("tools") or [], sort_keys=True) + "".join(
        json.dumps(m, sort_keys=True) for m in body.get("messages") or []
    )


class FakeOpenAIServer(ScriptedServer):
    """Fake OpenAI API: ``async with FakeOpenAIServer() as server: OpenAIChatModel(server.url, server.model)``."""

    def __init__(
        self, script: Script | str = "hello_world", *, model: str = "fake-coder", api_key: str | None = None
    ) -> None:
        super().__init__(script)
        self.model, self.api_key = model, api_key
        self._cached_prompt = ""
        self.reevaluated: list[int] = []
        """``timings.prompt_n`` of every completion served, in order."""

    def build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ]
        )

    def _refused(self, request: Request) -> Response | None:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error("invalid api key", 401, "authentication_error")
        return None

    async def models(self, request: Request) -> Response:
        await self.record(request)
        if (refused := self._refused(request)) is not None:
            return refused
        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fake"}]})

    async def chat(self, request: Request) -> Response:
        body = await self.record(request)
        if (refused := self._refused(request)) is not None:
            return refused
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error("invalid request body: messages is required", 400)
        if body.get("model") != self.model:
            return _error(f"The model `{body.get('model')}` does not exist", 404)
        if body.get("stream"):
            return _error("this fake serves only non-streamed completions", 400)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        try:
            turn = await serving.next_turn(self, serving.chat_markers(messages), messages)
        except KeyError as exc:
            return _error(str(exc.args[0]), 400)
        if turn.failure == "http_500":
            return _error(serving.PARSE_ERROR, 500, "server_error")
        return serving.json_reply(self._completion(turn, self._evaluate(render_prompt(body))), turn)

    def _evaluate(self, prompt: str) -> int:
        """Tokens of ``prompt`` past the common prefix with the cached one; the cache then holds ``prompt``."""
        common = len(os.path.commonprefix([self._cached_prompt, prompt]))
        self._cached_prompt = prompt
        evaluated = -(-(len(prompt) - common) // CHARS_PER_TOKEN)
        self.reevaluated.append(evaluated)
        return evaluated

    def _completion(self, turn: Turn, evaluated: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "" if turn.failure == "empty" else turn.content}
        if turn.thinking and turn.failure != "empty":
            message["reasoning_content"] = turn.thinking
        if turn.tool_calls and turn.failure != "empty":
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid4().hex[:12]}",
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": json.dumps(c.arguments) if c.raw_arguments is None else c.raw_arguments,
                    },
                }
                for c in turn.tool_calls
            ]
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return {
            "id": f"chatcmpl-{uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model, "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": serving.openai_usage(turn),
            "timings": {"prompt_n": evaluated},
        }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = serving.demo_parser(
        "Fake OpenAI-compatible server replaying a scripted conversation.", 8080, model="fake-coder"
    )
    serving.run_demo(parser, lambda args: FakeOpenAIServer(args.script, model=args.model), argv)


if __name__ == "__main__":
    main()
