"""The goal record: what was asked, where it stands, and why it got there."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.fields import NoControl

GOAL_KIND = "goal"
"""Record kind of goals in the store."""
MAX_HISTORY = 100
"""History entries kept per goal (oldest dropped)."""

Source = Literal["api", "cli", "dashboard", "webhook", "scanner", "healing"]
"""Where a goal came from: a person (api, cli, dashboard), a GitHub event, or the hub itself (scanner, healing)."""
Description = Annotated[str, Field(min_length=1, max_length=4000)]


def _no_credentials(value: str) -> str:
    """A repository reference never carries a password (it would reach records, tasks and logs)."""
    if "://" in value and urlsplit(value).password is not None:
        raise ValueError("a repository URL may not carry a password; give the hub's registered name or a plain URL")
    if value.startswith("-"):
        raise ValueError("a repository reference may not start with '-'")
    return value


RepoRef = Annotated[str, Field(min_length=1, max_length=512), NoControl, AfterValidator(_no_credentials)]
Check = Annotated[str, Field(min_length=1, max_length=1000)]
Reason = Annotated[str, Field(max_length=2000)]


class GoalStatus(StrEnum):
    SUBMITTED = "submitted"
    DECOMPOSING = "decomposing"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    COMPLETE = "complete"
    FAILED = "failed"
    NEEDS_HUMAN_REVIEW = "needs_human_review"


FINAL = frozenset({GoalStatus.COMPLETE, GoalStatus.FAILED, GoalStatus.NEEDS_HUMAN_REVIEW})
ACTIVE = frozenset({GoalStatus.DECOMPOSING, GoalStatus.EXECUTING, GoalStatus.VERIFYING})

TRANSITIONS: dict[GoalStatus, frozenset[GoalStatus]] = {
    GoalStatus.SUBMITTED: frozenset({GoalStatus.DECOMPOSING, GoalStatus.FAILED}),
    GoalStatus.DECOMPOSING: frozenset({GoalStatus.SUBMITTED, GoalStatus.EXECUTING, GoalStatus.FAILED}),
    GoalStatus.EXECUTING: frozenset({GoalStatus.VERIFYING, GoalStatus.FAILED}),
    GoalStatus.VERIFYING: frozenset(
        {GoalStatus.EXECUTING, GoalStatus.COMPLETE, GoalStatus.FAILED, GoalStatus.NEEDS_HUMAN_REVIEW}
    ),
    GoalStatus.COMPLETE: frozenset(),
    GoalStatus.FAILED: frozenset(),
    GoalStatus.NEEDS_HUMAN_REVIEW: frozenset(),
}
"""Allowed moves; a final status allows none."""


class PlannedTask(BaseModel):
    """One task of a decomposition, as the model proposed it and the hub accepted it."""

    model_config = ConfigDict(extra="ignore")

    description: Annotated[str, Field(min_length=1, max_length=4000)]
    depends_on: list[int] = []
    """Indices of earlier tasks of the same plan."""
    files: list[Annotated[str, Field(max_length=1024)]] = []
    verification: list[Check] = []


class HistoryEntry(BaseModel):
    at: int
    status: GoalStatus
    reason: Reason = ""


class Goal(BaseModel):
    """A goal as stored (``PutRecord`` kind ``goal``) and as the API shows it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    description: Description
    repo: RepoRef | None = None
    priority: Annotated[int, Field(ge=0, le=3)] = 2
    checks: list[Check] = []
    """What the person asking counts as done, shown to the model decomposing and verifying the goal."""
    status: GoalStatus = GoalStatus.SUBMITTED
    source: Source = "api"
    submitted_by: str | None = None
    task_ids: list[str] = []
    """Every task queued for the goal, over all rounds, in order."""
    plan: list[PlannedTask] = []
    """The tasks of the latest round, as decomposed (or as follow-ups)."""
    rounds: int = 0
    """Follow-up rounds queued so far."""
    model_failures: int = 0
    """Model calls in a row that found no model (reset on any answer)."""
    retry_at: int | None = None
    """Not before this time (ms) is the goal's next model call made."""
    reason: Reason = ""
    """Why it is where it is (the last transition's reason)."""
    verdict: Reason | None = None
    """The last verification's verdict."""
    created_at: int
    updated_at: int
    history: list[HistoryEntry] = []

    @property
    def final(self) -> bool:
        return self.status in FINAL
