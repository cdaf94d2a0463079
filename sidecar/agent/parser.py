"""Turn a model's reply into tool calls, a final answer, or a format error to send back to the model.

One ordered chain; the first step that finds calls wins:

1. ``native``: the API's ``tool_calls``;
2. calls written in the content, only when tools were offered: ``hermes`` (``<tool_call>{json}</tool_call>``),
   ``qwen_xml`` (qwen3-coder ``<function=name><parameter=p>v</parameter></function>``, with or without the
   ``<tool_call>`` wrapper), ``bare_json`` (a JSON object ``{"name": .., "arguments"|"parameters": ..}``);
3. otherwise the content is the final answer; an empty one is a format error.

``<think>`` blocks are removed before step 2, so reasoning never triggers a call. Call names are checked against
the offered tools and arguments must decode to a JSON object; any problem becomes a ``FormatError`` whose
``message`` tells the model how to fix its reply. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PATHS = ("native", "hermes", "qwen_xml", "bare_json")

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_TOOL_CALL_OPEN, _TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|(?=<function=)|\Z)", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.S)
_DECODER = json.JSONDecoder()
_CALL_START = re.compile(r'\{\s*"name"\s*:\s*"')
_TRIPLE_QUOTES = ' JSON has no """triple-quoted""" strings: write the file content as one string with \\n for newlines.'


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    parsed_by: str
    """Which step of the chain found the call: one of ``PATHS``."""


@dataclass(frozen=True)
class FormatError:
    reason: str
    """``empty``, ``unknown_tool``, ``malformed_json`` or ``invalid_call``."""
    message: str
    """Corrective message for the model."""


@dataclass(frozen=True)
class ParsedReply:
    """Exactly one of: ``calls`` (non-empty), ``final_answer``, ``error``."""

    calls: tuple[ToolCall, ...] = ()
    final_answer: str | None = None
    error: FormatError | None = None


# A call found but not yet checked: (path, name, arguments) exactly as the model wrote them.
_RawCall = tuple[str, Any, Any]


def parse_reply(
    content: str | None,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    offered_tools: Iterable[str] = (),
    *,
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> ParsedReply:
    """Parse one assistant message.

    Args:
        content: the message text.
        tool_calls: native calls, each ``{"name", "arguments"}`` (or Ollama's ``{"function": {...}}``); arguments a
            dict or a JSON string.
        offered_tools: names of the tools offered in the request.
        schemas: optional JSON-schema ``parameters`` per tool, used to type qwen XML values (else they stay strings).
    """
    tools = sorted(set(offered_tools))
    if tool_calls:
        raw: list[_RawCall] = []
        for entry in tool_calls:
            if hasattr(entry, "model_dump"):  # an ollama ``ToolCall`` object
                entry = entry.model_dump()
            call = entry.get("function", entry) if isinstance(entry, Mapping) else {}
            raw.append(("native", call.get("name"), call.get("arguments")))
        return _checked(raw, tools, schemas)
    text = strip_thinking(content or "")
    if tools:
        found = _content_calls(text)
        if isinstance(found, FormatError):
            return ParsedReply(error=found)
        if found:
            return _checked(found, tools, schemas)
    answer = text.strip()
    if not answer:
        return ParsedReply(error=FormatError("empty", _empty_message(tools)))
    return ParsedReply(final_answer=answer)


def strip_thinking(text: str) -> str:
    """Remove ``<think>...</think>`` blocks.

    An unclosed ``<think>`` hides everything after it; a lone ``</think>`` (the template opened the block) hides
    everything before it.
    """
    close = text.find(_THINK_CLOSE)
    if close != -1 and _THINK_OPEN not in text[:close]:
        text = text[close + len(_THINK_CLOSE) :]
    while (start := text.find(_THINK_OPEN)) != -1:
        end = text.find(_THINK_CLOSE, start)
        if end == -1:
            return text[:start]
        text = text[:start] + text[end + len(_THINK_CLOSE) :]
    return text


def _content_calls(text: str) -> list[_RawCall] | FormatError | None:
    if _TOOL_CALL_OPEN in text:
        calls: list[_RawCall] = []
        for block in _tool_call_blocks(text):
            found = _xml_calls(block) if block.lstrip().startswith("<function=") else _hermes_calls(block)
            if isinstance(found, FormatError):
                return found
            calls += found
        return calls or FormatError("invalid_call", _INVALID_CALL)
    if "<function=" in text:
        return _xml_calls(text)
    return _bare_json_calls(text)


def _tool_call_blocks(text: str) -> Iterable[str]:
    """Bodies of ``<tool_call>`` blocks; a missing closing tag ends the block at the next opening one or the end."""
    for chunk in text.split(_TOOL_CALL_OPEN)[1:]:
        yield chunk.split(_TOOL_CALL_CLOSE, 1)[0]


def _hermes_calls(block: str) -> list[_RawCall] | FormatError:
    body = _strip_fence(block.strip())
    try:
        value, _ = _DECODER.raw_decode(body)
    except json.JSONDecodeError as exc:
        return FormatError("malformed_json", _malformed_message("<tool_call> block", exc))
    calls: list[_RawCall] = []
    for item in value if isinstance(value, list) else [value]:
        if (fields := _call_fields(item, arguments_required=False)) is None:
            return FormatError("invalid_call", _INVALID_CALL)
        calls.append(("hermes", *fields))
    return calls or FormatError("invalid_call", _INVALID_CALL)


def _xml_calls(text: str) -> list[_RawCall]:
    calls: list[_RawCall] = []
    for match in _FUNCTION.finditer(text):
        params = {key.strip(): _xml_value(value) for key, value in _PARAMETER.findall(match.group(2))}
        calls.append(("qwen_xml", match.group(1).strip(), params))
    return calls


def _xml_value(value: str) -> str:
    """qwen3-coder puts values on their own lines: drop one leading and one trailing newline."""
    value = value.removeprefix("\n")
    return value.removesuffix("\n")


def _bare_json_calls(text: str) -> list[_RawCall] | FormatError | None:
    """Every JSON object in ``text`` shaped like a call; braces inside strings are handled by the JSON decoder.

    An object that starts like a call (``{"name": "..."``) but is not valid JSON makes the whole reply a format
    error, even when other calls in it decode: running the rest (say, a test of a file whose write was broken) would
    act on a plan the model did not get through.
    """
    calls: list[_RawCall] = []
    broken: json.JSONDecodeError | None = None
    start = text.find("{")
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            if broken is None and _CALL_START.match(text, start):
                broken = exc
            start = text.find("{", start + 1)
            continue
        if fields := _call_fields(value):
            calls.append(("bare_json", *fields))
        start = text.find("{", end)
    if broken is not None:
        return FormatError("malformed_json", _malformed_message("JSON tool call", broken) + _TRIPLE_QUOTES)
    if calls:
        return calls
    body = _strip_fence(text.strip())
    if body.startswith("{") and '"name"' in body and ('"arguments"' in body or '"parameters"' in body):
        try:
            _DECODER.raw_decode(body)
        except json.JSONDecodeError as exc:
            return FormatError("malformed_json", _malformed_message("JSON tool call", exc))
    return None


def _call_fields(value: Any, arguments_required: bool = True) -> tuple[Any, Any] | None:
    """``(name, arguments)`` if ``value`` looks like a call object, also the OpenAI ``{"function": {...}}`` form."""
    if isinstance(value, dict) and isinstance(value.get("function"), dict):
        value = value["function"]
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    for key in ("arguments", "parameters"):
        if key in value:
            return value["name"], value[key]
    return None if arguments_required else (value["name"], None)


def _strip_fence(text: str) -> str:
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rstrip().removesuffix("```")
    return text.strip()


def _checked(raw: list[_RawCall], tools: list[str], schemas: Mapping[str, Mapping[str, Any]] | None) -> ParsedReply:
    calls: list[ToolCall] = []
    for path, name, arguments in raw:
        if not isinstance(name, str) or not name:
            return ParsedReply(error=FormatError("invalid_call", _INVALID_CALL))
        if name not in tools:
            message = f"There is no tool named {name!r}. Available tools: {', '.join(tools) or 'none'}."
            return ParsedReply(error=FormatError("unknown_tool", message + " Call one of them, or answer in text."))
        if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
            arguments = {}
        elif isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as exc:
                return ParsedReply(error=FormatError("malformed_json", _malformed_message(f"{name!r} arguments", exc)))
        if not isinstance(arguments, dict):
            message = f"The arguments of {name!r} must be a JSON object mapping parameter names to values."
            return ParsedReply(error=FormatError("invalid_call", message))
        if path == "qwen_xml" and schemas and name in schemas:
            arguments = _typed(arguments, schemas[name])
        calls.append(ToolCall(name, arguments, path))
    return ParsedReply(calls=tuple(calls))


def _typed(arguments: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Decode XML string values whose schema type is not ``string`` (e.g. ``"30"`` -> ``30``)."""
    properties = schema.get("properties") or {}
    typed = dict(arguments)
    for key, value in arguments.items():
        kind = (properties.get(key) or {}).get("type", "string")
        if kind != "string" and isinstance(value, str):
            try:
                typed[key] = json.loads(value)
            except json.JSONDecodeError:
                pass
    return typed


_INVALID_CALL = (
    'A tool call must be a JSON object {"name": "<tool>", "arguments": {...}}. Use the native tool-calling format.'
)


def _malformed_message(what: str, exc: json.JSONDecodeError) -> str:
    return (
        f"Your {what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}). "
        'Send the call again with the arguments as one JSON object; escape " as \\" and newlines as \\n in strings.'
    )


def _empty_message(tools: list[str]) -> str:
    if not tools:
        return "Your reply was empty. Answer in plain text."
    return (
        f"Your reply was empty. Call one of the tools ({', '.join(tools)}) to make progress, "
        "or, if the task is complete, reply with a short final answer in plain text."
    )


class ParseStats:
    """Counts, per model, calls found by each path, final answers and format errors (also by reason)."""

    def __init__(self) -> None:
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def record(self, model: str, reply: ParsedReply) -> None:
        counts = self._counts[model]
        counts["replies"] += 1
        if reply.error is not None:
            counts["format_error"] += 1
            counts[f"format_error.{reply.error.reason}"] += 1
        elif reply.calls:
            counts.update(call.parsed_by for call in reply.calls)
        else:
            counts["final_answer"] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{model: {"replies", "native", "hermes", "qwen_xml", "bare_json", "final_answer", "format_error",
        "format_error.<reason>"...}}``; reason keys appear only once seen."""
        fixed = ("replies", *PATHS, "final_answer", "format_error")
        return {
            model: {key: counts[key] for key in fixed} | {k: v for k, v in sorted(counts.items()) if k not in fixed}
            for model, counts in sorted(self._counts.items())
        }

    def __repr__(self) -> str:
        return f"<ParseStats {self.as_dict()}>"
