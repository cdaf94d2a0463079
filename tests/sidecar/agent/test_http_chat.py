"""What both HTTP chat clients share (``HttpChatModel``): the window pre-check and the transport error translation,
each run against the client's own fake server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.openai_server import FakeOpenAIServer
from shared.fakes.script import ScriptedServer, slow_script
from sidecar.agent.http_chat import HttpChatModel
from sidecar.agent.models import ContextOverflow, ModelUnavailable
from sidecar.agent.ollama import OllamaChatModel
from sidecar.agent.openai_compat import OpenAIChatModel

TOOLS = [{"name": "read_file", "description": "Read a file.", "parameters": {"type": "object", "properties": {}}}]
HELLO = [{"role": "user", "content": "Write hello.py"}]


@asynccontextmanager
async def client_and_server(
    provider: str, *, window: int = 32768, read_timeout_s: float = 30.0
) -> AsyncIterator[tuple[HttpChatModel, ScriptedServer, str]]:
    """A fake of ``provider`` (every reply delayed 1 s), a client for it, and the path the client posts chats to."""
    server: ScriptedServer
    model: HttpChatModel
    if provider == "ollama":
        server = ollama = FakeOllamaServer(slow_script(1.0))
        await server.start()
        model = OllamaChatModel(ollama.url, ollama.model, num_ctx=window, idle_timeout_s=read_timeout_s, max_retries=0)
        path = "/api/chat"
    else:
        server = openai = FakeOpenAIServer(slow_script(1.0))
        await server.start()
        model = OpenAIChatModel(openai.url, openai.model, context_length=window, read_timeout_s=read_timeout_s,
                                max_retries=0)  # fmt: skip
        path = "/v1/chat/completions"
    try:
        yield model, server, path
    finally:
        await model.aclose()
        await server.stop()


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_an_oversized_request_is_refused_before_sending(provider: str) -> None:
    """A request estimated above the window raises ContextOverflow naming the window; the server sees nothing."""
    async with client_and_server(provider, window=50) as (model, server, path):
        with pytest.raises(ContextOverflow, match="the request is about .* tokens, more than") as caught:
            await model.chat([{"role": "user", "content": "x" * 400}], TOOLS)
        assert ("num_ctx=50" if provider == "ollama" else "the 50-token window") in str(caught.value)
        assert server.bodies(path) == []


@pytest.mark.parametrize("provider", ["ollama", "openai"])
async def test_a_reply_slower_than_the_read_timeout_is_a_retryable_unavailable(provider: str) -> None:
    """A server that does not answer within the read timeout gives a retryable ModelUnavailable saying it timed out;
    the tools went out wrapped as functions."""
    async with client_and_server(provider, read_timeout_s=0.1) as (model, server, path):
        with pytest.raises(ModelUnavailable, match="timed out") as caught:
            await model.chat(HELLO, TOOLS)
        assert caught.value.retryable
        assert server.bodies(path)[0]["tools"] == [{"type": "function", "function": TOOLS[0]}]
