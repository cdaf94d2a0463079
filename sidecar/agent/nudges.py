"""Keeping small models on the tool-calling path: the ``finish`` tool, the nudge for a reply without a call, the
compact tool descriptions for small context windows and the few-shot example of a call.

Measured on a 1.5B coder model: it often answers in Markdown prose with the code in fenced blocks and no call, which
a loop that takes any text as the final answer records as ``completed`` with nothing written. So (as SWE-agent's
``submit`` and OpenHands' ``finish`` do) the end of the work is an explicit call, ``finish`` with a summary, and a
reply without a call is a format error answered with a nudge saying what to call, bounded by ``max_format_errors``.
A plain-text answer still ends the attempt when the model has already acted in it and the text holds no code (a
capable model's usual last turn). Pure functions and constants, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FINISH = "finish"
FINISH_TOOL: dict[str, Any] = {
    "name": FINISH,
    "description": "End your work on the task: call it once the task is done and checked, with a short summary. "
    "Nothing else ends the task.",
    "parameters": {
        "type": "object",
        "properties": {"summary": {"type": "string", "description": "What you changed and how you checked it."}},
        "required": ["summary"],
    },
}
FINISH_TEXT = "Finished: the checks run now."
WRITING_TOOLS = frozenset({"write_file", "edit_file"})
UNSAVED_TEXT = (
    "Note: your reply showed code in a fenced block, but that code was NOT saved anywhere. Code only reaches a file "
    "through a write_file call (path and the complete content) or an edit_file call."
)
COMPACT_CONTEXT = 16_384
"""Windows up to this many tokens get the compact tool descriptions."""

_FENCE = re.compile(r"```")
_FENCED = re.compile(r"```([\w+-]*)[^\n]*\n(.*?)```", re.S)
_CODE_LINE = re.compile(r"^\s*(def |class |import |from \S+ import |#!|if __name__)", re.M)

FEW_SHOT = """\
Example of a correct reply that writes a file (one tool call, nothing else):
<tool_call>
{"name": "write_file", "arguments": {"path": "greet.py", "content": "def greet(name):\\n    return 'Hi ' + name\\n"}}
</tool_call>
Example of a correct reply that ends the task after checking it:
<tool_call>
{"name": "finish", "arguments": {"summary": "Wrote greet.py; python3 -c 'import greet' runs."}}
</tool_call>"""


def has_code(text: str) -> bool:
    """Whether a reply holds code: a fenced block or lines that start like Python code."""
    return bool(_FENCE.search(text) or _CODE_LINE.search(text))


def no_call_message(text: str, tools: Iterable[str]) -> str:
    """The nudge for a reply with no tool call (``text`` is the reply)."""
    names = ", ".join(sorted(tools))
    if has_code(text):
        head = ("You wrote code in your reply but did not call a tool, so nothing was saved. You must call a tool: "
                "to write a file use write_file with the path and the complete content; to change a file use "
                "edit_file; to run it use run_command.")  # fmt: skip
    else:
        head = "Your reply has no tool call, so nothing happened. You must call a tool to act."
    return f"{head} Available tools: {names}. When the task is done and checked, call finish with a summary."


def unsaved_code(text: str, called: Iterable[str]) -> bool:
    """Whether a reply shows code in a fenced block (not a JSON call) while none of its calls writes a file."""
    if any(name in WRITING_TOOLS for name in called):
        return False
    return any(lang.lower() != "json" and not body.lstrip().startswith("{") for lang, body in _FENCED.findall(text))


def may_end_with_text(text: str, acted: bool) -> bool:
    """A reply without a call ends the attempt only after the model acted in it and when it holds no code."""
    return acted and not has_code(text)


def compact_specs(specs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tool specs with only the first sentence of each description (tool and parameters) and no defaults or limits,
    for small context windows."""
    compact = []
    for spec in specs:
        parameters = dict(spec["parameters"])
        properties = {  # type and a short description; defaults and limits are left to the tool's own checks
            name: {key: first_sentence(value) if key == "description" else value for key, value in prop.items()
                   if key in ("type", "description", "enum")}
            for name, prop in (parameters.get("properties") or {}).items()
        }  # fmt: skip
        compact.append({**spec, "description": first_sentence(spec["description"]),
                        "parameters": {**parameters, "properties": properties}})  # fmt: skip
    return compact


def first_sentence(text: str) -> str:
    """``text`` up to its first full stop followed by a space (the full stop kept)."""
    head = text.split(". ", 1)[0]
    return head if head.endswith(".") else head + "."
