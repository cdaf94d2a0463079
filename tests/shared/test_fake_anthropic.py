"""The fake Anthropic Messages API, driven by the real ``anthropic`` SDK with strict response validation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest

from shared.fakes.anthropic_server import FakeAnthropicServer
from shared.fakes.script import HELLO_ANSWER, HELLO_PY

TASK = "create hello.py printing hello and a test for it"
TOOLS: list[Any] = [
    {
        "name": "write_file",
        "description": "Write a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
    },
    {
        "name": "run_command",
        "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
]


@pytest.fixture
async def server() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
async def client(server: FakeAnthropicServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=server.url, api_key="test-key", max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def test_non_streaming_tool_use(server: FakeAnthropicServer, client: anthropic.AsyncAnthropic) -> None:
    """A non-streaming request gets a full message with a tool_use block, stop_reason tool_use and usage."""
    reply = await client.messages.create(model="claude-x", max_tokens=1024, messages=user(TASK), tools=TOOLS)
    assert reply.id.startswith("msg_") and reply.model == "claude-x" and reply.role == "assistant"
    (block,) = reply.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert (block.name, block.input) == ("write_file", {"path": "hello.py", "content": HELLO_PY})
    assert reply.stop_reason == "tool_use"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (42, 7)
    request = server.requests[0]
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body["max_tokens"] == 1024
    assert [t["name"] for t in request.body["tools"]] == ["write_file", "run_command"]


async def test_streaming_tool_use(server: FakeAnthropicServer, client: anthropic.AsyncAnthropic) -> None:
    """messages.stream assembles the split tool input JSON into the final message, with usage."""
    async with client.messages.stream(model="claude-x", max_tokens=1024, messages=user(TASK), tools=TOOLS) as stream:
        events = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert events[0] == "message_start" and "input_json" in events
    (block,) = final.content
    assert block.type == "tool_use" and block.input == {"path": "hello.py", "content": HELLO_PY}
    assert final.stop_reason == "tool_use" and (final.usage.input_tokens, final.usage.output_tokens) == (42, 7)
    assert server.bodies("/v1/messages")[0]["stream"] is True


async def test_hello_world_trajectory(client: anthropic.AsyncAnthropic) -> None:
    """With tool_result messages appended the script goes write, write, run, then a text answer with end_turn."""
    messages: list[Any] = user(TASK)
    calls = []
    for _ in range(3):
        reply = await client.messages.create(model="claude-x", max_tokens=1024, messages=messages, tools=TOOLS)
        messages.append({"role": "assistant", "content": reply.to_param()["content"]})
        uses = [b for b in reply.content if b.type == "tool_use"]
        calls += [b.name for b in uses]
        results = [{"type": "tool_result", "tool_use_id": b.id, "content": "ok"} for b in uses]
        messages.append({"role": "user", "content": results})
    assert calls == ["write_file", "write_file", "run_command"]
    async with client.messages.stream(model="claude-x", max_tokens=1024, messages=messages, tools=TOOLS) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == HELLO_ANSWER and final.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_only_when_enabled(client: anthropic.AsyncAnthropic, stream: bool) -> None:
    """Scripted thinking comes back as a signed thinking block only when the request enables thinking."""
    plain = await client.messages.create(model="claude-x", max_tokens=1024, messages=user(TASK), tools=TOOLS)
    assert [b.type for b in plain.content] == ["tool_use"]
    kwargs: Any = {"model": "claude-x", "max_tokens": 2048, "messages": user(TASK), "tools": TOOLS,
                   "thinking": {"type": "enabled", "budget_tokens": 1024}}  # fmt: skip
    if stream:
        async with client.messages.stream(**kwargs) as events:
            reply = await events.get_final_message()
    else:
        reply = await client.messages.create(**kwargs)
    assert [b.type for b in reply.content] == ["thinking", "tool_use"]
    thought = reply.content[0]
    assert isinstance(thought, anthropic.types.ThinkingBlock) and thought.signature
    assert thought.thinking == "I need hello.py, then a test that runs it."


async def test_auth(server: FakeAnthropicServer) -> None:
    """x-api-key and Bearer are both accepted, no key gets 401, and a configured key rejects other keys."""
    body = {"model": "claude-x", "max_tokens": 10, "messages": user("hi")}
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/v1/messages", json=body, headers={"x-api-key": "k"})).status_code == 200
        missing = await http.post("/v1/messages", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    async with FakeAnthropicServer(api_key="right") as strict:
        async with anthropic.AsyncAnthropic(base_url=strict.url, api_key="wrong", max_retries=0) as client:
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.create(model="claude-x", max_tokens=10, messages=user("hi"))


async def test_missing_max_tokens_is_400(server: FakeAnthropicServer) -> None:
    """A request without max_tokens gets an invalid_request_error, like the real API."""
    async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": "k"}) as http:
        response = await http.post("/v1/messages", json={"model": "claude-x", "messages": user("hi")})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("system", ["Be brief. [[script:qwen_xml]]", [{"type": "text", "text": "[[script:qwen_xml]]"}]])
async def test_script_marker_in_system(client: anthropic.AsyncAnthropic, system: Any) -> None:
    """A [[script:NAME]] marker in the system prompt, as a string or text blocks, picks that script."""
    reply = await client.messages.create(model="c", max_tokens=10, system=system, messages=user(TASK), tools=TOOLS)
    assert reply.content[0].type == "text" and "<function=write_file>" in reply.content[0].text
    assert reply.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
async def test_http_500_then_retry(client: anthropic.AsyncAnthropic, stream: bool) -> None:
    """The http_500 turn raises InternalServerError once, and the retry of the same request gets the turn."""
    messages = user(f"{TASK} [[script:http_500]] {stream}")
    with pytest.raises(anthropic.InternalServerError):
        if stream:
            async with client.messages.stream(model="c", max_tokens=10, messages=messages) as events:
                await events.get_final_message()
        else:
            await client.messages.create(model="c", max_tokens=10, messages=messages)
    reply = await client.messages.create(model="c", max_tokens=10, messages=messages)
    assert reply.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_response(client: anthropic.AsyncAnthropic, stream: bool) -> None:
    """The malformed_json turn sends a broken body or event once, surfacing as JSONDecodeError."""
    messages = user(f"{TASK} [[script:malformed_response]] {stream}")
    with pytest.raises(json.JSONDecodeError):
        if stream:
            async with client.messages.stream(model="c", max_tokens=10, messages=messages) as events:
                await events.get_final_message()
        else:
            await client.messages.create(model="c", max_tokens=10, messages=messages)
    assert (await client.messages.create(model="c", max_tokens=10, messages=messages)).stop_reason == "tool_use"


async def test_empty_reply(client: anthropic.AsyncAnthropic) -> None:
    """The empty turn is a message with no content blocks and stop_reason end_turn."""
    reply = await client.messages.create(model="c", max_tokens=10, messages=user("[[script:empty_reply]]"))
    assert reply.content == [] and reply.stop_reason == "end_turn"
    async with client.messages.stream(model="c", max_tokens=10, messages=user("[[script:empty_reply]]")) as events:
        assert (await events.get_final_message()).content == []
