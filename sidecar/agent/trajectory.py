"""The trajectory of one agentic run: every model request and reply and every observation, kept as JSON.

The file is ``<workspace>/.agentcom/trajectory.json``, rewritten atomically after every step (and in the loop's
``finally``), so a crash or cancellation leaves the run on disk up to its last step. ``.agentcom/`` holds its own
``.gitignore`` containing ``*``: git, and with it the ``git_clean`` verification check and any commit or diff of the
workspace, never sees the directory, and ``test_passes auto`` skips hidden directories. So the record never
changes what verification finds. The agent can list or read the directory; that is harmless.

Format ``agentcom-trajectory/1``::

    {"format", "task_id", "provider", "model", "started_at", "updated_at", "summary": {...},
     "tools": [{name, description, parameters}], "messages": [neutral history, see sidecar.agent.models],
     "steps": [{"kind", "at_ms", "attempt", "iteration", ...}]}

Step kinds: ``model_turn``, ``observation``, ``format_error``, ``model_error``, ``stop``, ``verification``.
Requests are not stored one by one: the history only grows, so the request of a ``model_turn`` step is
``messages[:request_messages]`` plus ``tools``; the reply as received is ``messages[message_index]``.

:func:`script_from_trajectory` turns a recorded run back into a fake-server ``Script``, so the loop can be replayed
against exactly what the model said: a regression test for the loop.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.agent.models import Message, ModelTurn, ToolSpec

if TYPE_CHECKING:
    from shared.fakes.script import Script, ScriptedCall

FORMAT = "agentcom-trajectory/1"
RECORD_DIR = ".agentcom"
FILE_NAME = "trajectory.json"
EVENT_TEXT_CHARS = 200
"""Longest text of a streamed ``model_turn`` event (the full reply stays in the file)."""


def trajectory_path(workspace: Path) -> Path:
    """Where the trajectory of a run in ``workspace`` is kept."""
    return Path(workspace) / RECORD_DIR / FILE_NAME


class Trajectory:
    """The record of one run; ``messages`` is the conversation itself, which the loop appends to."""

    def __init__(self, workspace: Path, *, task_id: str, provider: str, model: str, tools: list[ToolSpec]) -> None:
        self.path = trajectory_path(workspace)
        self.header: dict[str, Any] = {
            "format": FORMAT, "task_id": task_id, "provider": provider, "model": model,
            "started_at": _now_ms(), "updated_at": None, "summary": {},
        }  # fmt: skip
        self.tools = [dict(tool) for tool in tools]
        self.messages: list[Message] = []
        self.steps: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"<Trajectory {self.path} messages={len(self.messages)} steps={len(self.steps)}>"

    def add(self, kind: str, **data: Any) -> dict[str, Any]:
        """Append one step and return it."""
        step = {"kind": kind, "at_ms": _now_ms(), **data}
        self.steps.append(step)
        return step

    def add_turn(self, turn: ModelTurn, *, attempt: int, iteration: int, request_messages: int,
                 duration_ms: int) -> dict[str, Any]:  # fmt: skip
        """Record a reply that was just appended to ``messages`` (as its last entry)."""
        meta = {k: v for k, v in turn.raw.items() if k not in ("message", "content")}
        return self.add(
            "model_turn", attempt=attempt, iteration=iteration, request_messages=request_messages,
            message_index=len(self.messages) - 1, content=turn.content, thinking=turn.thinking,
            tool_calls=turn.tool_calls, tokens_in=turn.tokens_in, tokens_out=turn.tokens_out,
            truncated=turn.truncated, duration_ms=duration_ms, response_meta=meta,
            tokens_reevaluated=turn.tokens_reevaluated,
        )  # fmt: skip

    def save(self, **summary: Any) -> None:
        """Write the whole record (atomically); ``summary`` fields are merged into ``summary``."""
        self.header["summary"].update(summary)
        self.header["updated_at"] = _now_ms()
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        ignore = directory / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n", encoding="utf-8")
        record = {**self.header, "tools": self.tools, "messages": self.messages, "steps": self.steps}
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.path)


def turn_event(step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The compact ``model_turn`` event for a recorded turn: (text, fields)."""
    text = " ".join((step["content"] or "").split())
    if len(text) > EVENT_TEXT_CHARS:
        text = text[: EVENT_TEXT_CHARS - 1] + "…"
    fields = {
        "iteration": step["iteration"], "attempt": step["attempt"], "tokens_in": step["tokens_in"],
        "tokens_out": step["tokens_out"], "duration_ms": step["duration_ms"],
        "tool_calls": [call["name"] for call in step["tool_calls"]],
        "thinking_chars": len(step["thinking"] or ""), "truncated": step["truncated"],
    }  # fmt: skip
    return text or ("(tool calls)" if step["tool_calls"] else "(empty reply)"), fields


def load_trajectory(path: Path) -> dict[str, Any]:
    """Read a trajectory file; raises ``ValueError`` if it is not one."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an {FORMAT} file")
    return data


def script_from_trajectory(path: Path, name: str = "replay") -> Script:
    """A fake-server script that replies, turn by turn, exactly what the recorded model replied.

    Native calls are replayed as native calls, and calls the model wrote in its text stay in the text, so the
    parser meets the same input again. Token counts are replayed too, so budgets trip at the same point.
    """
    from shared.fakes.script import Script, Turn  # test tooling: not loaded by a running sidecar

    turns = [
        Turn(
            content=step["content"] or "",
            thinking=step.get("thinking"),
            tool_calls=[_scripted(call) for call in step["tool_calls"]],
            prompt_tokens=step["tokens_in"],
            eval_tokens=step["tokens_out"],
        )
        for step in load_trajectory(path)["steps"]
        if step["kind"] == "model_turn"
    ]
    return Script(name=name, turns=turns)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _scripted(call: dict[str, Any]) -> ScriptedCall:
    """A recorded native call as the fake servers replay it (arguments that came as a string go back as one)."""
    from shared.fakes.script import ScriptedCall

    arguments = call["arguments"]
    if isinstance(arguments, str):
        return ScriptedCall(name=call["name"], raw_arguments=arguments)
    return ScriptedCall(name=call["name"], arguments=arguments)
