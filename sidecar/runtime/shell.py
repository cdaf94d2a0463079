"""ShellExecutor: run a task's ``metadata.shell_command`` in the sandbox and stream its output.

The command runs as ``/bin/sh -c CMD`` with the task workspace as its only writable directory. Output is gathered
into ~100 ms windows and sent as ``task_progress`` ``output`` events. The exit code is reported as it is: a non-zero
exit or a timeout is a failed outcome, never a success. Cancelling ``run`` kills the command (the sandbox owns the
process group).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from shared.protocol import TaskAssign
from sidecar.runtime.executor import EventSink, Outcome, task_timeout_s
from sidecar.sandbox.base import Completed, Limits, Sandbox
from sidecar.sandbox.output import cap_text

logger = logging.getLogger(__name__)

EVENT_TEXT_CHARS = 8_000
"""Largest text in one output event (a frame stays far below the 1 MiB limit)."""
STREAMED_CHARS_LIMIT = 1_000_000
"""Output streamed per task; past it one ``output_truncated`` event is sent and the rest only reaches the result."""
RESULT_OUTPUT_CHARS = 64_000
"""Output kept in the result: its head and its tail (where errors usually are) around a note of what was cut."""


class OutputBatcher:
    """Gathers output chunks and emits them every ``interval_s`` as ``output`` events, one per stream run."""

    def __init__(self, events: EventSink, interval_s: float) -> None:
        self._events = events
        self._interval_s = interval_s
        self._chunks: list[list[str]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self.streamed_chars = 0

    async def add(self, stream: str, text: str) -> None:
        """Queue ``text`` from ``stream`` (``stdout``/``stderr``); the sandbox calls this as output arrives."""
        if self._chunks and self._chunks[-1][0] == stream:
            self._chunks[-1].append(text)
        else:
            self._chunks.append([stream, text])
        self._wake.set()

    def close(self) -> None:
        """No more output will come: flush what is left and let :meth:`run` return."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Flush loop; returns after :meth:`close` once everything is sent."""
        while True:
            await self._wake.wait()
            if not self._closed:
                await asyncio.sleep(self._interval_s)
            self._wake.clear()
            await self._flush()
            if self._closed and not self._chunks:
                return

    async def _flush(self) -> None:
        chunks, self._chunks = self._chunks, []
        for stream, *parts in chunks:
            text = "".join(parts)
            if self.streamed_chars >= STREAMED_CHARS_LIMIT:
                continue
            room = STREAMED_CHARS_LIMIT - self.streamed_chars
            if len(text) > room:
                text = text[:room]
                await self._emit(stream, text)
                await self._events.emit("output_truncated", f"streamed output capped at {STREAMED_CHARS_LIMIT} chars")
            else:
                await self._emit(stream, text)

    async def _emit(self, stream: str, text: str) -> None:
        self.streamed_chars += len(text)
        for start in range(0, len(text), EVENT_TEXT_CHARS):
            await self._events.emit("output", text[start : start + EVENT_TEXT_CHARS], stream=stream)


class ShellExecutor:
    """Runs ``metadata.shell_command`` through the sandbox."""

    name = "shell"

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        default_timeout_s: float = 600.0,
        limits: Limits | None = None,
        network: bool = False,
        batch_interval_s: float = 0.1,
    ) -> None:
        self._sandbox = sandbox
        self._default_timeout_s = default_timeout_s
        self._limits = limits
        self._network = network
        self._batch_interval_s = batch_interval_s

    def __repr__(self) -> str:
        return f"<ShellExecutor sandbox={self._sandbox.level} network={self._network}>"

    def is_idempotent(self, task: TaskAssign) -> bool:
        """Only when the task says so (``metadata.idempotent: true``): a half-run command may have side effects."""
        return task.metadata.get("idempotent") is True

    async def run(self, task: TaskAssign, workspace: Path, events: EventSink) -> Outcome:
        """Run the command; the outcome carries its exit code, output and whether it timed out."""
        command = task.metadata.get("shell_command")
        if not isinstance(command, str) or not command.strip():
            return Outcome.failed("invalid_task", "metadata.shell_command must be a non-empty string")
        timeout_s = task_timeout_s(task, self._default_timeout_s)
        await events.emit("command_started", command, timeout_s=timeout_s)
        batcher = OutputBatcher(events, self._batch_interval_s)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(batcher.run(), name=f"output-{task.task_id}")
            try:
                done = await self._sandbox.run(
                    ["/bin/sh", "-c", command],
                    workspace,
                    timeout_s=timeout_s,
                    limits=self._limits,
                    network=self._network,
                    env={"AGENTCOM_TASK_ID": task.task_id, "AGENTCOM_GENERATION": str(task.generation)},
                    on_output=batcher.add,
                )
            finally:
                batcher.close()
        outcome = outcome_of(done, timeout_s)
        await events.emit(
            "command_finished",
            outcome.error or "exit 0",
            exit_code=done.returncode,
            timed_out=done.timed_out,
            duration_ms=done.duration_ms,
        )
        return outcome


def outcome_of(done: Completed, timeout_s: float) -> Outcome:
    """Translate a finished command into an outcome: exit 0 is success, anything else (or a timeout) is failed."""
    details = {"stderr": _capped(done.stderr), "timed_out": done.timed_out, "truncated": done.truncated}
    output, code, duration_ms = _capped(done.stdout), done.returncode, done.duration_ms
    if done.timed_out:
        error = f"command timed out after {timeout_s:g} s"
        return Outcome.failed("timeout", error, output=output, exit_code=code, duration_ms=duration_ms, details=details)
    if code != 0:
        why = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
        return Outcome.failed(
            "exit_code", f"command {why}", output=output, exit_code=code, duration_ms=duration_ms, details=details
        )
    return Outcome(status="success", output=output, exit_code=code, duration_ms=duration_ms, details=details)


def _capped(text: str) -> str:
    return cap_text(text, RESULT_OUTPUT_CHARS)
