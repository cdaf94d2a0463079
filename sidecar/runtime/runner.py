"""The task lifecycle on a sidecar: record → accept → execute → verify → outbox → send, and recovery.

One task at a time. Every step that the hub will hear about is first written to :class:`LocalState`. A finished
task's result (``task_complete`` for any outcome the executor produced, success or not; ``task_failed`` when the
sidecar could not produce one, or when a model executor failed because its loop stopped on a guardrail, with that
guardrail's code as the reason) stays in the outbox until the hub acknowledges or refuses it for good.

Recovery: a task still active at start-up was interrupted. After identify the hub is asked (``state_report``)
whether the task is still ours. On ``abort`` it is dropped. On ``continue`` it is re-run in its workspace if its
executor says a re-run is safe (``Executor.is_idempotent``: for shell only with ``metadata.idempotent: true``);
otherwise it is reported as ``task_failed`` with reason ``sidecar_restarted`` and the hub decides whether to retry
it. The same question is asked for a still-running task after every reconnect: the hub may have given it away.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.payloads import Outcome as Verdict
from shared.payloads import TaskResult, Usage, VerificationReport
from shared.protocol import (
    ErrorReply,
    HubMessage,
    StateReportAck,
    TaskAccepted,
    TaskAck,
    TaskAssign,
    TaskCancelled,
    TaskComplete,
    TaskFailed,
    TaskProgress,
    TaskRejected,
)
from sidecar.runtime.connection import HubConnection, HubLink
from sidecar.runtime.executor import STOP_CODES, ExecutorRegistry, Outcome, now_ms, task_timeout_s, tokens_used
from sidecar.runtime.repo import RepoStop, RepoWork, abandon_repo, end_repo, open_repo
from sidecar.runtime.state import ActiveTask, LocalState, OutboxEntry, ResultMessage
from sidecar.runtime.verification import run_verification, timed_out_report
from sidecar.runtime.workspace import Workspaces
from sidecar.sandbox.base import Sandbox
from sidecar.settings import LimitSettings

logger = logging.getLogger(__name__)

EXECUTION_GRACE_S = 30.0
"""Beyond the task's own timeout, the runner cancels an executor that did not stop by itself."""
FINAL_ACKS = frozenset({"complete", "retried", "dead_letter", "duplicate"})
REFUSED_RESULTS = ("task_complete_failed", "task_fail_failed")


class ProgressSink:
    """Sends a task's execution events as ``task_progress`` (dropped while disconnected: progress is not durable)."""

    def __init__(self, link: HubLink, task: TaskAssign) -> None:
        self._link = link
        self._task = task

    async def emit(self, event_type: str, text: str, **fields: Any) -> None:
        """Send one execution event."""
        event = {"event_type": event_type, "text": text, "timestamp": now_ms(), **fields}
        await self._link.send(
            TaskProgress(
                type="task_progress",
                task_id=self._task.task_id,
                generation=self._task.generation,
                execution_event=event,
            )
        )


@dataclass
class Execution:
    task: TaskAssign
    handle: asyncio.Task[None]


class Runner:
    """Owns the active task's execution and the results waiting for the hub."""

    def __init__(
        self,
        *,
        state: LocalState,
        registry: ExecutorRegistry,
        workspaces: Workspaces,
        sandbox: Sandbox,
        link: HubLink,
        limits: LimitSettings,
        repos: RepoWork | None = None,
    ) -> None:
        self.state = state
        self.registry = registry
        self.workspaces = workspaces
        self.sandbox = sandbox
        self.link = link
        self.limits = limits
        self.repos = repos
        self._current: Execution | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._ready = asyncio.Event()
        self._reports: dict[str, asyncio.Future[str]] = {}
        self.finished = self.rejected = self.aborted = 0

    def __repr__(self) -> str:
        active = self.state.active.task.task_id if self.state.active else None
        return (
            f"<Runner active={active} outbox={len(self.state.outbox)} finished={self.finished} "
            f"rejected={self.rejected} aborted={self.aborted}>"
        )

    async def run(self) -> None:
        """Own the executions until cancelled; an active task found in the state is marked as recovering."""
        if self.state.active is not None:
            logger.warning(
                "task %s was active when the sidecar stopped; asking the hub after connect",
                self.state.active.task.task_id,
            )
            self.state.set_status(self.state.active.task.task_id, "recovering")
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._ready.set()
            try:
                await asyncio.Future()  # runs until cancelled; the group then cancels the executions
            finally:
                self._ready.clear()
                self._tg = None

    # --- hub messages -------------------------------------------------------------------------------------------

    async def handle(self, message: HubMessage) -> None:
        """React to one message from the hub (called by the connection's receive loop; must not block long)."""
        await self._ready.wait()
        if isinstance(message, TaskAssign):
            await self._on_assign(message)
        elif isinstance(message, TaskCancelled):
            if self._stop(message.task_id):
                logger.info("task %s cancelled by the hub; command stopped", message.task_id)
        elif isinstance(message, TaskAck):
            self._on_ack(message)
        elif isinstance(message, StateReportAck):
            future = self._reports.get(message.task_id)
            if future is not None and not future.done():
                future.set_result(message.action)
        elif isinstance(message, ErrorReply):
            await self._on_error(message)
        else:
            logger.debug("ignoring %s from the hub", message.type)

    async def on_connected(self, conn: HubConnection) -> None:
        """After identify: resend unacknowledged results, then ask whether the active task is still ours."""
        if self.state.outbox:
            logger.info("resending %d unacknowledged result(s)", len(self.state.outbox))
        for entry in list(self.state.outbox):
            await conn.send(entry.decode())
            self.state.count_send(entry)
        active = self.state.active
        if active is None:
            return
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reports[active.task.task_id] = future
        try:
            # Ask until the hub answers (or the connection drops, which ends this call): an unanswered report would
            # leave the task neither running nor failed until the hub gives up on it.
            for attempt in itertools.count(1):
                await conn.send(active.state_report())
                try:
                    async with asyncio.timeout(self.limits.state_report_timeout_s):
                        action = await asyncio.shield(future)
                    break
                except TimeoutError:
                    logger.warning(
                        "no state_report_ack for task %s (attempt %d); asking again", active.task.task_id, attempt
                    )
        finally:
            self._reports.pop(active.task.task_id, None)
        await self._decide(active, action)

    async def _on_assign(self, task: TaskAssign) -> None:
        active = self.state.active
        if any(e.task_id == task.task_id and e.generation == task.generation for e in self.state.outbox):
            logger.info(
                "task %s generation %d already finished here; resending its result", task.task_id, task.generation
            )
            await self._flush_task(task.task_id)
            return
        if active is not None:
            same_task = active.task.task_id == task.task_id
            if same_task and task.generation == active.task.generation:
                await self.link.send(
                    TaskAccepted(type="task_accepted", task_id=task.task_id, generation=task.generation)
                )
                return  # the hub re-sent the assignment: confirm it, do not run it twice
            if not (same_task and task.generation > active.task.generation):
                self.rejected += 1
                await self.link.send(
                    TaskRejected(type="task_rejected", task_id=task.task_id, generation=task.generation, reason="busy")
                )
                return
            logger.info(
                "task %s handed to us again (generation %d); dropping the older attempt", task.task_id, task.generation
            )
            self._stop(task.task_id)
        self.state.record_active(task)  # write before you say
        await self.link.send(TaskAccepted(type="task_accepted", task_id=task.task_id, generation=task.generation))
        self._start(task)

    def _on_ack(self, ack: TaskAck) -> None:
        if ack.status not in FINAL_ACKS:
            return
        entry = self.state.acknowledge(ack.task_id)
        if entry is not None:
            logger.info("hub acknowledged task %s generation %d: %s", entry.task_id, entry.generation, ack.status)

    async def _on_error(self, error: ErrorReply) -> None:
        if error.task_id and error.error.startswith(REFUSED_RESULTS):
            entry = self.state.acknowledge(error.task_id)
            logger.warning(
                "hub refused the result of task %s (%s); dropped from the outbox", error.task_id, error.error
            )
            if entry is None:
                logger.debug("no outbox entry for task %s", error.task_id)
        elif error.task_id and error.error.startswith("task_accept_failed"):
            logger.warning("hub refused our acceptance of task %s (%s); stopping it", error.task_id, error.error)
            self._stop(error.task_id)
        else:
            logger.warning("hub error: %s %s", error.error, error.detail or "")

    async def _decide(self, active: ActiveTask, action: str) -> None:
        task = active.task
        still = self.state.active
        if still is None or still.task.task_id != task.task_id or still.task.generation != task.generation:
            return  # it finished (or changed) while we waited for the answer
        if action == "abort":
            logger.warning(
                "hub says task %s generation %d is no longer ours; dropping it", task.task_id, task.generation
            )
            self._stop(task.task_id)
            return
        if self._current is not None and self._current.task.task_id == task.task_id:
            return  # still running here: carry on
        executor = self.registry.pick(task)
        if executor.is_idempotent(task):
            logger.info("re-running task %s after a restart (executor %s is idempotent)", task.task_id, executor.name)
            self._start(task)
            return
        logger.warning(
            "task %s was interrupted by a restart and is not safe to re-run; reporting it failed", task.task_id
        )
        await self._finish(
            TaskFailed(
                type="task_failed",
                task_id=task.task_id,
                generation=task.generation,
                reason="sidecar_restarted",
                error="the sidecar restarted while running this task; it was not re-run because it may not be "
                "safe to run twice (set metadata.idempotent to allow it)",
            )
        )

    # --- executions ---------------------------------------------------------------------------------------------

    def _start(self, task: TaskAssign) -> None:
        assert self._tg is not None, "Runner.run() is not running"
        handle = self._tg.create_task(self._execute(task), name=f"task-{task.task_id}")
        self._current = Execution(task, handle)

    def _stop(self, task_id: str) -> bool:
        """Kill the execution of ``task_id`` (if any) and drop it from the state; report nothing.

        The cancelled execution finishes in the runner's TaskGroup (the sandbox kills the command); waiting for it
        here would stall the receive loop, and with it the pongs.
        """
        current = self._current
        if current is not None and current.task.task_id == task_id:
            self._current = None
            current.handle.cancel()
        if self.state.clear_active(task_id):
            self.aborted += 1
            return True
        return False

    async def _execute(self, task: TaskAssign) -> None:
        try:
            message: ResultMessage = await self._attempt(task)
        except asyncio.CancelledError:  # aborted, or the sidecar stops: the task's branch is not held forever
            abandon_repo(self.repos, task)
            raise
        except Exception as exc:  # a bug in an executor must not take the sidecar down with the task
            logger.exception("task %s crashed in the sidecar", task.task_id)
            message = TaskFailed(
                type="task_failed",
                task_id=task.task_id,
                generation=task.generation,
                reason="sidecar_error",
                error=f"{type(exc).__name__}: {exc}"[:2000],
            )
        if self._current is not None and self._current.task is task:
            self._current = None
        await self._finish(message)
        await end_repo(self.repos, task)  # after the result is sent: the mirror's branches are swept

    async def _finish(self, message: ResultMessage) -> None:
        entry = self.state.finish(message)  # result durable and task released, in one write
        self.finished += 1
        await self._send(entry)

    async def _attempt(self, task: TaskAssign) -> ResultMessage:
        self.state.set_status(task.task_id, "running")
        workspace = self.workspaces.create(task)
        executor = self.registry.pick(task)
        try:  # a repository task: its tree at the base commit, the repository's test command as one more check
            session = await open_repo(self.repos, task, workspace)
        except RepoStop as stop:
            return stop.failure
        task_run = session.task if session is not None else task
        started = time.monotonic()
        limit_s = task_timeout_s(task, self.limits.task_timeout_s) + EXECUTION_GRACE_S
        logger.info(
            "task %s generation %d: running with %s in %s", task.task_id, task.generation, executor.name, workspace
        )
        try:
            async with asyncio.timeout(limit_s):
                outcome = await executor.run(task_run, workspace, ProgressSink(self.link, task))
        except TimeoutError:
            outcome = Outcome.failed("timeout", f"execution did not end within {limit_s:g} s; it was stopped")
        details = dict(outcome.details)
        try:  # commit, rebase; the workspace becomes a fresh tree of the commit
            if session is not None and outcome.status == "success":
                details["change"] = await session.finish(workspace)
        except RepoStop as stop:
            return stop.failure
        usage: Usage | None = details.pop("usage", None)
        report: VerificationReport | None
        if "outcome" in details:  # a model executor verified (and fixed) its own work: keep its verdict
            report = details.pop("verification_report", None)
            history = details.pop("verification_history", None) or ([report] if report is not None else [])
            verdict: Verdict = details.pop("outcome")
            attempts = details.pop("verification_attempts", len(history))
        else:
            report = await self._verify(task_run, workspace) if outcome.status == "success" else None
            history = [report] if report is not None else []
            verdict = "failed" if report is None else report.outcome or report.verdict()
            attempts = len(history)
        if session is not None and details.get("change") is not None and verdict == "verified":
            # Publication of a verified change (push, pull request or merge): its one call site.
            details["change"] = await session.publish(details["change"], report)
        result = TaskResult.model_validate(
            {
                **details,
                "status": outcome.status,
                "outcome": verdict,
                "verification_status": verdict,  # its version-1 name, which older hubs read
                "output": outcome.output,
                "exit_code": outcome.exit_code,
                "reason": outcome.reason,
                "error": outcome.error,
                "executor": executor.name,
                "execution_ms": int((time.monotonic() - started) * 1000),
                "verification_attempts": attempts,
            }
        )
        other = self._current.task if self._current is not None and self._current.task is not task else None
        busy = frozenset({self.workspaces.path_for(other)}) if other is not None else frozenset()
        self.workspaces.finished(workspace, succeeded=verdict == "verified", keep=busy)
        logger.info("task %s generation %d: %s outcome=%s", task.task_id, task.generation, outcome.status, verdict)
        stopped = STOP_CODES.get(outcome.reason or "") if outcome.status == "failed" else None
        if stopped is not None:  # the agent loop stopped on a guardrail: the hub records it as the reason
            return TaskFailed(
                type="task_failed",
                task_id=task.task_id,
                generation=task.generation,
                reason=stopped,
                error=(outcome.error or stopped)[:2000],
                result=result,
                usage=usage,
                verification_report=report,
            )
        return TaskComplete(
            type="task_complete",
            task_id=task.task_id,
            generation=task.generation,
            result=result,
            tokens_used=usage.tokens_total if usage is not None else tokens_used(outcome),
            usage=usage,
            verification_report=report,
            verification_history=history,
        )

    async def _verify(self, task: TaskAssign, workspace: Path) -> VerificationReport:
        # A shell command is run once: running it again would not change what the checks find, so
        # max_verification_retries only applies to model executors.
        timeout_s = (task.verification_timeout_ms or 0) / 1000 or self.limits.verification_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await run_verification(
                    task.verification_steps,
                    workspace,
                    self.sandbox,
                    run_number=1,
                    skip=task.skip_verification,
                    default_timeout_s=timeout_s,
                )
        except TimeoutError:
            return timed_out_report(1, timeout_s)

    async def _send(self, entry: OutboxEntry) -> None:
        if await self.link.send(entry.decode()):
            self.state.count_send(entry)

    async def _flush_task(self, task_id: str) -> None:
        for entry in [e for e in self.state.outbox if e.task_id == task_id]:
            await self._send(entry)
