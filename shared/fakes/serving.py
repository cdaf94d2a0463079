"""What the fake model servers (:mod:`shared.fakes.ollama_server`, :mod:`shared.fakes.openai_server`,
:mod:`shared.fakes.anthropic_server`) do alike with a chat request, and how each runs as a demo.

Each fake keeps its wire format (error shapes, reply bodies, streaming); this module holds the shared steps: find the
scripted turn for a conversation and wait its ``delay_s`` (:func:`next_turn`, :func:`chat_markers`), send a JSON
reply that a ``malformed_json`` turn cuts short (:func:`json_reply`), count tokens as OpenAI's ``usage``
(:func:`openai_usage`), and the ``python -m shared.fakes.<name>`` command line (:func:`demo_parser`, :func:`run_demo`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from shared.fakes.script import SCRIPTS, Script, ScriptedServer, Turn, serve_forever

PARSE_ERROR = 'error parsing tool call: raw=\'{"name": "write_file", "arguments": {\', err=unexpected end of JSON input'
"""What Ollama answers (status 500) when a model's tool call is not valid JSON; the ``http_500`` failure sends it."""


def text_of(content: Any) -> str:
    """A message's ``content`` when it is a string, else empty."""
    return content if isinstance(content, str) else ""


def chat_markers(messages: list[dict[str, Any]]) -> list[str]:
    """The texts that may name a script in an OpenAI-style conversation: every system message, then the first user's."""
    system = [text_of(m.get("content")) for m in messages if m.get("role") == "system"]
    first_user = next((text_of(m.get("content")) for m in messages if m.get("role") == "user"), "")
    return [*system, first_user]


async def next_turn(
    server: ScriptedServer, marker_texts: list[str], messages: list[dict[str, Any]], default: Script | None = None
) -> Turn:
    """The turn that answers a conversation (one per assistant message so far), served after its ``delay_s``.

    Raises ``KeyError`` for a script marker naming no script.
    """
    turn = server.pick_turn(marker_texts, sum(m.get("role") == "assistant" for m in messages), default)
    if turn.delay_s:
        await asyncio.sleep(turn.delay_s)
    return turn


def json_reply(reply: Mapping[str, Any], turn: Turn, headers: Mapping[str, str] | None = None) -> Response:
    """``reply`` as JSON; a ``malformed_json`` turn loses its last 25 characters, so it no longer parses."""
    if turn.failure == "malformed_json":
        return Response(json.dumps(reply)[:-25], media_type="application/json", headers=headers)
    return JSONResponse(reply, headers=headers)


def openai_usage(turn: Turn) -> dict[str, int]:
    """The turn's token counts as an OpenAI ``usage`` object."""
    return {"prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.eval_tokens,
            "total_tokens": turn.prompt_tokens + turn.eval_tokens}  # fmt: skip


def demo_parser(description: str, port: int, *, model: str | None = None) -> argparse.ArgumentParser:
    """A demo command line with ``--host``, ``--port`` (default ``port``), ``--script`` and, given a default
    ``model``, ``--model``; a fake adds its own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--script", default="hello_world", choices=sorted(SCRIPTS))
    if model is not None:
        parser.add_argument("--model", default=model)
    return parser


def run_demo(
    parser: argparse.ArgumentParser, build: Callable[[argparse.Namespace], ScriptedServer], argv: list[str] | None
) -> None:
    """Parse ``argv``, serve ``build(args)`` on ``--host``/``--port``, printing its URL, until Ctrl-C."""
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve_forever(build(args), args.host, args.port))
    except KeyboardInterrupt:
        pass
