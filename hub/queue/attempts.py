"""The end of an attempt in the task queue: a reported result (completed, or failed by its own checks), a failure
the agent reports, or a reclaim the hub decides (lost, timed out, stuck); each retries the task or dead-letters it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hub import lifecycle as L
from hub import tasks as T
from hub.queue.commits import OnApplied, Told
from hub.queue.dead_letter import DeadLetters
from hub.tasks import EndReason, Task, TaskStatus, TransitionError
from shared.payloads import Payload, TaskResult, Usage, VerificationReport

logger = logging.getLogger("hub.queue")  # the queue's log lines keep one name, whichever part writes them


def _stored(payload: Payload | None) -> dict[str, Any] | None:
    """A reported payload as the task record keeps it: the fields the sidecar sent, unknown ones left out."""
    return None if payload is None else payload.model_dump(mode="json", exclude_unset=True)


def _stored_report(report: VerificationReport) -> dict[str, Any]:
    """A verification report as the task record keeps it, its ``outcome`` the one its checks show."""
    return {**report.model_dump(mode="json", exclude_unset=True), "outcome": report.verdict()}


class AttemptEnds(DeadLetters):
    """Attempt endings, for :class:`hub.queue.TaskQueue` (which sets ``backoff``)."""

    backoff: Callable[[int], int]

    async def complete(
        self,
        task_id: str,
        agent_id: str,
        generation: int,
        result: TaskResult,
        *,
        tokens_used: int | None = None,
        usage: Usage | None = None,
        verification_report: VerificationReport | None = None,
        verification_history: list[VerificationReport] | None = None,
        on_applied: OnApplied | None = None,
    ) -> str:
        """Record a reported result; returns the ack status (``complete``, ``retried`` or ``dead_letter``).

        The outcome is the sidecar's, held to the facts (:func:`hub.tasks.outcome_of`); a ``failed`` one ends the
        attempt as a failure (``verification_failed``, or ``agent_error`` when the run itself failed).
        """
        task = self.get(task_id)
        if task.status is TaskStatus.COMPLETED and task.generation == generation and task.assigned_to == agent_id:
            return "complete"  # the same report again (after a reconnect): already recorded
        outcome = T.outcome_of(result, verification_report)
        claimed = T.claimed_outcome(result, verification_report)
        if claimed is not None and claimed != outcome:
            logger.warning(
                "task %s: reported outcome %s does not match its checks; recording %s", task_id, claimed, outcome
            )
        stored = result.model_dump(mode="json", exclude_unset=True)
        report = None if verification_report is None else _stored_report(verification_report)
        history = None if verification_history is None else [_stored_report(r) for r in verification_history]
        used = tokens_used if tokens_used is not None or usage is None else usage.tokens_total
        if outcome == "failed":
            T.require_status(task, T.IN_FLIGHT)  # the same checks, in the same order, as a successful report
            T.check_generation(task, generation)
            if task.assigned_to != agent_id:
                raise TransitionError("not_assigned_to_you")
            reason = EndReason.AGENT_ERROR if result.failed else EndReason.VERIFICATION_FAILED
            task.verification_report, task.verification_history = report, history
            task.usage = _stored(usage)
            error = str(result.error or result.output or "reported failure")[:500]
            ack = await self._end(task, reason, error, result=stored, on_applied=on_applied)
            logger.info(
                "task %s %s outcome=failed reason=%s agent=%s generation=%d", task_id, ack, reason, agent_id, generation
            )
            return ack
        now = self._clock.now_ms()
        T.complete(
            task,
            agent_id,
            generation,
            stored,
            outcome,
            now,
            tokens_used=used,
            verification_report=report,
            verification_history=history,
            usage=_stored(usage),
        )
        told = self._ended(
            task,
            "completed",
            outcome,
            None,
            agent_id,
            T.attempt(task),
            generation,
            task.usage or L.usage_of(stored, used),
        )
        committed = self._persist([task], [told])
        logger.info("task %s completed outcome=%s agent=%s generation=%d", task_id, outcome, agent_id, generation)
        if on_applied is not None:
            await on_applied("complete")
        await committed
        return "complete"

    async def fail(
        self,
        task_id: str,
        agent_id: str,
        generation: int,
        error: str,
        result: TaskResult | None = None,
        on_applied: OnApplied | None = None,
        *,
        usage: Usage | None = None,
        verification_report: VerificationReport | None = None,
        reason: EndReason = EndReason.AGENT_ERROR,
    ) -> str:
        """Record that the agent could not produce a result: the attempt ends as ``reason`` (``agent_error``, or
        the guardrail that stopped its loop)."""
        task = self.get(task_id)
        T.require_status(task, T.IN_FLIGHT)
        T.check_generation(task, generation)
        if task.assigned_to != agent_id:
            raise TransitionError("not_assigned_to_you")
        if usage is not None:
            task.usage = _stored(usage)
        if verification_report is not None:
            task.verification_report = _stored_report(verification_report)
        stored = None if result is None else result.model_dump(mode="json", exclude_unset=True)
        ack = await self._end(task, reason, error, result=stored, on_applied=on_applied)
        logger.info(
            "task %s %s outcome=failed reason=%s agent=%s generation=%d",
            task_id,
            ack,
            reason,
            agent_id,
            generation,
        )
        return ack

    async def reclaim(
        self,
        task_id: str,
        reason: EndReason,
        error: str,
        generation: int | None = None,
        on_applied: OnApplied | None = None,
    ) -> str:
        """End an in-flight attempt for a reason the agent did not report (lost, timed out, stuck, rejected)."""
        task = self.get(task_id)
        T.check_generation(task, generation)
        return await self._end(task, reason, error, on_applied=on_applied)

    async def _end(
        self,
        task: Task,
        reason: EndReason,
        error: str,
        result: dict[str, Any] | None = None,
        on_applied: OnApplied | None = None,
    ) -> str:
        now = self._clock.now_ms()
        agent_id, attempt, generation = task.assigned_to, T.attempt(task), task.generation
        status = T.end_attempt(task, reason, error, now, result=result, backoff_ms=self.backoff(task.retry_count + 1))
        changed = [task]
        events = [
            self._ended(
                task,
                status,
                "failed",
                reason,
                agent_id,
                attempt,
                generation,
                task.usage or L.usage_of(result),
                error[:500],
            )
        ]
        if status == "dead_letter":
            cascaded = self._cascade(task, now)
            changed += cascaded
            events += self._cascaded(cascaded, task)
        committed = self._persist(changed, events)
        if on_applied is not None:
            await on_applied(status)
        await committed
        return status

    def _ended(
        self,
        task: Task,
        then: str,
        outcome: str,
        reason: EndReason | None,
        agent_id: str | None,
        attempt: int,
        generation: int,
        usage: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Told:
        return self._told(
            L.TaskEnded,
            task,
            outcome=outcome,
            reason=None if reason is None else str(reason),
            then=then,
            agent_id=agent_id,
            generation=generation,
            attempt=attempt,
            usage=usage,
            error=error,
        )
