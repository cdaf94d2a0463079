"""The reply parser chain: native calls, calls written in content, think-stripping, final answers, format errors."""

from __future__ import annotations

import json
from typing import Any

import ollama
import pytest

from shared.fakes.script import HELLO_CALLS, get_script
from sidecar.agent.parser import FormatError, ParsedReply, ParseStats, ToolCall, parse_reply, strip_thinking

TOOLS = ["read_file", "write_file", "edit_file", "list_directory", "run_command", "search_files"]
WRITE = {"path": "a.py", "content": "x = 1\n"}
NESTED = {"path": "a.py", "content": 'def f():\n    return {"a": {"b": "}{"}}\n'}


def call(name: str, arguments: dict[str, Any], parsed_by: str) -> ParsedReply:
    return ParsedReply(calls=(ToolCall(name, arguments, parsed_by),))


def hermes(name: str, arguments: Any) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


OK_CASES = [
    pytest.param("", [{"name": "write_file", "arguments": WRITE}], call("write_file", WRITE, "native"), id="native"),
    pytest.param(None, [{"name": "write_file", "arguments": json.dumps(WRITE)}], call("write_file", WRITE, "native"),
                 id="native-json-string-arguments"),
    pytest.param("", [{"function": {"name": "list_directory", "arguments": {"path": "."}}}],
                 call("list_directory", {"path": "."}, "native"), id="native-ollama-shape"),
    pytest.param("", [{"name": "list_directory", "arguments": ""}], call("list_directory", {}, "native"),
                 id="native-empty-string-arguments"),
    pytest.param(hermes("run_command", {"command": "ls"}), [{"name": "write_file", "arguments": WRITE}],
                 call("write_file", WRITE, "native"), id="native-wins-over-content"),
    pytest.param(hermes("write_file", WRITE), None, call("write_file", WRITE, "hermes"), id="hermes"),
    pytest.param(hermes("write_file", json.dumps(WRITE)), None, call("write_file", WRITE, "hermes"),
                 id="hermes-string-arguments"),
    pytest.param("I will write it.\n<tool_call>\n" + json.dumps({"name": "write_file", "arguments": WRITE}), None,
                 call("write_file", WRITE, "hermes"), id="hermes-unclosed"),
    pytest.param(hermes("write_file", NESTED), None, call("write_file", NESTED, "hermes"), id="hermes-nested-braces"),
    pytest.param('<tool_call>{"name": "list_directory"}</tool_call>', None, call("list_directory", {}, "hermes"),
                 id="hermes-no-arguments"),
    pytest.param("<tool_call>\n<function=write_file>\n<parameter=path>\na.py\n</parameter>\n<parameter=content>\n"
                 "x = 1\n\n</parameter>\n</function>\n</tool_call>", None, call("write_file", WRITE, "qwen_xml"),
                 id="qwen-xml"),
    pytest.param("<function=run_command><parameter=command>echo '{not json'</parameter></function>", None,
                 call("run_command", {"command": "echo '{not json'"}, "qwen_xml"), id="qwen-xml-unwrapped"),
    pytest.param("<tool_call><function=read_file><parameter=path>a.py", None,
                 call("read_file", {"path": "a.py"}, "qwen_xml"), id="qwen-xml-unclosed"),
    pytest.param(json.dumps({"name": "write_file", "arguments": NESTED}), None,
                 call("write_file", NESTED, "bare_json"), id="bare-json-nested-braces"),
    pytest.param("```json\n" + json.dumps({"name": "write_file", "parameters": WRITE}) + "\n```", None,
                 call("write_file", WRITE, "bare_json"), id="bare-json-fenced-parameters"),
    pytest.param('Set {x} first, "{" is a brace. ' + json.dumps({"name": "read_file", "arguments": {"path": "}"}}),
                 None, call("read_file", {"path": "}"}, "bare_json"), id="bare-json-after-prose-braces"),
    pytest.param(json.dumps({"type": "function", "function": {"name": "read_file", "arguments": {"path": "a"}}}),
                 None, call("read_file", {"path": "a"}, "bare_json"), id="bare-json-openai-shape"),
    pytest.param("<think>maybe " + hermes("run_command", {"command": "rm -rf ~"}) + "</think>\n" +
                 hermes("write_file", WRITE), None, call("write_file", WRITE, "hermes"), id="think-then-real-call"),
    pytest.param('<think>{"name": "run_command", "arguments": {"command": "rm -rf ~"}}</think>All done.', None,
                 ParsedReply(final_answer="All done."), id="think-wrapped-bare-json"),
    pytest.param("I ran " + hermes("run_command", {"command": "ls"}) + "</think>The tests pass.", None,
                 ParsedReply(final_answer="The tests pass."), id="think-closing-tag-only"),
    pytest.param("Created hello.py; tests pass.", None, ParsedReply(final_answer="Created hello.py; tests pass."),
                 id="final-answer"),
    pytest.param("Use a dict like {'a': 1} or {\"name\": \"x\"}.", None,
                 ParsedReply(final_answer="Use a dict like {'a': 1} or {\"name\": \"x\"}."), id="final-with-braces"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "tool_calls", "expected"), OK_CASES)
def test_parses(content: str | None, tool_calls: list[dict[str, Any]] | None, expected: ParsedReply) -> None:
    """Each path of the chain yields the expected calls (with parsed_by) or final answer."""
    assert parse_reply(content, tool_calls, TOOLS) == expected


ERROR_CASES = [
    pytest.param("", None, "empty", "Call one of the tools", id="empty"),
    pytest.param(None, [], "empty", "final answer", id="none-content-no-calls"),
    pytest.param("  \n ", None, "empty", "empty", id="whitespace"),
    pytest.param("<think>I should " + hermes("run_command", {"command": "rm -rf ~"}), None, "empty", "empty",
                 id="unclosed-think-hides-call"),
    pytest.param("", [{"name": "delete_everything", "arguments": {}}], "unknown_tool", "read_file, run_command",
                 id="native-unknown-tool"),
    pytest.param(hermes("bash", {"cmd": "ls"}), None, "unknown_tool", "Available tools: edit_file",
                 id="hermes-unknown"),
    pytest.param("", [{"name": "write_file", "arguments": '{"path": "a.py", "content": "x}'}], "malformed_json",
                 "not valid JSON", id="native-malformed-arguments"),
    pytest.param("", [{"name": "write_file", "arguments": ["a.py"]}], "invalid_call", "JSON object",
                 id="native-arguments-not-object"),
    pytest.param("", [{"arguments": {}}], "invalid_call", "tool call must be", id="native-no-name"),
    pytest.param('<tool_call>{"name": "write_file", "arguments": {"content": "print("hi")"}}</tool_call>', None,
                 "malformed_json", "escape", id="hermes-malformed"),
    pytest.param("<tool_call>please run ls</tool_call>", None, "malformed_json", "line 1", id="hermes-not-json"),
    pytest.param('<tool_call>{"tool": "ls"}</tool_call>', None, "invalid_call", '"name"', id="hermes-not-a-call"),
    pytest.param(hermes("write_file", '{"path": "a.py",'), None, "malformed_json", "arguments", id="hermes-bad-string"),
    pytest.param('{"name": "write_file", "arguments": {"path": "a.py", "content": "a"b"}}', None, "malformed_json",
                 "not valid JSON", id="bare-json-malformed"),
    pytest.param("<function=nope><parameter=x>1</parameter></function>", None, "unknown_tool", "search_files",
                 id="qwen-xml-unknown"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "tool_calls", "reason", "hint"), ERROR_CASES)
def test_format_errors(content: str | None, tool_calls: list[Any] | None, reason: str, hint: str) -> None:
    """Bad replies become a FormatError with a reason and a corrective message, never an exception."""
    reply = parse_reply(content, tool_calls, TOOLS)
    assert reply.calls == () and reply.final_answer is None
    assert isinstance(reply.error, FormatError) and reply.error.reason == reason
    assert hint in reply.error.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think>b<think>c</think>d", "bd"),
        ("<think>never closed", ""),
        ("answer <think>trailing", "answer "),
        ("reasoning</think>answer", "answer"),
        ("no thinking", "no thinking"),
    ],
)
def test_strip_thinking(text: str, expected: str) -> None:
    """Closed, unclosed and template-opened think blocks are removed."""
    assert strip_thinking(text) == expected


def test_content_is_not_parsed_without_tools() -> None:
    """With no tools offered, call-looking content is a final answer, but a native call is an unknown tool."""
    text = hermes("write_file", WRITE)
    assert parse_reply(text, None, []) == ParsedReply(final_answer=text)
    native = parse_reply("", [{"name": "write_file", "arguments": {}}], [])
    assert native.error is not None and native.error.reason == "unknown_tool"


def test_multiple_calls_in_order() -> None:
    """Several calls in one reply come back in order, each with its own parser path."""
    xml = "<tool_call><function=read_file><parameter=path>b</parameter></function>"
    text = hermes("read_file", {"path": "a"}) + "\n" + xml
    reply = parse_reply(text, None, TOOLS)
    assert [(c.arguments["path"], c.parsed_by) for c in reply.calls] == [("a", "hermes"), ("b", "qwen_xml")]
    pair = "\n".join(json.dumps({"name": "read_file", "arguments": {"path": p}}) for p in "xy")
    assert [c.arguments["path"] for c in parse_reply(pair, None, TOOLS).calls] == ["x", "y"]


def test_qwen_xml_values_typed_by_schema() -> None:
    """With schemas, qwen XML values of non-string parameters are decoded; without, they stay strings."""
    params = "<parameter=command>\nsleep 1\n</parameter><parameter=timeout_s>\n30\n</parameter>"
    text = f"<function=run_command>{params}</function>"
    schema = {"properties": {"command": {"type": "string"}, "timeout_s": {"type": "integer"}}}
    typed = parse_reply(text, None, TOOLS, schemas={"run_command": schema}).calls[0]
    assert typed.arguments == {"command": "sleep 1", "timeout_s": 30}
    assert parse_reply(text, None, TOOLS).calls[0].arguments == {"command": "sleep 1", "timeout_s": "30"}


def test_ollama_tool_call_objects() -> None:
    """The ollama client's ToolCall objects are accepted as native calls."""
    function = ollama.Message.ToolCall.Function(name="read_file", arguments={"path": "a"})
    native = ollama.Message.ToolCall(function=function)
    assert parse_reply("", [native], TOOLS) == call("read_file", {"path": "a"}, "native")  # type: ignore[list-item]


@pytest.mark.parametrize("name", ["hello_world", "hermes", "qwen_xml", "bare_json", "think_call"])
def test_scripts_parse_to_the_hello_world_calls(name: str) -> None:
    """Every format the fake servers script yields the same hello-world calls through the parser."""
    expected = [(c.name, c.arguments) for c in HELLO_CALLS]
    parsed = []
    for turn in get_script(name).turns[:3]:
        native = [{"name": c.name, "arguments": c.arguments} for c in turn.tool_calls]
        parsed += [(c.name, c.arguments) for c in parse_reply(turn.content, native, TOOLS).calls]
    assert parsed == expected


def test_failure_scripts_give_format_errors() -> None:
    """The empty_reply and malformed_args scripts open with a reply the parser turns into a format error."""
    empty = get_script("empty_reply").turns[0]
    assert parse_reply(empty.content, None, TOOLS).error.reason == "empty"  # type: ignore[union-attr]
    broken = get_script("malformed_args").turns[0]
    assert parse_reply(broken.content, None, TOOLS).error.reason == "malformed_json"  # type: ignore[union-attr]


def test_parse_stats() -> None:
    """ParseStats counts calls per path, final answers and format errors by reason, per model."""
    stats = ParseStats()
    stats.record("qwen", parse_reply("", [{"name": "read_file", "arguments": {}}] * 2, TOOLS))
    stats.record("qwen", parse_reply(hermes("read_file", {}), None, TOOLS))
    stats.record("qwen", parse_reply("", None, TOOLS))
    stats.record("llama", parse_reply("done", None, TOOLS))
    assert stats.as_dict() == {
        "llama": {"replies": 1, "native": 0, "hermes": 0, "qwen_xml": 0, "bare_json": 0, "final_answer": 1,
                  "format_error": 0},
        "qwen": {"replies": 3, "native": 2, "hermes": 1, "qwen_xml": 0, "bare_json": 0, "final_answer": 0,
                 "format_error": 1, "format_error.empty": 1},
    }  # fmt: skip
