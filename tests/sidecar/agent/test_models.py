"""The ChatModel adapters against the fake Ollama and Anthropic servers (Ollama's stream read with httpx, Claude's
through the real anthropic SDK)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.fakes.anthropic_server import FakeAnthropicServer
from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import HELLO_CALLS, Script, ScriptedCall, Turn
from sidecar.agent.claude import ClaudeChatModel
from sidecar.agent.models import ContextOverflow, ModelError, ModelUnavailable
from sidecar.agent.ollama import OllamaChatModel, base_url
from sidecar.agent.tools import TOOL_ARGS, tool_schema

MODEL = "fake-coder:latest"
TOOLS = [tool_schema(name) for name in TOOL_ARGS]
START = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "write hello.py"}]


def tool_results(turn: Any, text: str = "ok") -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": c["id"], "name": c["name"], "content": text, "is_error": False}
            for c in turn.tool_calls]  # fmt: skip


@pytest.fixture
async def ollama_server(request: pytest.FixtureRequest) -> AsyncIterator[FakeOllamaServer]:
    async with FakeOllamaServer(getattr(request, "param", "hello_world"), model=MODEL) as server:
        yield server


@pytest.fixture
async def anthropic_server(request: pytest.FixtureRequest) -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer(getattr(request, "param", "hello_world"), api_key="test-key") as server:
        yield server


@pytest.fixture
async def ollama_model(ollama_server: FakeOllamaServer) -> AsyncIterator[OllamaChatModel]:
    model = OllamaChatModel(ollama_server.url, MODEL, num_ctx=8192, temperature=0.0, max_retries=0)
    yield model
    await model.aclose()


@pytest.fixture
async def claude_model(anthropic_server: FakeAnthropicServer) -> AsyncIterator[ClaudeChatModel]:
    model = ClaudeChatModel("claude-sonnet-4-6", api_key="test-key", base_url=anthropic_server.url, max_retries=0)
    yield model
    await model.aclose()


# --- Ollama --------------------------------------------------------------------------------------------------------


async def test_ollama_stream_accumulates_thinking_calls_and_usage(ollama_model, ollama_server) -> None:
    """The streamed reply is put together: thinking, the tool call, and usage from the final chunk."""
    progress: list[int] = []

    async def on_progress(tokens: int) -> None:
        progress.append(tokens)

    turn = await ollama_model.chat(START, TOOLS, on_progress=on_progress)
    assert [(c["name"], c["arguments"]) for c in turn.tool_calls] == [("write_file", HELLO_CALLS[0].arguments)]
    assert turn.thinking == "I need hello.py, then a test that runs it."
    assert (turn.tokens_in, turn.tokens_out, turn.truncated) == (42, 7, False)
    assert turn.raw["done_reason"] == "stop" and progress == sorted(progress) and progress
    body = ollama_server.bodies("/api/chat")[0]
    assert body["stream"] is True and body["options"] == {"num_ctx": 8192, "temperature": 0.0}
    assert body["keep_alive"] == "30m" and body["tools"][0]["function"]["name"] == "read_file"


async def test_ollama_history_goes_back_in_native_form(ollama_model, ollama_server) -> None:
    """The assistant message is resent as received and tool results become role=tool messages with tool_name."""
    first = await ollama_model.chat(START, TOOLS)
    second = await ollama_model.chat([*START, first.as_message(), *tool_results(first, "created")], TOOLS)
    assert second.tool_calls[0]["arguments"]["path"] == "test_hello.py"
    sent = ollama_server.bodies("/api/chat")[1]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["name"] == "write_file" and "thinking" in sent[2]
    assert sent[3] == {"role": "tool", "content": "created", "tool_name": "write_file"}


@pytest.mark.parametrize("ollama_server", ["http_500"], indirect=True)
async def test_ollama_http_500_is_a_retryable_model_error(ollama_model) -> None:
    """Ollama's "error parsing tool call" 500 becomes a retryable ModelError."""
    with pytest.raises(ModelError, match="error parsing tool call") as caught:
        await ollama_model.chat(START, TOOLS)
    assert caught.value.retryable and not isinstance(caught.value, ModelUnavailable)


@pytest.mark.parametrize("ollama_server", ["malformed_response"], indirect=True)
async def test_ollama_retry_recovers_from_a_truncated_stream(ollama_server) -> None:
    """A broken stream is retried once and the retry's reply is returned."""
    model = OllamaChatModel(ollama_server.url, MODEL, max_retries=1, retry_delay_s=0.01)
    try:
        turn = await model.chat(START, TOOLS)
    finally:
        await model.aclose()
    assert turn.tool_calls[0]["name"] == "write_file" and len(ollama_server.bodies("/api/chat")) == 2


@pytest.mark.parametrize(
    ("host", "url"),
    [("example.com", "http://example.com:11434"), ("10.0.0.2:8080", "http://10.0.0.2:8080"),
     ("http://gpu-box:11434/", "http://gpu-box:11434"), ("https://ollama.example.com", "https://ollama.example.com")],
)  # fmt: skip
def test_ollama_host_forms(host: str, url: str) -> None:
    """A host without a scheme gets http:// and Ollama's port 11434; a URL is taken as it is."""
    assert base_url(host) == url


async def test_ollama_unknown_model_is_unavailable(ollama_server) -> None:
    """A model the server does not have (404) is ModelUnavailable and not retried."""
    model = OllamaChatModel(ollama_server.url, "no-such-model", max_retries=3)
    try:
        with pytest.raises(ModelUnavailable, match="not found") as caught:
            await model.chat(START, TOOLS)
    finally:
        await model.aclose()
    assert not caught.value.retryable and len(ollama_server.bodies("/api/chat")) == 1


async def test_ollama_refused_connection_is_unavailable() -> None:
    """Nothing listening on the port gives ModelUnavailable."""
    server = FakeOllamaServer(model=MODEL)
    url = await server.start()
    await server.stop()
    model = OllamaChatModel(url, MODEL, max_retries=0)
    try:
        with pytest.raises(ModelUnavailable, match="cannot connect"):
            await model.chat(START, TOOLS)
    finally:
        await model.aclose()


async def test_ollama_full_context_window_is_an_overflow() -> None:
    """prompt_eval_count at 95 % of num_ctx means the history was truncated: ContextOverflow."""
    script = Script(name="full", turns=[Turn(content="hi", prompt_tokens=7800)])
    async with FakeOllamaServer(script, model=MODEL) as server:
        model = OllamaChatModel(server.url, MODEL, num_ctx=8192)
        try:
            with pytest.raises(ContextOverflow, match="7800 of num_ctx=8192"):
                await model.chat(START, TOOLS)
        finally:
            await model.aclose()


async def test_ollama_oversized_request_is_refused_before_sending(ollama_server) -> None:
    """A request estimated above num_ctx raises ContextOverflow without reaching the server."""
    model = OllamaChatModel(ollama_server.url, MODEL, num_ctx=100)
    try:
        with pytest.raises(ContextOverflow, match="more than num_ctx=100"):
            await model.chat(START, TOOLS)
    finally:
        await model.aclose()
    assert ollama_server.bodies("/api/chat") == []


# --- Claude --------------------------------------------------------------------------------------------------------


async def test_claude_tool_use_blocks_become_calls_with_usage(claude_model, anthropic_server) -> None:
    """tool_use blocks are the calls (with their ids), the system prompt goes in ``system``, usage is counted."""
    progress: list[int] = []

    async def on_progress(tokens: int) -> None:
        progress.append(tokens)

    turn = await claude_model.chat(START, TOOLS, on_progress=on_progress)
    assert turn.tool_calls[0]["id"].startswith("toolu_") and turn.tool_calls[0]["arguments"] == HELLO_CALLS[0].arguments
    assert (turn.tokens_in, turn.tokens_out) == (42, 7) and progress
    body = anthropic_server.bodies("/v1/messages")[0]
    assert body["system"] == "You are a coding agent." and body["stream"] is True
    assert body["tools"][0]["input_schema"]["required"] == ["path"]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "write hello.py"}]}]


async def test_claude_history_pairs_each_tool_use_with_its_result(claude_model, anthropic_server) -> None:
    """The assistant blocks go back as received; results are tool_result blocks merged into one user turn."""
    first = await claude_model.chat(START, TOOLS)
    history = [*START, first.as_message(), *tool_results(first, "created"), {"role": "user", "content": "go on"}]
    await claude_model.chat(history, TOOLS)
    sent = anthropic_server.bodies("/v1/messages")[1]["messages"]
    assert sent[1] == first.provider_message
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    result, note = sent[2]["content"]
    assert result == {"type": "tool_result", "tool_use_id": first.tool_calls[0]["id"], "content": "created",
                      "is_error": False}  # fmt: skip
    assert note == {"type": "text", "text": "go on"}


async def test_claude_thinking_blocks_keep_their_signature(anthropic_server) -> None:
    """With thinking enabled the thinking block (and its signature) is kept for the next request."""
    model = ClaudeChatModel("claude-sonnet-4-6", api_key="test-key", base_url=anthropic_server.url, max_retries=0,
                            thinking={"type": "enabled", "budget_tokens": 1024})  # fmt: skip
    try:
        turn = await model.chat(START, TOOLS)
    finally:
        await model.aclose()
    block = turn.provider_message["content"][0]
    assert block["type"] == "thinking" and block["signature"].startswith("sig_")
    assert turn.thinking == "I need hello.py, then a test that runs it."


@pytest.mark.parametrize("anthropic_server", ["empty_reply"], indirect=True)
async def test_claude_empty_reply_is_resent_as_a_placeholder(claude_model, anthropic_server) -> None:
    """An empty assistant turn (which the API would refuse) goes back as a visible placeholder."""
    first = await claude_model.chat(START, TOOLS)
    assert (first.content, first.tool_calls) == ("", [])
    await claude_model.chat([*START, first.as_message(), {"role": "user", "content": "use a tool"}], TOOLS)
    sent = anthropic_server.bodies("/v1/messages")[1]["messages"]
    assert sent[1] == {"role": "assistant", "content": [{"type": "text", "text": "(empty reply)"}]}


@pytest.mark.parametrize(
    ("anthropic_server", "error"),
    [("http_500", ModelUnavailable), ("malformed_response", ModelError)],
    indirect=["anthropic_server"],
)
async def test_claude_failures_are_translated(claude_model, error: type[ModelError]) -> None:
    """A 500 is ModelUnavailable and a broken stream is ModelError; no anthropic exception escapes."""
    with pytest.raises(error) as caught:
        await claude_model.chat(START, TOOLS)
    assert caught.value.retryable


async def test_claude_bad_key_is_unavailable_and_not_retryable(anthropic_server) -> None:
    """A refused API key (401) is ModelUnavailable, not retryable."""
    model = ClaudeChatModel("claude-sonnet-4-6", api_key="wrong", base_url=anthropic_server.url, max_retries=0)
    try:
        with pytest.raises(ModelUnavailable) as caught:
            await model.chat(START, TOOLS)
    finally:
        await model.aclose()
    assert not caught.value.retryable


async def test_claude_retries_are_configurable_and_reported(anthropic_server) -> None:
    """max_retries=1 retries the 500 (here, not in the SDK), tells on_retry first and returns the reply."""
    script = Script(name="flaky", turns=[Turn(failure="http_500", tool_calls=[ScriptedCall(name="list_directory")])])
    retries: list[tuple[str, int]] = []

    async def on_retry(error: ModelError, retry: int, delay_s: float) -> None:
        retries.append((type(error).__name__, retry))

    async with FakeAnthropicServer(script) as server:
        model = ClaudeChatModel("claude-sonnet-4-6", api_key="k", base_url=server.url, max_retries=1,
                                retry_delay_s=0.01)  # fmt: skip
        try:
            turn = await model.chat(START, TOOLS, on_retry=on_retry)
        finally:
            await model.aclose()
    assert turn.tool_calls[0]["name"] == "list_directory" and len(server.bodies("/v1/messages")) == 2
    assert retries == [("ModelUnavailable", 1)]
