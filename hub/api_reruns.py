"""``POST /api/tasks/{id}/rerun``: run a finished task again, as a new task linked to it.

The new task copies what the original was asked to do (description, priority, metadata, capabilities, checks,
repository, executor, goal...) and starts with a fresh retry budget; it is submitted by the caller, through the same
placement and depth checks as ``POST /api/tasks``, and names its original in ``rerun_of``. Its dependencies and
deadline are not copied (they were met, or passed, by the original). The original is left as it is. Only a
finished task (completed, dead-letter, cancelled) can be re-run: a live one is 409 ``invalid_state``; only an admin
or the original's submitter may re-run it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hub.api_tasks import _may_steer, _place, _queue, _task
from hub.auth import Principal
from hub.costs.quotas import stamp_depth
from hub.http import ApiError, hub_of, parse_body, writer
from hub.task_submit import Identifier, PriorityName, TaskSubmit
from hub.tasks import FINAL, Task, link_rerun

router = APIRouter()

COPIED = (
    "description",
    "metadata",
    "needed_capabilities",
    "max_retries",
    "assign_to",
    "complexity_tier",
    "success_criteria",
    "verification_steps",
    "file_hints",
    "repo",
    "branch",
    "goal_id",
    "executor",
    "skip_verification",
    "verification_timeout_ms",
    "max_verification_retries",
)
"""What a re-run takes from its original (as ``POST /api/tasks`` would take it)."""


class RerunRequest(BaseModel):
    """Body of ``POST /api/tasks/{id}/rerun`` (optional): what the re-run changes from its original."""

    model_config = ConfigDict(extra="forbid", strict=True)
    priority: PriorityName | Annotated[int, Field(ge=0, le=3)] | None = None
    """Its priority (default: the original's)."""
    assign_to: Identifier | None = None
    """Pin it to this agent (default: the original's pin, if any)."""


def rerun_of(original: Task, change: RerunRequest, submitted_by: str, now_ms: int) -> Task:
    """A new queued task doing what ``original`` was asked to do, with ``change`` applied."""
    fields: dict[str, Any] = {name: getattr(original, name) for name in COPIED}
    fields["priority"] = original.priority if change.priority is None else change.priority
    if change.assign_to is not None:
        fields["assign_to"] = change.assign_to
    fields = {k: v for k, v in fields.items() if v is not None}
    task = TaskSubmit.model_validate(fields, strict=False).to_task(submitted_by, now_ms)
    link_rerun(task, original.id)
    return task


@router.post("/api/tasks/{task_id}/rerun", status_code=201)
async def rerun_task(task_id: str, request: Request, who: Principal = Depends(writer)) -> JSONResponse:
    hub = hub_of(request)
    original = _task(request, task_id)
    _may_steer(who, original)
    change = await parse_body(request, RerunRequest) if (await request.body()).strip() else RerunRequest()
    if original.status not in FINAL:
        raise ApiError(
            409, "invalid_state", detail=f"task is {original.status}; only a finished task is re-run", task_id=task_id
        )
    task = rerun_of(original, change, who.agent_id, hub.clock.now_ms())
    _place(hub, task, "repo")
    [task], too_deep = stamp_depth(hub.queue, who, [task], hub.settings.max_task_depth)
    if too_deep is not None:
        raise ApiError(422, "max_depth", **too_deep)
    await _queue(hub, [task], "depends_on")
    return JSONResponse(
        {"task_id": task.id, "status": str(task.status), "rerun_of": original.id, "priority": task.priority},
        status_code=201,
    )
