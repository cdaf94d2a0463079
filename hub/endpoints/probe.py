"""Capability probing: how well does each model on each endpoint call a tool, and how fast is it?

A probe sends :data:`PROMPTS` (fresh conversations, temperature 0) offering one tool, ``write_file``, to the
endpoint's chat API (Ollama ``/api/chat``, or ``/v1/chat/completions``) and classifies each reply by the path its
call took (:func:`classify`): ``native`` (``tool_calls``), ``xml`` (``<tool_call>`` or ``<function=..>`` tags in
content), ``fenced`` (a fenced JSON block), ``content_json`` (bare JSON in content), or ``none``; and whether the
arguments fit the tool's schema. The score is the mean of :data:`CASE_SCORES`; tokens/s come from the server's
counters (``eval_count``/``eval_duration``) or from ``usage`` over wall time; the effective context is the loaded
model's (``/api/ps``), else ``/api/show``'s, else the server's ``n_ctx`` (llama.cpp ``/props``).

Probes run on a model's first discovery, when an admin asks, and again every ``endpoint_probe_interval_s``, at most
``endpoint_probe_concurrency`` at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from typing import Any, NamedTuple

import httpx

from hub.endpoints.health import EndpointError, fetch_json
from hub.endpoints.registry import Endpoint, EndpointRegistry

logger = logging.getLogger(__name__)

SYSTEM = "You are a coding assistant. Act by calling the tools you are given."
PROMPTS = (
    ("hello", "Create a file named hello.txt containing the text: hello"),
    ("add", "Write a Python file add.py defining a function add(a, b) that returns a + b."),
    ("status", "Save the word done into the file status.txt."),
)
TOOL = {
    "name": "write_file",
    "description": "Write text to a file, replacing it.",
    "parameters": {
        "type": "object",
        "required": ["path", "content"],
        "properties": {
            "path": {"type": "string", "description": "file path, relative"},
            "content": {"type": "string", "description": "the whole new text of the file"},
        },
    },
}
CASE_SCORES = {("native", True): 1.0, ("native", False): 0.5, ("content", True): 0.6, ("content", False): 0.25}
"""A reply's score by (native or written in content, arguments valid); no call at all scores 0."""
NUM_PREDICT = 256
SCHEDULE_EVERY_MS = 10_000
"""How often the loop looks for results that are due again."""

THINK = re.compile(r"<think>.*?(</think>|$)", re.S)
TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(</tool_call>|$)", re.S)
FUNCTION_TAG = re.compile(r"<function=([\w.-]+)>(.*?)(</function>|$)", re.S)
PARAMETER_TAG = re.compile(r"<parameter=([\w.-]+)>\n?(.*?)\n?</parameter>", re.S)
FENCE = re.compile(r"```[\w-]*\s*\n(.*?)```", re.S)


class Case(NamedTuple):
    path: str
    """native, xml, fenced, content_json or none."""
    tool: str | None
    valid: bool


def _call_of(obj: Any) -> tuple[str, Any] | None:
    """(name, arguments) from a JSON call written as ``{"name", "arguments"|"parameters"}`` or ``{"function": ..}``."""
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if isinstance(obj, list) and obj:
        return _call_of(obj[0])
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    return obj["name"], obj.get("arguments", obj.get("parameters"))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def valid_arguments(name: str | None, arguments: Any) -> bool:
    """The call is ``write_file`` with a non-empty string ``path`` and a string ``content`` (JSON text accepted)."""
    if isinstance(arguments, str):
        arguments = _json(arguments)
    return (
        name == TOOL["name"]
        and isinstance(arguments, dict)
        and isinstance(arguments.get("path"), str)
        and bool(arguments["path"].strip())
        and isinstance(arguments.get("content"), str)
    )


def classify(content: str, tool_calls: Any) -> Case:
    """The path a reply's first tool call took and whether its arguments are valid."""
    if isinstance(tool_calls, list) and tool_calls:
        call = _call_of(tool_calls[0])
        name = call[0] if call else None
        return Case("native", name, valid_arguments(name, call[1] if call else None))
    text = THINK.sub("", content or "")
    for inner in (m.group(1) for m in TOOL_CALL_TAG.finditer(text)):
        if (call := _call_of(_json(inner))) is not None:
            return Case("xml", call[0], valid_arguments(*call))
    if (fn := FUNCTION_TAG.search(text)) is not None:
        args = {k: v for k, v in PARAMETER_TAG.findall(fn.group(2))}
        return Case("xml", fn.group(1), valid_arguments(fn.group(1), args))
    for block in FENCE.findall(text):
        if (call := _call_of(_json(block.strip()))) is not None:
            return Case("fenced", call[0], valid_arguments(*call))
    stripped = text.strip()
    call = _call_of(_json(stripped))
    if call is None and "{" in stripped:
        call = _call_of(_json(stripped[stripped.find("{") : stripped.rfind("}") + 1]))
    if call is not None:
        return Case("content_json", call[0], valid_arguments(*call))
    return Case("none", None, False)


def case_score(case: Case) -> float:
    if case.path == "none":
        return 0.0
    return CASE_SCORES[("native" if case.path == "native" else "content", case.valid)]


async def _ask(
    client: httpx.AsyncClient, ep: Endpoint, model: str, prompt: str, timeout_s: float
) -> tuple[Case, int, float]:
    """One prompt: its classified reply, the tokens generated and the seconds spent generating them."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    if ep.kind == "ollama":
        body = {"model": model, "messages": messages, "tools": [{"type": "function", "function": TOOL}],
                "stream": False, "options": {"temperature": 0, "num_predict": NUM_PREDICT}}  # fmt: skip
        answer = await fetch_json(client, "POST", ep.url + "/api/chat", timeout_s, body)
        message = answer.get("message") if isinstance(answer, dict) else None
        if not isinstance(message, dict):
            raise EndpointError("answer has no message")
        tokens, duration = answer.get("eval_count"), answer.get("eval_duration")
        seconds = duration / 1e9 if isinstance(duration, int | float) and duration > 0 else 0.0
        case = classify(str(message.get("content") or ""), message.get("tool_calls"))
        return case, tokens if isinstance(tokens, int) and tokens >= 0 else 0, seconds
    body = {"model": model, "messages": messages, "tools": [{"type": "function", "function": TOOL}],
            "temperature": 0, "max_tokens": NUM_PREDICT, "stream": False}  # fmt: skip
    started = time.monotonic()
    answer = await fetch_json(client, "POST", ep.url + "/v1/chat/completions", timeout_s, body)
    seconds = time.monotonic() - started
    choices = answer.get("choices") if isinstance(answer, dict) else None
    message = (
        choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    )
    if not isinstance(message, dict):
        raise EndpointError("answer has no choices[0].message")
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    tokens = usage.get("completion_tokens")
    case = classify(str(message.get("content") or ""), message.get("tool_calls"))
    return case, tokens if isinstance(tokens, int) and tokens >= 0 else 0, seconds


async def _context_length(client: httpx.AsyncClient, ep: Endpoint, model: str, timeout_s: float) -> int | None:
    if model in ep.warm and ep.warm[model].context_length:
        return ep.warm[model].context_length
    if model in ep.models and ep.models[model].context_length:
        return ep.models[model].context_length
    if ep.kind == "openai":
        try:
            props = await fetch_json(client, "GET", ep.url + "/props", timeout_s)
        except EndpointError:
            return None
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        n_ctx = (settings or {}).get("n_ctx", props.get("n_ctx") if isinstance(props, dict) else None)
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None
    return None


async def probe_model(
    client: httpx.AsyncClient, ep: Endpoint, model: str, timeout_s: float, now_ms: int
) -> dict[str, Any]:
    """Run the conformance prompts against ``model`` on ``ep``; the result as stored (see the module docstring)."""
    cases: list[dict[str, Any]] = []
    tokens, seconds = 0, 0.0
    error: str | None = None
    for prompt_id, prompt in PROMPTS:
        try:
            case, n, s = await _ask(client, ep, model, prompt, timeout_s)
        except EndpointError as exc:
            error = error or str(exc)
            cases.append({"prompt": prompt_id, "path": "error", "tool": None, "valid": False, "error": str(exc)})
            continue
        tokens, seconds = tokens + n, seconds + s
        cases.append({"prompt": prompt_id, "path": case.path, "tool": (case.tool or "")[:64] or None,
                      "valid": case.valid, "score": case_score(case)})  # fmt: skip
    paths = Counter(c["path"] for c in cases)
    answered = [c for c in cases if c["path"] != "error"]
    return {
        "url": ep.url,
        "probed_at": now_ms,
        "score": round(sum(c.get("score", 0.0) for c in cases) / len(cases), 3),
        "path": max(paths, key=lambda p: (paths[p], p != "error")),
        "paths": dict(paths),
        "valid_args": f"{sum(c['valid'] for c in cases)}/{len(cases)}",
        "native_tool_calls": any(c["path"] == "native" for c in answered),
        "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else None,
        "context_length": await _context_length(client, ep, model, timeout_s),
        "capabilities": list(ep.models[model].capabilities) if model in ep.models else [],
        "cases": cases,
        "error": error,
    }


def _schedule_due(registry: EndpointRegistry, now: int) -> None:
    """Ask again for every model of a healthy endpoint whose result is missing or older than the probe interval."""
    stale_before = now - int(registry.settings.endpoint_probe_interval_s * 1000)
    for ep in registry.endpoints.values():
        if ep.healthy:
            for model in ep.models:
                result = registry.probes.get((ep.id, model))
                if result is None or not isinstance(result.get("probed_at"), int) or result["probed_at"] < stale_before:
                    registry.want_probe(ep.id, model)


def _take(registry: EndpointRegistry, running: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The first wanted probe that can run now (its endpoint healthy); drops those of removed endpoints."""
    for key, forced in list(registry.probe_wanted.items()):
        ep = registry.endpoints.get(key[0])
        if ep is None:
            del registry.probe_wanted[key]
        elif key not in running and (ep.healthy or forced):
            del registry.probe_wanted[key]
            return key
    return None


async def run_probes(registry: EndpointRegistry) -> None:
    """Run wanted probes, at most ``endpoint_probe_concurrency`` at once, forever (owned by the hub's TaskGroup)."""
    settings = registry.settings
    running: set[tuple[str, str]] = set()
    next_schedule = 0

    async def one(key: tuple[str, str]) -> None:
        try:
            ep = registry.endpoints.get(key[0])
            if ep is not None:
                result = await probe_model(client, ep, key[1], settings.endpoint_probe_timeout_s, registry.now_ms())
                await registry.put_probe(key[0], key[1], result)
        except Exception:  # a bug in one probe must not stop probing
            logger.exception("probe of %s on %s failed", key[1], key[0])
        finally:
            running.discard(key)
            registry.probe_soon.set()

    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client, asyncio.TaskGroup() as tg:
        while True:
            registry.probe_soon.clear()
            now = registry.now_ms()
            every_ms = min(SCHEDULE_EVERY_MS, int(settings.endpoint_probe_interval_s * 1000))
            if settings.endpoint_probe_enabled and now >= next_schedule:
                _schedule_due(registry, now)
                next_schedule = now + every_ms
            while len(running) < settings.endpoint_probe_concurrency and (key := _take(registry, running)):
                running.add(key)
                registry.n_probes_running_max = max(registry.n_probes_running_max, len(running))
                tg.create_task(one(key))
            try:
                async with asyncio.timeout(max(0.0, (next_schedule - registry.now_ms()) / 1000)):
                    await registry.probe_soon.wait()
            except TimeoutError:
                pass
