"""Task endpoints, with AgentCom's paths and field names.

Who reads what (least privilege): an **admin** token reads every task in full. A **viewer** token reads every task,
with values under secret-looking keys (token, key, secret, password, credential) masked exactly as on the dashboard,
in task bodies and trajectories alike. An **agent** token reads in full the tasks it submitted, holds now or is
pinned to (``assign_to``); any other task is shown without its payloads (``metadata``, ``result``, verification
reports, history, last error, idempotency, the repository change), which are named under ``withheld``, and its
trajectory is refused (403).

Submissions may carry an idempotency key (header ``Idempotency-Key`` or field ``idempotency_key``; 1-255 printable
ASCII characters, no spaces), scoped to the submitter. A retry with the same key and the same body answers 200 with
the original task ids, ``"duplicate": true`` and the header ``Idempotent-Replayed: true``; the same key with a
different body is refused (409 ``idempotency_key_reused``). Keys are stored with the tasks and survive a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
)

from hub.auth import Principal, Role
from hub.costs.quotas import stamp_depth
from hub.dashboard_state import REDACTED, is_secret_key
from hub.http import ApiError, any_role, hub_of, parse_body, writer
from hub.hub import Hub
from hub.lifecycle import as_dict
from hub.queue import UnknownDependencies
from hub.repos.registry import UnknownRepo
from hub.retry_backoff import retry_view
from hub.task_index import Submission, TaskNotFound
from hub.task_search import MAX_QUERY
from hub.task_submit import IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY, MAX_STEPS_WITHOUT_WARNING, TaskBatch, TaskSubmit
from hub.tasks import Priority, Task, TaskStatus, TransitionError
from shared import jsonsafe
from shared.fields import NoControl

SearchText = Annotated[
    str,
    Query(
        max_length=MAX_QUERY,
        description="Only tasks whose id, description, repository, assigned agent or goal id holds this text, "
        "ignoring case; empty: no filter. At most 200 characters, no control characters.",
    ),
    NoControl,
]
"""The ``q`` query parameter: 422 ``validation_failed`` (counted as a rejection) when too long or unsafe."""

router = APIRouter()


async def _queue(hub: Hub, tasks: list[Task], deps_field: str) -> None:
    """Queue ``tasks`` in one commit; unknown dependencies are a 422 naming them."""

    async def wake(_: str) -> None:  # schedule as soon as they are queued in memory: the assignment shares the commit
        hub.fleet.scheduler.wake()

    try:
        await hub.queue.submit_many(tasks, on_applied=wake)
    except UnknownDependencies as exc:
        raise ApiError(
            422,
            "validation_failed",
            errors=[{"field": deps_field, "error": "unknown_task", "detail": str(exc), "value": exc.missing}],
        ) from None


def _place(hub: Hub, task: Task, field: str) -> None:
    """Give the task its repository (hub/repos: nil-repo inheritance); 422 ``unknown_repo`` for one not registered."""
    try:
        hub.repos.place(task)
    except UnknownRepo as exc:
        hub.n_http_rejections += 1
        raise ApiError(422, "unknown_repo", field=field, repo=exc.repo[:200], detail=str(exc)) from None


def _idempotency_key(request: Request, in_body: str | None) -> str | None:
    """The request's idempotency key, from the header or the body (both only if they agree)."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is not None and not IDEMPOTENCY_KEY.fullmatch(header):
        raise ApiError(
            422,
            "validation_failed",
            errors=[
                {
                    "field": IDEMPOTENCY_HEADER,
                    "error": "invalid_value",
                    "detail": "1-255 printable ASCII characters, no spaces",
                }
            ],
        )
    if header is not None and in_body is not None and header != in_body:
        raise ApiError(
            422,
            "validation_failed",
            errors=[
                {
                    "field": "idempotency_key",
                    "error": "conflict",
                    "detail": f"differs from the {IDEMPOTENCY_HEADER} header; send one key",
                }
            ],
        )
    return header if header is not None else in_body


def _digest(kind: str, body: BaseModel) -> str:
    """What a retry must repeat: the request's validated content, without its key (key order does not count)."""
    data = body.model_dump(mode="json", exclude={"idempotency_key"})
    if isinstance(body, TaskBatch):  # per-item keys are refused, so only the batch's own key is left out
        data["tasks"] = [{k: v for k, v in t.items() if k != "idempotency_key"} for t in data["tasks"]]
    text = json.dumps([kind, data], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


async def _replay(hub: Hub, who: Principal, key: str, digest: str) -> Submission | None:
    """The earlier request made with this key by this submitter, once committed; None if there is none.

    Callers submit right after a None without awaiting anything in between, and the queue indexes the key before
    its first await: of two identical requests racing, one submits and the other replays it.
    """
    entry: Submission | None = hub.queue.submissions.get((who.agent_id, key))
    if entry is None:
        return None
    if entry.sha256 != digest:
        raise ApiError(
            409, "idempotency_key_reused", detail="this key was used with a different request", idempotency_key=key
        )
    if entry.committed is not None:
        await asyncio.shield(entry.committed)  # the original is answered only once durable: so is its replay
    return entry


def _submitted(hub: Hub, task_id: str) -> dict[str, Any]:
    task = hub.queue.tasks.get(task_id)
    if task is None:  # pruned since
        return {"task_id": task_id}
    return {"task_id": task.id, "status": str(task.status), "priority": task.priority, "created_at": task.created_at}


REPLAYED = {"Idempotent-Replayed": "true"}


@router.post("/api/tasks", status_code=201)
async def submit_task(request: Request, who: Principal = Depends(writer)) -> JSONResponse:
    hub = hub_of(request)
    body = await parse_body(request, TaskSubmit)
    key = _idempotency_key(request, body.idempotency_key)
    digest = _digest("task", body) if key is not None else ""
    if key is not None and (earlier := await _replay(hub, who, key, digest)) is not None:
        return JSONResponse({**_submitted(hub, earlier.task_ids[0]), "duplicate": True}, headers=REPLAYED)
    idempotency = {"key": key, "sha256": digest, "index": 0} if key is not None else None
    task = body.to_task(who.agent_id, hub.clock.now_ms(), idempotency)
    _place(hub, task, "repo")
    [task], too_deep = stamp_depth(hub.queue, who, [task], hub.settings.max_task_depth)
    if too_deep is not None:
        raise ApiError(422, "max_depth", **too_deep)
    await _queue(hub, [task], "depends_on")
    out: dict[str, Any] = {
        "task_id": task.id,
        "status": str(task.status),
        "priority": task.priority,
        "created_at": task.created_at,
    }
    warnings = [f"unknown field '{k}' ignored" for k in (body.model_extra or {})]
    if len(body.verification_steps) > MAX_STEPS_WITHOUT_WARNING:
        warnings.append(f"{len(body.verification_steps)} verification steps; more than 10 slows every attempt")
    if task.status is TaskStatus.DEAD_LETTER:
        warnings.append(task.last_error or "a dependency already failed")
    if warnings:
        out["warnings"] = warnings
    return JSONResponse(out, status_code=201)


@router.post("/api/tasks/batch", status_code=201)
async def submit_batch(request: Request, who: Principal = Depends(writer)) -> JSONResponse:
    """Submit up to 1,000 tasks in one durable transaction; all or none are queued."""
    hub = hub_of(request)
    body = await parse_body(request, TaskBatch)
    keyed = [i for i, item in enumerate(body.tasks) if item.idempotency_key is not None]
    if keyed:
        raise ApiError(
            422,
            "validation_failed",
            errors=[
                {
                    "field": f"tasks.{i}.idempotency_key",
                    "error": "not_allowed",
                    "detail": "a batch takes one key, at its top level or in the header",
                }
                for i in keyed[:20]
            ],
        )
    key = _idempotency_key(request, body.idempotency_key)
    digest = _digest("batch", body) if key is not None else ""
    if key is not None and (earlier := await _replay(hub, who, key, digest)) is not None:
        listed = [_submitted(hub, tid) for tid in earlier.task_ids if tid]
        return JSONResponse({"tasks": listed, "count": len(listed), "duplicate": True}, headers=REPLAYED)
    now = hub.clock.now_ms()
    tasks = [
        item.to_task(who.agent_id, now, {"key": key, "sha256": digest, "index": i} if key is not None else None)
        for i, item in enumerate(body.tasks)
    ]
    for i, task in enumerate(tasks):
        _place(hub, task, f"tasks.{i}.repo")
    tasks, too_deep = stamp_depth(hub.queue, who, tasks, hub.settings.max_task_depth)
    if too_deep is not None:
        raise ApiError(422, "max_depth", **too_deep)
    await _queue(hub, tasks, "tasks.depends_on")
    # Plain data: returned as a JSONResponse, skipping FastAPI's generic (and slow) jsonable_encoder.
    return JSONResponse(
        {
            "tasks": [
                {"task_id": t.id, "status": str(t.status), "priority": t.priority, "created_at": t.created_at}
                for t in tasks
            ],
            "count": len(tasks),
        },
        status_code=201,
    )


WITHHELD = (
    "metadata",
    "result",
    "verification_report",
    "verification_history",
    "history",
    "last_error",
    "idempotency",
    "change",
)
"""What an agent token does not see of a task it neither submitted, holds nor is pinned to."""
MASK_DEPTH = 64


def mask(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with every value under a secret-looking key masked as the dashboard masks it (numbers
    stay: ``tokens_used`` is a count). Unlike the dashboard, nothing else is clipped."""
    if depth > MASK_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_key(str(k)) and not isinstance(v, int | float | None) else mask(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v, depth + 1) for v in value]
    return value


def _reads_in_full(who: Principal, task: Task) -> bool:
    return who.role is Role.ADMIN or (
        who.role is Role.AGENT and who.agent_id in (task.submitted_by, task.assigned_to, task.assign_to)
    )


def view(task: Task, who: Principal) -> dict[str, Any]:
    """The task as ``who`` may read it (see the module docstring)."""
    if who.role is Role.VIEWER:
        return mask(task.public())  # type: ignore[no-any-return]
    out = task.public()
    if not _reads_in_full(who, task):
        for name in WITHHELD:
            out.pop(name, None)
        out["withheld"] = list(WITHHELD)
    return out


def _priority_filter(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if value in ("0", "1", "2", "3"):
        return int(value)
    try:
        return Priority[value.upper()].value
    except KeyError:
        raise ApiError(
            422,
            "validation_failed",
            errors=[
                {
                    "field": "priority",
                    "error": "invalid_value",
                    "value": value,
                    "detail": "one of urgent, high, normal, low (or 0-3)",
                }
            ],
        ) from None


@router.get("/api/tasks")
async def list_tasks(
    request: Request,
    status: str | None = None,
    priority: str | None = None,
    assigned_to: str | None = None,
    goal_id: str | None = None,
    limit: Annotated[int, Query(ge=-jsonsafe.MAX_INT, le=jsonsafe.MAX_INT)] = 1000,
    offset: Annotated[int, Query(ge=0, le=jsonsafe.MAX_INT)] = 0,
    who: Principal = Depends(any_role),
    q: SearchText = "",
) -> dict[str, Any]:
    """Tasks by (priority, created_at), filtered; ``q`` keeps those whose id, description, repository, agent or
    goal holds it, ignoring case (an empty ``q`` keeps every task)."""
    if status is not None and status not in TaskStatus.__members__.values():
        raise ApiError(
            422,
            "validation_failed",
            errors=[
                {
                    "field": "status",
                    "error": "invalid_value",
                    "value": status,
                    "detail": "one of " + ", ".join(TaskStatus),
                }
            ],
        )
    tasks = hub_of(request).queue.list(
        status or None,
        _priority_filter(priority),
        assigned_to,
        goal_id,
        max(1, min(limit, 10_000)),
        offset=max(0, min(offset, 10**9)),
        q=q or None,
    )
    return {"tasks": [view(t, who) for t in tasks], "count": len(tasks)}


@router.get("/api/tasks/dead-letter")
async def dead_letter(request: Request, who: Principal = Depends(any_role)) -> dict[str, Any]:
    tasks = hub_of(request).queue.list(str(TaskStatus.DEAD_LETTER))
    return {"tasks": [view(t, who) for t in tasks], "count": len(tasks)}


@router.get("/api/tasks/stats")
async def task_stats(request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    return hub_of(request).queue.stats()


@router.get("/api/tasks/parse-stats")
async def parse_stats(request: Request, _: Principal = Depends(any_role)) -> dict[str, Any]:
    """Which parser path read each model's tool calls (native, hermes, qwen_xml, bare_json), and format errors."""
    return {"models": hub_of(request).queue.parse_stats()}


def _task(request: Request, task_id: str) -> Task:
    try:
        return hub_of(request).queue.get(task_id)
    except TaskNotFound:
        raise ApiError(404, "task_not_found", task_id=task_id) from None


@router.get("/api/tasks/{task_id}")
async def get_task(task_id: str, request: Request, who: Principal = Depends(any_role)) -> dict[str, Any]:
    task = _task(request, task_id)
    out = view(task, who)
    links = hub_of(request).repos.followups.links(task)
    if "withheld" in out:
        links.pop("follow_up_of", None)  # read from the withheld metadata
    out.update(retry_view(task, hub_of(request).clock.now_ms(), "history" in out))  # hub/retry_backoff.py
    return {**out, **links}


def _may_read_history(request: Request, task_id: str, who: Principal, what: str) -> None:
    """404 for an unknown task; 403 for an agent token asking about a task it does not read in full."""
    task = _task(request, task_id)
    if who.role is Role.AGENT and not _reads_in_full(who, task):
        raise ApiError(
            403, "forbidden", detail=f"an agent token reads the {what} of its own tasks only", task_id=task_id
        )


def _as_seen_by(who: Principal, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Viewers get secret-looking values masked, as everywhere else."""
    return mask(events) if who.role is Role.VIEWER else events


@router.get("/api/tasks/{task_id}/trajectory")
async def get_trajectory(
    task_id: str,
    request: Request,
    after_seq: Annotated[int, Query(ge=0, le=jsonsafe.MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=-jsonsafe.MAX_INT, le=jsonsafe.MAX_INT)] = 1000,
    who: Principal = Depends(any_role),
) -> dict[str, Any]:
    _may_read_history(request, task_id, who, "trajectories")
    events = await hub_of(request).trajectory.read(task_id, after_seq, max(1, min(limit, 10_000)))
    return {"task_id": task_id, "events": _as_seen_by(who, events), "count": len(events)}


@router.get("/api/tasks/{task_id}/events")
async def get_task_events(
    task_id: str,
    request: Request,
    after_seq: Annotated[int, Query(ge=0, le=jsonsafe.MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=-jsonsafe.MAX_INT, le=jsonsafe.MAX_INT)] = 1000,
    who: Principal = Depends(any_role),
) -> dict[str, Any]:
    """The task's lifecycle events (its history) after ``after_seq``, in order; read as its trajectory is."""
    _may_read_history(request, task_id, who, "events")
    stored = await hub_of(request).queue.feed.read_task(task_id, after_seq, max(1, min(limit, 10_000)))
    events = _as_seen_by(who, [as_dict(e) for e in stored])
    return {
        "task_id": task_id,
        "events": events,
        "count": len(events),
        "next_after_seq": events[-1]["seq"] if events else after_seq,
    }


def _may_steer(who: Principal, task: Task) -> None:
    if who.role is not Role.ADMIN and task.submitted_by != who.agent_id:
        raise ApiError(403, "forbidden", detail="only an admin or the task's submitter may do this")


@router.post("/api/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, request: Request, who: Principal = Depends(writer)) -> dict[str, Any]:
    hub = hub_of(request)
    task = _task(request, task_id)
    _may_steer(who, task)
    try:
        previous, agent_id = await hub.queue.cancel(task_id, by=who.agent_id)
    except TransitionError as exc:
        raise ApiError(409, exc.code, detail=str(exc), task_id=task_id) from None
    if agent_id is not None:
        await hub.fleet.cancel_on_agent(agent_id, task_id)
    return {"status": "cancelled", "task_id": task_id, "previous_status": str(previous)}


@router.post("/api/tasks/{task_id}/retry")
async def retry_task(task_id: str, request: Request, who: Principal = Depends(writer)) -> dict[str, Any]:
    hub = hub_of(request)
    _may_steer(who, _task(request, task_id))
    try:
        await hub.queue.retry(task_id, by=who.agent_id)
    except TransitionError as exc:
        raise ApiError(409, exc.code, detail=str(exc), task_id=task_id) from None
    hub.fleet.scheduler.wake()
    return {"status": "requeued", "task_id": task_id}
