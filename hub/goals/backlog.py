"""The goal backlog: every goal in memory, each change durable before it is answered, transitions guarded.

Goals are ordered for work by priority (0 urgent .. 3 low), then age. After a restart, a goal caught in
``decomposing`` goes on to ``executing`` when its tasks were already queued (they are queued in one commit, with ids
the goal recorded before) and back to ``submitted`` otherwise; one caught in ``verifying`` goes back to
``executing``, to be verified again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Collection
from typing import Any

from pydantic import ValidationError

from hub.clock import Clock
from hub.goals.model import (
    ACTIVE,
    GOAL_KIND,
    MAX_HISTORY,
    TRANSITIONS,
    Goal,
    GoalStatus,
    HistoryEntry,
    Source,
)
from hub.store import Store
from hub.store.records import DeleteRecord, PutRecord, RecordRow

logger = logging.getLogger(__name__)


class GoalNotFound(Exception):
    pass


class BacklogFull(Exception):
    """As many goals as allowed are open (not final)."""


class GoalTransitionError(Exception):
    """A move the goal's status does not allow (``code`` is the API's error code)."""

    def __init__(self, goal: Goal, to: GoalStatus) -> None:
        super().__init__(f"goal {goal.id} is {goal.status}; it cannot become {to}")
        self.code = "invalid_transition"


def new_goal_id() -> str:
    return "goal-" + secrets.token_hex(8)


class GoalBacklog:
    def __init__(self, store: Store, clock: Clock, max_open: int = 1000, keep_final: int = 1000) -> None:
        self._store = store
        self.max_open = max_open
        self.keep_final = keep_final
        self._clock = clock
        self.goals: dict[str, Goal] = {}
        self.n_unreadable = 0
        self._unsaved: list[Goal] = []
        self.on_change: Callable[[], None] = lambda: None
        """Called after every durable change (the service publishes the dashboard's view)."""
        self.changed = asyncio.Condition()
        """Notified after every durable change (tests and the loop wait on it; never polled)."""

    def __repr__(self) -> str:
        return f"<GoalBacklog goals={len(self.goals)}>"

    async def load(self, known_task_ids: Collection[str]) -> None:
        """Read every stored goal; settle the ones a restart caught in the middle of a step (module docstring), in
        memory: :meth:`save_settled` stores them once the store's writer runs."""
        settled: list[Goal] = []
        for row in await self._store.load_records(GOAL_KIND):
            try:
                goal = Goal.model_validate_json(row.body)
            except ValidationError:
                self.n_unreadable += 1
                logger.error("goal record %r is unreadable; left in the store untouched", row.key[:128])
                continue
            self.goals[goal.id] = goal
            if goal.status is GoalStatus.DECOMPOSING:
                if goal.task_ids and all(t in known_task_ids for t in goal.task_ids):
                    self._move(goal, GoalStatus.EXECUTING, "hub restarted after the tasks were queued")
                else:
                    goal.task_ids = [t for t in goal.task_ids if t in known_task_ids]
                    self._move(goal, GoalStatus.SUBMITTED, "hub restarted during decomposition")
                settled.append(goal)
            elif goal.status is GoalStatus.VERIFYING:
                self._move(goal, GoalStatus.EXECUTING, "hub restarted during verification", force=True)
                settled.append(goal)
        self._unsaved = settled

    async def save_settled(self) -> None:
        """Store what :meth:`load` settled (it runs before the store's writer does, so it cannot write itself)."""
        settled, self._unsaved = self._unsaved, []
        if settled:
            await self._store.write([self._row(g) for g in settled])

    # --- reads ------------------------------------------------------------------------------------------------

    def get(self, goal_id: str) -> Goal:
        goal = self.goals.get(goal_id)
        if goal is None:
            raise GoalNotFound(goal_id)
        return goal

    def list_goals(self, status: GoalStatus | None = None) -> list[Goal]:
        """Goals (of ``status``), newest first."""
        goals = [g for g in self.goals.values() if status is None or g.status is status]
        return sorted(goals, key=lambda g: (-g.created_at, g.id))

    def pending(self) -> list[Goal]:
        """Submitted goals in the order they are worked on: priority, then age."""
        goals = [g for g in self.goals.values() if g.status is GoalStatus.SUBMITTED]
        return sorted(goals, key=lambda g: (g.priority, g.created_at, g.id))

    def active(self) -> list[Goal]:
        """Goals being decomposed, executed or verified, in work order."""
        goals = [g for g in self.goals.values() if g.status in ACTIVE]
        return sorted(goals, key=lambda g: (g.priority, g.created_at, g.id))

    # --- changes ----------------------------------------------------------------------------------------------

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
        """Add a goal (validated like an API body; raises ``ValidationError``, or :class:`BacklogFull` past
        ``max_open`` open goals); durable on return."""
        if sum(not g.final for g in self.goals.values()) >= self.max_open:
            raise BacklogFull(f"{self.max_open} goals are open; wait for some to finish")
        now = self._clock.now_ms()
        goal = Goal(
            id=new_goal_id(),
            description=description,
            repo=repo,
            priority=priority,
            checks=checks or [],
            source=source,
            submitted_by=submitted_by,
            created_at=now,
            updated_at=now,
            history=[HistoryEntry(at=now, status=GoalStatus.SUBMITTED, reason=f"submitted via {source}")],
            reason=f"submitted via {source}",
        )
        self.goals[goal.id] = goal
        await self.save(goal)
        return goal

    async def transition(self, goal: Goal, to: GoalStatus, reason: str, **updates: Any) -> Goal:
        """Move ``goal`` to ``to`` (guarded by the transition table), apply ``updates``; durable on return."""
        self._move(goal, to, reason)
        for name, value in updates.items():
            setattr(goal, name, value)
        await self.save(goal)
        return goal

    async def save(self, goal: Goal) -> None:
        """Store the goal as it is now, then tell whoever waits."""
        goal.updated_at = max(goal.updated_at, self._clock.now_ms())
        await self._store.write([self._row(goal), *(self._prune_final(goal) if goal.final else [])])
        self.on_change()
        async with self.changed:
            self.changed.notify_all()

    def _move(self, goal: Goal, to: GoalStatus, reason: str, force: bool = False) -> None:
        if not force and to not in TRANSITIONS[goal.status]:
            raise GoalTransitionError(goal, to)
        now = self._clock.now_ms()
        goal.status, goal.reason, goal.updated_at = to, reason[:2000], max(goal.updated_at, now)
        goal.history.append(HistoryEntry(at=now, status=to, reason=reason[:2000]))
        del goal.history[:-MAX_HISTORY]

    def _prune_final(self, keep: Goal) -> list[DeleteRecord]:
        """Forget the oldest finished goals beyond ``keep_final`` (never ``keep``, the one just finished)."""
        final = [g for g in self.goals.values() if g.final and g is not keep]
        excess = len(final) + 1 - self.keep_final
        if excess <= 0:
            return []
        doomed = sorted(final, key=lambda g: g.updated_at)[:excess]  # stable: ties go in order of submission
        for goal in doomed:
            del self.goals[goal.id]
        return [DeleteRecord(GOAL_KIND, g.id) for g in doomed]

    def _row(self, goal: Goal) -> PutRecord:
        return PutRecord(RecordRow(GOAL_KIND, goal.id, goal.updated_at, goal.model_dump_json()))
