"""``hub.goals``: the backlog with the work that moves goals on (decompose, queue, verify), one unit at a time.

:meth:`GoalService.advance_one` does the most urgent unit of work there is (decompose the next submitted goal, or
verify an executing one whose tasks all ended, or retry a model call that fell due) and says whether it did any;
whoever drives goals (hub/goals/loop.py, or the autonomy FSM) calls it until it says no, then waits for
:meth:`wake` or :meth:`next_due_s`. It never busy-waits: a goal whose model is down carries the time of its next
attempt and is skipped until then.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from hub.clock import Clock
from hub.events import EventBus
from hub.fleet import Fleet
from hub.goals.backlog import BacklogFull, GoalBacklog, GoalNotFound, GoalTransitionError
from hub.goals.dashboard_view import goals_view
from hub.goals.decompose import DecompositionInvalid, decompose
from hub.goals.model import Goal, GoalStatus, PlannedTask, Source
from hub.goals.model_client import BudgetRefused, ModelClient, ModelUnavailable
from hub.goals.repo_context import RepoUnavailable, file_tree
from hub.goals.verify import Verdict, model_verdict, retry_failed
from hub.queue import TaskQueue
from hub.repos.registry import RepoRegistry
from hub.settings import HubSettings
from hub.store import Store
from hub.task_submit import TaskSubmit
from hub.tasks import LIVE, Task, new_task_id

logger = logging.getLogger(__name__)

__all__ = ["BacklogFull", "GoalNotFound", "GoalService", "GoalTransitionError"]


class HubParts(Protocol):
    """What goals use of the hub (:class:`hub.hub.Hub` has them all)."""

    settings: HubSettings
    store: Store
    clock: Clock
    bus: EventBus
    queue: TaskQueue
    fleet: Fleet
    repos: RepoRegistry


class GoalService:
    def __init__(self, hub: HubParts) -> None:
        self._hub = hub
        self._settings = hub.settings
        self.backlog = GoalBacklog(hub.store, hub.clock, hub.settings.goal_max_open, hub.settings.goal_keep_final)
        self.backlog.on_change = lambda: hub.bus.publish(goals_view(self))
        self.model = ModelClient(hub.settings)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.n_units = 0
        """Units of work done (calls of :meth:`advance_one` that returned True)."""
        self.n_passes = 0
        """Calls of :meth:`advance_one`, with work or without."""

    def __repr__(self) -> str:
        return f"<GoalService {self.backlog!r} units={self.n_units}>"

    async def load(self) -> None:
        await self.backlog.load(self._hub.queue.tasks)

    # --- the backlog's API ------------------------------------------------------------------------------------

    async def submit(
        self,
        description: str,
        *,
        repo: str | None = None,
        priority: int = 2,
        checks: list[str] | None = None,
        source: Source = "api",
        submitted_by: str | None = None,
    ) -> Goal:
        """Add a goal (raises ``ValidationError`` on bad fields) and wake the driver."""
        goal = await self.backlog.submit(
            description, repo=repo, priority=priority, checks=checks, source=source, submitted_by=submitted_by
        )
        self.wake()
        return goal

    def get(self, goal_id: str) -> Goal:
        return self.backlog.get(goal_id)

    def repo_of(self, goal_id: str) -> str | None:
        """The repository of goal ``goal_id``, None if it has none or there is no such goal."""
        try:
            return self.backlog.get(goal_id).repo
        except GoalNotFound:
            return None

    def list_goals(self, status: GoalStatus | None = None) -> list[Goal]:
        return self.backlog.list_goals(status)

    def view(self) -> dict[str, Any]:
        """The dashboard's Goals panel (hub/goals/dashboard_view.py)."""
        return goals_view(self)

    def task(self, task_id: str) -> Task | None:
        return self._hub.queue.tasks.get(task_id)

    def pending(self) -> list[Goal]:
        return self.backlog.pending()

    def active(self) -> list[Goal]:
        return self.backlog.active()

    async def cancel(self, goal_id: str, by: str | None = None) -> Goal:
        """Fail the goal as cancelled and cancel its live tasks; raises ``GoalNotFound``/``GoalTransitionError``."""
        goal = self.backlog.get(goal_id)
        if goal.final:
            raise GoalTransitionError(goal, GoalStatus.FAILED)
        await self.backlog.transition(goal, GoalStatus.FAILED, f"cancelled by {by or 'unknown'}", retry_at=None)
        for task_id in goal.task_ids:
            task = self._hub.queue.tasks.get(task_id)
            if task is not None and task.status in LIVE:
                _, agent_id = await self._hub.queue.cancel(task_id, by=by)
                if agent_id is not None:
                    await self._hub.fleet.cancel_on_agent(agent_id, task_id)
        return goal

    def dag(self, goal: Goal) -> list[dict[str, Any]]:
        """The goal's tasks, in order, with their dependencies and statuses."""
        out: list[dict[str, Any]] = []
        for task_id in goal.task_ids:
            task = self._hub.queue.tasks.get(task_id)
            if task is None:
                out.append({"task_id": task_id, "status": "forgotten", "depends_on": []})
            else:
                out.append(
                    {
                        "task_id": task.id,
                        "description": task.description[:500],
                        "status": str(task.status),
                        "outcome": task.outcome,
                        "depends_on": list(task.depends_on),
                        "assigned_to": task.assigned_to,
                    }
                )
        return out

    # --- driving ----------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something may be workable now (a goal submitted, a goal's task ended)."""
        self._wake.set()

    async def wait_for_work(self) -> None:
        """Sleep until woken, or until the next model retry falls due (forever when none is waiting)."""
        due = self.next_due_s()
        try:
            async with asyncio.timeout(due):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    def next_due_s(self) -> float | None:
        """Seconds until the earliest waiting goal may try its model again; None when no goal waits."""
        times = [
            g.retry_at
            for g in self.backlog.goals.values()
            if g.retry_at is not None and g.status in (GoalStatus.SUBMITTED, GoalStatus.VERIFYING)
        ]
        return max(0.0, (min(times) - self._hub.clock.now_ms()) / 1000) if times else None

    def _due(self, goal: Goal) -> bool:
        return goal.retry_at is None or goal.retry_at <= self._hub.clock.now_ms()

    async def advance_one(self) -> bool:
        """Do one unit of work on the most urgent goal that has one; whether there was one."""
        self.n_passes += 1
        async with self._lock:
            await self.backlog.save_settled()
            done = await self._advance()
        self.n_units += done
        return done

    async def _advance(self) -> bool:
        for goal in self.backlog.pending():
            if self._due(goal):
                await self._decompose(goal)
                return True
        for goal in self.backlog.active():
            if goal.status is GoalStatus.VERIFYING and self._due(goal):
                await self._verify(goal, self._round(goal))
                return True
            if goal.status is GoalStatus.EXECUTING:
                tasks = self._round(goal)
                if not any(t is not None and t.status in LIVE for t in tasks):
                    await self.backlog.transition(goal, GoalStatus.VERIFYING, f"all {len(tasks)} tasks ended")
                    await self._verify(goal, tasks)
                    return True
        return False

    def _round(self, goal: Goal) -> list[Task | None]:
        """The tasks of the goal's latest round (the last ``len(plan)`` it queued), None for one forgotten."""
        ids = goal.task_ids[len(goal.task_ids) - len(goal.plan) :] if goal.plan else []
        return [self._hub.queue.tasks.get(t) for t in ids]

    async def _decompose(self, goal: Goal) -> None:
        await self.backlog.transition(goal, GoalStatus.DECOMPOSING, "decomposing", retry_at=None)
        try:
            tree = None
            if goal.repo is not None:
                spec = self._hub.repos.get(goal.repo)
                if spec is None:
                    raise RepoUnavailable(f"the repository {goal.repo!r} is no longer registered")
                tree = await file_tree(self._settings.data_dir, spec.url, self._settings.goal_git_timeout_s)
            plan = await decompose(self.model, goal, tree, self._settings.goal_tree_max_files)
        except (ModelUnavailable, RepoUnavailable) as exc:
            what = "no model answered" if isinstance(exc, ModelUnavailable) else "repository unavailable"
            if goal.status is not GoalStatus.DECOMPOSING:
                return
            if isinstance(exc, BudgetRefused):
                await self._over_budget(goal, exc, GoalStatus.SUBMITTED, GoalStatus.FAILED)
            else:
                await self._wait_or_give_up(goal, f"{what}: {exc}", GoalStatus.SUBMITTED, GoalStatus.FAILED)
            return
        except DecompositionInvalid as exc:
            if goal.status is GoalStatus.DECOMPOSING:
                await self.backlog.transition(goal, GoalStatus.FAILED, str(exc), model_failures=0)
            return
        if goal.status is GoalStatus.DECOMPOSING:  # not cancelled meanwhile
            await self._queue_round(goal, plan, f"decomposed into {len(plan)} tasks", rounds=0)

    async def _verify(self, goal: Goal, tasks: list[Task | None]) -> None:
        verdict: Verdict | None = retry_failed(goal.plan, tasks)
        if verdict is None:
            try:
                verdict = await model_verdict(self.model, goal, tasks, self._settings.goal_diff_max_chars)
            except ModelUnavailable as exc:
                if goal.status is not GoalStatus.VERIFYING:
                    return
                if isinstance(exc, BudgetRefused):
                    await self._over_budget(goal, exc, GoalStatus.VERIFYING, GoalStatus.NEEDS_HUMAN_REVIEW)
                else:
                    await self._wait_or_give_up(
                        goal, f"no model answered: {exc}", GoalStatus.VERIFYING, GoalStatus.NEEDS_HUMAN_REVIEW
                    )
                return
        if goal.status is not GoalStatus.VERIFYING:  # cancelled meanwhile
            return
        goal.model_failures, goal.retry_at, goal.verdict = 0, None, verdict.reason
        if verdict.complete:
            await self.backlog.transition(goal, GoalStatus.COMPLETE, f"verified: {verdict.reason}")
        elif not verdict.followups:
            await self.backlog.transition(
                goal, GoalStatus.NEEDS_HUMAN_REVIEW, f"not verified and no follow-up proposed: {verdict.reason}"
            )
        elif goal.rounds >= self._settings.goal_rounds:
            await self.backlog.transition(
                goal,
                GoalStatus.NEEDS_HUMAN_REVIEW,
                f"still not verified after {goal.rounds} follow-up rounds: {verdict.reason}",
            )
        else:
            await self._queue_round(
                goal, verdict.followups, f"follow-up round {goal.rounds + 1}: {verdict.reason}", goal.rounds + 1
            )

    async def _over_budget(self, goal: Goal, exc: BudgetRefused, back: GoalStatus, final: GoalStatus) -> None:
        """A budget refused the goal's model call, and asking again sooner changes nothing: a period budget (a hub
        state's hour or day) waits for its period's end (not a model failure: the attempts are kept); a stopping
        budget without a period (the goal's own) ends the goal at once with the budget's reason; any other refusal
        (a pausing goal budget, which a higher limit may lift; too many reservations) waits with backoff."""
        reason = f"over budget: {exc}"
        if exc.period_end_ms is not None:
            until = datetime.fromtimestamp(exc.period_end_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
            await self._wait_until(goal, back, exc.period_end_ms, f"waiting until {until}, {reason}")
        elif exc.stops:
            await self.backlog.transition(goal, final, reason, retry_at=None)
        else:
            await self._wait_or_give_up(goal, reason, back, final)

    async def _wait_until(
        self, goal: Goal, back: GoalStatus, retry_at: int, why: str, failures: int | None = None
    ) -> None:
        """Put the goal back to ``back`` (verifying goes on verifying: noted without a move) until ``retry_at``."""
        failures = goal.model_failures if failures is None else failures
        if back is goal.status:
            goal.model_failures, goal.retry_at, goal.reason = failures, retry_at, why
            await self.backlog.save(goal)
        else:
            await self.backlog.transition(goal, back, why, model_failures=failures, retry_at=retry_at)

    async def _wait_or_give_up(self, goal: Goal, reason: str, back: GoalStatus, final: GoalStatus) -> None:
        """The model (or the repository) is unavailable: wait with backoff, or give up after the attempts."""
        failures = goal.model_failures + 1
        if failures >= self._settings.goal_model_attempts:
            await self.backlog.transition(
                goal, final, f"{reason} (gave up after {failures} attempts)", model_failures=failures, retry_at=None
            )
            return
        backoff = self._settings.goal_model_backoff_s
        delay = backoff[min(failures, len(backoff)) - 1] if backoff else 0.0
        retry_at = self._hub.clock.now_ms() + int(delay * 1000)
        await self._wait_until(goal, back, retry_at, f"waiting {delay:g}s for a model: {reason}", failures)

    async def _queue_round(self, goal: Goal, plan: list[PlannedTask], reason: str, rounds: int) -> None:
        """Queue ``plan`` as the goal's next round of tasks (ids recorded on the goal before they are queued)."""
        now = self._hub.clock.now_ms()
        ids = [new_task_id() for _ in plan]
        try:
            tasks = []
            for task_id, planned in zip(ids, plan, strict=True):
                body = TaskSubmit.model_validate(
                    {
                        "description": planned.description,
                        "priority": goal.priority,
                        "depends_on": [ids[d] for d in planned.depends_on],
                        "file_hints": [{"path": f} for f in planned.files],
                        "success_criteria": planned.verification,
                        "repo": goal.repo,
                        "goal_id": goal.id,
                        "metadata": {"goal_round": rounds},
                    }
                )
                tasks.append(body.to_task(goal.submitted_by or "hub", now, task_id=task_id))
        except ValidationError as exc:
            await self.backlog.transition(goal, GoalStatus.FAILED, f"a planned task is not a valid task: {exc}"[:2000])
            return
        goal.task_ids, goal.plan = [*goal.task_ids, *ids], plan
        await self.backlog.save(goal)

        async def scheduled(_: str) -> None:
            self._hub.fleet.scheduler.wake()

        await self._hub.queue.submit_many(tasks, on_applied=scheduled)
        await self.backlog.transition(goal, GoalStatus.EXECUTING, reason, rounds=rounds, model_failures=0)
