"""``/api/goals``: submit a goal in a sentence, list goals, read one with its task DAG, cancel one.

``POST /api/goals`` ``{description, repo?, priority?, checks?, source?}`` answers 201 with the goal; bad fields (and
hostile JSON: lone surrogates, NaN, deep nesting) are a 422 naming them. Writers (admin, agent tokens) submit and
cancel; any token reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.auth import Principal
from hub.goals.backlog import BacklogFull, GoalNotFound, GoalTransitionError
from hub.goals.model import Check, Goal, GoalStatus, RepoRef
from hub.http import ApiError, any_role, hub_of, parse_body, writer
from hub.task_submit import PriorityName
from hub.tasks import Priority

router = APIRouter()
_CONTROL = frozenset(chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127))


class GoalSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    description: Annotated[str, Field(min_length=1, max_length=4000)]
    repo: RepoRef | None = None
    priority: PriorityName | Annotated[int, Field(ge=0, le=3)] = "normal"
    checks: Annotated[list[Check], Field(max_length=20)] = []
    source: Literal["api", "cli", "dashboard"] = "api"

    @field_validator("description")
    @classmethod
    def _plain_text(cls, v: str) -> str:
        """Text a person wrote: not blank, no control characters but tabs and newlines."""
        if not v.strip():
            raise ValueError("the description is blank")
        if any(c in _CONTROL for c in v):
            raise ValueError("control characters are not allowed (tabs and newlines are)")
        return v.strip()

    def priority_value(self) -> int:
        return self.priority if isinstance(self.priority, int) else Priority[self.priority.upper()].value


def view(goal: Goal, dag: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = goal.model_dump(mode="json", exclude={"plan"})
    if dag is not None:
        done = sum(t["status"] == "completed" for t in dag)
        out["tasks"] = dag
        out["progress"] = {"completed": done, "total": len(dag), "fraction": round(done / len(dag), 3) if dag else 0.0}
    return out


def _goal(request: Request, goal_id: str) -> Goal:
    try:
        return hub_of(request).goals.get(goal_id)
    except GoalNotFound:
        raise ApiError(404, "not_found", detail=f"no goal {goal_id[:128]!r}") from None


@router.post("/api/goals", status_code=201)
async def submit_goal(request: Request, who: Principal = Depends(writer)) -> JSONResponse:
    body = await parse_body(request, GoalSubmit)
    hub = hub_of(request)
    repo = body.repo
    if repo is not None and hub.repos.get(repo) is None:  # only registered repositories: never a raw path or URL
        raise ApiError(
            422, "unknown_repo", field="repo", repo=repo[:128], detail="no such repository: register it at /api/repos"
        )
    if repo is None and (registered := hub.repos.list()):
        repo = registered[0].name  # the top-priority repository, as for tasks
    try:
        goal = await hub.goals.submit(
            body.description,
            repo=repo,
            priority=body.priority_value(),
            checks=body.checks,
            source=body.source,
            submitted_by=who.agent_id,
        )
    except BacklogFull as exc:
        raise ApiError(503, "backlog_full", detail=str(exc)) from None
    return JSONResponse(view(goal), status_code=201)


@router.get("/api/goals")
async def list_goals(
    request: Request,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    _: Principal = Depends(any_role),
) -> dict[str, Any]:
    """Goals (of ``status``), newest first, at most ``limit``, each with its task DAG; ``count`` counts them all."""
    wanted = None
    if status:
        try:
            wanted = GoalStatus(status)
        except ValueError:
            raise ApiError(
                422,
                "validation_failed",
                errors=[{"field": "status", "error": "invalid_value", "detail": ", ".join(GoalStatus)}],
            ) from None
    goals = hub_of(request).goals
    matching = goals.list_goals(wanted)
    return {"goals": [view(g, goals.dag(g)) for g in matching[:limit]], "count": len(matching)}


@router.get("/api/goals/{goal_id}")
async def get_goal(goal_id: str, request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    goal = _goal(request, goal_id)
    return view(goal, hub_of(request).goals.dag(goal))


@router.post("/api/goals/{goal_id}/cancel")
async def cancel_goal(goal_id: str, request: Request, who: Principal = Depends(writer)) -> dict[str, Any]:
    goal = _goal(request, goal_id)
    try:
        await hub_of(request).goals.cancel(goal.id, by=who.agent_id)
    except GoalTransitionError:
        raise ApiError(
            409, "invalid_transition", detail=f"goal is already {goal.status}", goal_status=str(goal.status)
        ) from None
    return view(goal, hub_of(request).goals.dag(goal))
