"""The fake Ollama server, driven by the real ``ollama`` client (and raw httpx where the client cannot reach)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import HELLO_ANSWER, HELLO_PY, SCRIPTS, TEST_HELLO_PY, Script, ScriptedCall, Turn

TASK = "create hello.py printing hello and a test for it"
REPO = Path(__file__).resolve().parents[2]


def write_file(path: str, content: str) -> str:
    """Write a file.

    Args:
      path: Path relative to the workspace
      content: Full new content
    """
    return "ok"


RUN_COMMAND = {
    "type": "function",
    "function": {
        "name": "run_command",
        "description": "Run a shell command",
        "parameters": {"type": "object", "required": ["command"], "properties": {"command": {"type": "string"}}},
    },
}


@pytest.fixture
async def server() -> AsyncIterator[FakeOllamaServer]:
    async with FakeOllamaServer() as server:
        yield server


@pytest.fixture
async def client(server: FakeOllamaServer) -> AsyncIterator[ollama.AsyncClient]:
    client = ollama.AsyncClient(host=server.url)
    yield client
    await client.close()


async def collect(parts: AsyncIterator[ollama.ChatResponse]) -> tuple[str, str, list[Any], ollama.ChatResponse]:
    """Accumulate a stream the way a client must: thinking, content and every chunk's tool calls."""
    thinking, content = "", ""
    calls: list[Any] = []
    async for part in parts:
        thinking += part.message.thinking or ""
        content += part.message.content or ""
        calls += part.message.tool_calls or []
    return thinking, content, calls, part


async def test_model_endpoints(server: FakeOllamaServer, client: ollama.AsyncClient) -> None:
    """Tags, show and ps describe fake-coder:latest, and /api/version answers like a real server."""
    assert [m.model for m in (await client.list()).models] == ["fake-coder:latest"]
    shown = await client.show("fake-coder:latest")
    assert "tools" in (shown.capabilities or [])
    assert [m.model for m in (await client.ps()).models] == ["fake-coder:latest"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/api/version")).json() == {"version": "0.12.6"}
        assert (await http.get("/")).text == "Ollama is running"


async def test_non_streaming_tool_call(server: FakeOllamaServer, client: ollama.AsyncClient) -> None:
    """A non-streaming chat with tools returns the first scripted call with dict arguments and usage numbers."""
    reply = await client.chat("fake-coder", [{"role": "user", "content": TASK}], tools=[write_file, RUN_COMMAND])
    assert reply.done and reply.done_reason == "stop"
    (call,) = reply.message.tool_calls or []
    assert call.function.name == "write_file"
    assert call.function.arguments == {"path": "hello.py", "content": HELLO_PY}
    assert (reply.prompt_eval_count, reply.eval_count) == (42, 7)
    assert reply.eval_duration and reply.total_duration
    body = server.bodies("/api/chat")[0]
    assert body["stream"] is False
    assert [t["function"]["name"] for t in body["tools"]] == ["write_file", "run_command"]


async def test_streaming_tool_call(client: ollama.AsyncClient) -> None:
    """A streamed chat sends thinking deltas, the tool call in one chunk, then a done chunk with metrics."""
    parts = await client.chat("fake-coder", [{"role": "user", "content": TASK}], tools=[RUN_COMMAND], stream=True)
    thinking, content, calls, last = await collect(parts)
    assert thinking == "I need hello.py, then a test that runs it."
    assert content == ""
    assert [c.function.name for c in calls] == ["write_file"]
    assert last.done and last.eval_count == 7 and last.message.content == ""


async def test_hello_world_trajectory(client: ollama.AsyncClient) -> None:
    """Replaying hello_world with tool results appended gives write, write, run, final answer, then "done"."""
    messages: list[Any] = [{"role": "user", "content": TASK}]
    names = []
    for _ in range(3):
        reply = await client.chat("fake-coder", messages, tools=[write_file, RUN_COMMAND])
        messages.append(reply.message)
        for call in reply.message.tool_calls or []:
            arguments = call.function.arguments
            names.append((call.function.name, arguments.get("path") or arguments["command"]))
            messages.append({"role": "tool", "tool_name": call.function.name, "content": "ok"})
    expected = [("write_file", "hello.py"), ("write_file", "test_hello.py"), ("run_command", "python3 test_hello.py")]
    assert names == expected
    final = await client.chat("fake-coder", messages, tools=[write_file, RUN_COMMAND])
    assert final.message.content == HELLO_ANSWER and not final.message.tool_calls
    messages.append(final.message)
    assert (await client.chat("fake-coder", messages)).message.content == "done"


async def test_stream_defaults_to_true(server: FakeOllamaServer) -> None:
    """A request without "stream" gets NDJSON chunks, like the real server."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"model": "fake-coder", "messages": [{"role": "user", "content": "hi"}]}
        response = await http.post("/api/chat", json=body)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert not lines[0]["done"] and lines[-1]["done"]


async def test_script_marker_selects_script(server: FakeOllamaServer, client: ollama.AsyncClient) -> None:
    """A [[script:NAME]] marker in the system prompt picks that script for the conversation."""
    messages = [{"role": "system", "content": "You are a coder. [[script:hermes]]"}, {"role": "user", "content": TASK}]
    reply = await client.chat("fake-coder", messages, tools=[write_file])
    assert (reply.message.content or "").startswith("<tool_call>") and not reply.message.tool_calls
    plain = await client.chat("fake-coder", [{"role": "user", "content": TASK}], tools=[write_file])
    assert plain.message.tool_calls, "the default script still applies to other conversations"


async def test_unknown_script_and_model(client: ollama.AsyncClient) -> None:
    """An unknown script marker gets 400 and an unknown model gets 404, both as ResponseError."""
    with pytest.raises(ollama.ResponseError) as bad_script:
        await client.chat("fake-coder", [{"role": "user", "content": "[[script:nope]]"}])
    assert bad_script.value.status_code == 400 and "hello_world" in bad_script.value.error
    with pytest.raises(ollama.ResponseError) as bad_model:
        await client.chat("llama3", [{"role": "user", "content": "hi"}])
    assert bad_model.value.status_code == 404


@pytest.mark.parametrize("stream", [False, True])
async def test_http_500_then_retry(client: ollama.AsyncClient, stream: bool) -> None:
    """The http_500 turn fails once with ResponseError 500, and the retry of the same request gets the turn."""
    messages = [{"role": "user", "content": f"{TASK} [[script:http_500]] {stream}"}]
    with pytest.raises(ollama.ResponseError) as error:
        if stream:
            await collect(await client.chat("fake-coder", messages, stream=True))
        else:
            await client.chat("fake-coder", messages)
    assert error.value.status_code == 500 and "error parsing tool call" in error.value.error
    reply = await client.chat("fake-coder", messages)
    assert reply.message.tool_calls


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_response(client: ollama.AsyncClient, stream: bool) -> None:
    """The malformed_json turn sends a broken body once, which the client raises as JSONDecodeError."""
    messages = [{"role": "user", "content": f"{TASK} [[script:malformed_response]] {stream}"}]
    with pytest.raises(json.JSONDecodeError):
        if stream:
            await collect(await client.chat("fake-coder", messages, stream=True))
        else:
            await client.chat("fake-coder", messages)
    assert (await client.chat("fake-coder", messages)).message.tool_calls


async def test_empty_reply(client: ollama.AsyncClient) -> None:
    """The empty turn has no content and no tool calls, streamed or not."""
    messages = [{"role": "user", "content": "[[script:empty_reply]]"}]
    reply = await client.chat("fake-coder", messages)
    assert reply.message.content == "" and not reply.message.tool_calls and not reply.message.thinking
    _, content, calls, last = await collect(await client.chat("fake-coder", messages, stream=True))
    assert (content, calls, last.done) == ("", [], True)


async def test_delay_and_token_counts() -> None:
    """A turn's delay_s holds the reply back and its token counts come back as usage."""
    script = Script(name="custom", turns=[Turn(content="slow", delay_s=0.2, prompt_tokens=5, eval_tokens=3)])
    async with FakeOllamaServer(script, model="other:7b") as server:
        client = ollama.AsyncClient(host=server.url)
        started = time.monotonic()
        reply = await client.chat("other:7b", [{"role": "user", "content": "hi"}])
        await client.close()
    assert time.monotonic() - started >= 0.2
    assert (reply.message.content, reply.prompt_eval_count, reply.eval_count) == ("slow", 5, 3)


async def test_conversations_share_a_server(client: ollama.AsyncClient) -> None:
    """Turns follow each request's own history, so interleaved conversations do not disturb each other."""
    call = {"function": {"name": "write_file", "arguments": {"path": "hello.py", "content": HELLO_PY}}}
    later: list[Any] = [{"role": "user", "content": TASK}, {"role": "assistant", "content": "", "tool_calls": [call]},
             {"role": "tool", "tool_name": "write_file", "content": "ok"}]  # fmt: skip
    second = await client.chat("fake-coder", later)
    first = await client.chat("fake-coder", [{"role": "user", "content": "another agent"}])
    assert [c.function.arguments["path"] for c in second.message.tool_calls or []] == ["test_hello.py"]
    assert [c.function.arguments["path"] for c in first.message.tool_calls or []] == ["hello.py"]


def test_every_ready_made_script_builds() -> None:
    """Every registered script builds, carries its registry name, and only calls the agent's tools."""
    tools = {"read_file", "write_file", "edit_file", "list_directory", "run_command", "search_files"}
    for name, make in SCRIPTS.items():
        script = make()
        assert script.name == name and script.turns
        assert all(isinstance(c, ScriptedCall) and c.name in tools for t in script.turns for c in t.tool_calls)


def test_hello_world_files_work(tmp_path: Path) -> None:
    """The scripted hello.py and test_hello.py pass with plain python3, and the test fails on wrong output."""
    (tmp_path / "hello.py").write_text(HELLO_PY)
    (tmp_path / "test_hello.py").write_text(TEST_HELLO_PY)
    run = subprocess.run([sys.executable, "test_hello.py"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout.strip()) == (0, "PASS")
    (tmp_path / "hello.py").write_text('print("bye")\n')
    run = subprocess.run([sys.executable, "test_hello.py"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "FAIL" in run.stdout


def test_cli_prints_url_and_serves() -> None:
    """``python -m shared.fakes.ollama_server --port 0`` prints a URL that answers /api/tags."""
    command = [sys.executable, "-m", "shared.fakes.ollama_server", "--port", "0", "--script", "hello_world"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            assert httpx.get(f"{url}/api/tags").json()["models"][0]["name"] == "fake-coder:latest"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
