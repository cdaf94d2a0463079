"""The dashboard: its page, its static files, its snapshot endpoint and its WebSocket (``/ws/dashboard``).

A page authenticates with an admin or viewer token, as the first message ``{"type": "auth", "token": ...}`` (or
``?token=`` for tools); a bad token closes the socket with 4401, an agent token with 4403. The hub then sends
``{"type": "snapshot", "data": ...}`` and, from :func:`run_fanout` (the one loop reading the event bus),
``{"type": "events", "data": [...]}`` batches every ``dashboard_batch_ms``; tool calls go out at once as
``{"type": "execution_event", ...}``. The page may send ``request_snapshot`` and ``subscribe_task {task_id,
after_seq?}``, answered with ``task_detail``: the task and one page of its stored trajectory (events after
``after_seq``, at most ``subscribe_page_events`` of them and ``subscribe_page_bytes``; ``truncated`` and
``next_after_seq`` say where the next page starts). The socket never changes hub state: actions go through the HTTP
API with the same token. Each page's outbox is bounded in bytes; a page that does not keep up gets a fresh snapshot
instead of the backlog, and one that stops reading is dropped after ``send_timeout_s`` (hub/connection.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from typing import TYPE_CHECKING, Any

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from dashboard import STATIC_DIR, TEMPLATE_DIR
from hub import dashboard_state as DS
from hub.auth import Principal, Role
from hub.connection import Connection, ConnectionDropped, SendLimits, frame_bytes
from hub.events import Event
from hub.http import ApiError, authenticate, hub_of
from hub.tasks import TaskStatus
from shared import jsonsafe

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)
router = APIRouter()

AUTH_TIMEOUT_S = 10.0
METRICS_INTERVAL_S = 5.0
MAX_BATCH = 2000
"""A burst larger than this is flushed at once rather than held for the rest of the batch interval."""
MAX_SEQ = 2**53
STATIC_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
MEDIA_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_SNAPSHOT = object()
"""Outbox marker: build a fresh snapshot when this client's writer reaches it."""
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.StrictUndefined
)


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


class Client:
    """One dashboard page: an outbox bounded in bytes drained by its own writer, so a slow page never slows the hub."""

    def __init__(self, conn: Connection, principal: Principal, outbox_bytes: int) -> None:
        self.conn = conn
        self.principal = principal
        self.outbox: asyncio.Queue[object] = asyncio.Queue()
        self.outbox_bytes = outbox_bytes
        self.queued_bytes = 0
        self.n_resyncs = 0

    def push(self, item: object) -> None:
        """Queue a message; past the byte budget drop everything queued and send a fresh snapshot instead."""
        size = frame_bytes(item) if isinstance(item, str) else 0
        if self.queued_bytes + size > self.outbox_bytes:
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.queued_bytes = size = 0
            self.n_resyncs += 1
            item = _SNAPSHOT
        self.outbox.put_nowait(item)
        self.queued_bytes += size

    async def next_text(self, dash: Dashboard) -> str:
        item = await self.outbox.get()
        if isinstance(item, str):
            self.queued_bytes -= frame_bytes(item)
            return item
        return dash.snapshot_message(self)


class Dashboard:
    """The hub's dashboard side: connected pages, chart series and live tool-call counters."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.clients: set[Client] = set()
        self.series = DS.Series()
        self.activity = DS.Activity()
        self.n_batches = 0
        self.n_events = 0

    def __repr__(self) -> str:
        return f"<Dashboard clients={len(self.clients)} batches={self.n_batches} events={self.n_events}>"

    def snapshot(self) -> dict[str, Any]:
        hub = self.hub
        queue = hub.queue
        snapshot = DS.build_snapshot(
            in_flight=queue.in_flight(),
            queued_in_order=queue.queued_in_order(),
            recent=queue.recent(DS.RECENT_LIMIT),
            dead_letter=queue.latest(TaskStatus.DEAD_LETTER, DS.LIST_LIMIT),
            agents=hub.agents.views(),
            stats=queue.stats(),
            series=self.series,
            activity=self.activity,
            now_ms=hub.clock.now_ms(),
            started_at=hub.started_at,
        )
        snapshot["goals"] = hub.goals.view()
        if hub.autonomy is not None:  # the hub panel (hub/autonomy); its changes follow as "hub_fsm" events
            snapshot["hub_fsm"] = hub.autonomy.fsm.snapshot()
        return snapshot

    def snapshot_message(self, client: Client) -> str:
        return _dumps(
            {
                "type": "snapshot",
                "data": self.snapshot(),
                "role": str(client.principal.role),
                "batch_ms": self.hub.settings.dashboard_batch_ms,
            }
        )

    def metrics(self) -> dict[str, Any]:
        hub = self.hub
        now = hub.clock.now_ms()
        stats = hub.queue.stats()
        return {
            "timestamp": now,
            "queue": stats,
            "series": self.series.view(now),
            "health": DS.health(hub.agents.views(), hub.queue.in_flight(), stats, self.series.totals(now), now),
        }

    def broadcast(self, message: dict[str, Any]) -> None:
        if not self.clients:
            return
        text = _dumps(message)
        for client in list(self.clients):
            client.push(text)

    def agent_views(self, agent_ids: set[str]) -> list[dict[str, Any]]:
        """Current views of these agents (connected or departed), with their last execution event."""
        agents = self.hub.agents
        views = [a.view() if (a := agents.get(aid)) is not None else agents.departed.get(aid) for aid in agent_ids]
        return [DS.agent_view(v, self.activity) for v in views if v is not None]

    def observe(self, event: Event) -> Event:
        """Fold one bus event into the chart series; returns it for the next batch."""
        name = event.get("event")
        if event.get("kind") == "task_event":
            now = self.hub.clock.now_ms()
            task = self.hub.queue.tasks.get(str(event.get("task_id")))
            if task is not None and name == "task_completed":
                self.series.observe(now, True, (task.completed_at or now) - task.created_at)
            elif name in ("task_retried", "task_dead_letter") and event.get("reason") != "dependency_failed":
                self.series.observe(now, False)
        return event

    def batch_item(self, event: Event, agent_ids: set[str]) -> dict[str, Any]:
        """What a page gets for one event, built at flush time so every task and agent in it is current."""
        kind = event.get("kind")
        for key in ("agent_id", "from_agent"):
            if isinstance(event.get(key), str):
                agent_ids.add(event[key])
        if kind == "task_event":
            task = self.hub.queue.tasks.get(str(event.get("task_id")))
            out = {k: event.get(k) for k in ("kind", "event", "task_id", "timestamp", "reason", "outcome")}
            out["task"] = DS.task_summary(task) if task is not None else None
            return out
        if kind == "agent_event":
            return {k: event.get(k) for k in ("kind", "event", "agent_id", "timestamp")}
        passed: dict[str, Any] = DS.redact(event, 2000)  # kinds from later issues (hub FSM, goals, costs) pass through
        return passed

    def execution_event(self, event: Event) -> None:
        progress = self.activity.observe(event)
        self.broadcast({"type": "execution_event", "data": DS.timeline_entry(event), "progress": dict(progress)})

    def flush(self, batch: list[Event]) -> None:
        self.n_batches += 1
        self.n_events += len(batch)
        if not self.clients:
            return
        agent_ids: set[str] = set()
        items = [self.batch_item(e, agent_ids) for e in batch]
        self.broadcast({"type": "events", "data": items, "agents": self.agent_views(agent_ids), **self.metrics()})


_dashboards: weakref.WeakKeyDictionary[Hub, Dashboard] = weakref.WeakKeyDictionary()


def dashboard_for(hub: Hub) -> Dashboard:
    if hub not in _dashboards:
        _dashboards[hub] = Dashboard(hub)
    return _dashboards[hub]


async def run_fanout(hub: Hub) -> None:
    """Read the event bus forever: tool calls go to the pages at once, everything else in timed batches."""
    dash = dashboard_for(hub)
    dash.series.seed(hub.queue.tasks.values(), hub.clock.now_ms())
    loop = asyncio.get_running_loop()
    batch_s = hub.settings.dashboard_batch_ms / 1000
    batch: list[Event] = []
    flush_at: float | None = None
    next_metrics = loop.time() + METRICS_INTERVAL_S
    with hub.bus.subscribe() as events:
        while True:
            deadline = min(next_metrics, flush_at if flush_at is not None else next_metrics)
            try:
                async with asyncio.timeout_at(deadline):
                    event = await events.get()
            except TimeoutError:
                event = None
            while event is not None:  # take everything already waiting without arming a timeout per event
                if event.get("kind") == "execution_event":
                    dash.execution_event(event)
                else:
                    batch.append(dash.observe(event))
                    if flush_at is None:
                        flush_at = loop.time() + batch_s
                    if len(batch) >= MAX_BATCH:
                        flush_at = loop.time()
                event = events.get_nowait() if not events.empty() else None
            now = loop.time()
            if flush_at is not None and now >= flush_at:
                dash.flush(batch)
                batch, flush_at = [], None
            if now >= next_metrics:
                dash.series.prune(hub.clock.now_ms())
                dash.broadcast({"type": "metrics", **dash.metrics()})
                next_metrics = now + METRICS_INTERVAL_S


# --- HTTP ------------------------------------------------------------------------------------------------------


def _static_version() -> str:
    return str(max(int(p.stat().st_mtime) for p in STATIC_DIR.iterdir()))


def _page(request: Request) -> HTMLResponse:
    hub = hub_of(request)
    html = _templates.get_template("dashboard.html").render(
        version=_static_version(),
        batch_ms=hub.settings.dashboard_batch_ms,
    )
    return HTMLResponse(html, headers=SECURITY_HEADERS)


@router.get("/", include_in_schema=False)
async def root_page(request: Request) -> HTMLResponse:
    return _page(request)


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page(request: Request) -> HTMLResponse:
    return _page(request)


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    match = STATIC_NAME.match(name)
    path = STATIC_DIR / name
    if match is None or not path.is_file():
        raise ApiError(404, "not_found", detail=f"no static file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[match.group(1)], headers={"Cache-Control": "no-cache"})


async def dashboard_reader(request: Request) -> Principal:
    return authenticate(request, Role.ADMIN, Role.VIEWER)


@router.get("/api/dashboard/state")
async def dashboard_state(request: Request, _: Principal = Depends(dashboard_reader)) -> Response:
    """The snapshot the page gets on connect, as JSON (encoded directly: it is already plain data)."""
    return Response(_dumps(dashboard_for(hub_of(request)).snapshot()), media_type="application/json")


# --- WebSocket -------------------------------------------------------------------------------------------------


async def _authenticate(ws: WebSocket, hub: Hub) -> Principal | None:
    """The page's principal from ``?token=`` or a first ``auth`` message; closes the socket and returns None if bad."""
    token = ws.query_params.get("token")
    if not token:
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                first = jsonsafe.parse(await ws.receive_text())
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
        except WebSocketDisconnect:
            return None  # gone before saying who it is
        except (TimeoutError, ValueError, KeyError):
            token = None
    principal = hub.auth.verify(token if isinstance(token, str) else None)
    if principal is None:
        await ws.close(4401, "unauthorized: an admin or viewer token is required")
        return None
    if principal.role not in (Role.ADMIN, Role.VIEWER):
        await ws.close(4403, f"forbidden: the dashboard needs an admin or viewer token, not {principal.role}")
        return None
    return principal


async def _write(dash: Dashboard, client: Client) -> None:
    """Drain the page's outbox; each write has the connection's deadline (past it the page is dropped)."""
    try:
        while True:
            await client.conn.write(await client.next_text(dash))
    except ConnectionDropped:
        return  # the connection's own writer aborts it; the reader then sees the disconnect


async def _task_detail(dash: Dashboard, task_id: str, after_seq: int) -> dict[str, Any]:
    """One page of the task's trajectory, bounded in events and bytes (at least one event, so paging advances)."""
    task = dash.hub.queue.tasks.get(task_id)
    if task is None:
        return {"type": "error", "error": "task_not_found", "task_id": task_id}
    settings = dash.hub.settings
    rows = await dash.hub.trajectory.read(task_id, after_seq, settings.subscribe_page_events + 1)
    timeline: list[dict[str, Any]] = []
    size = 0
    for row in rows[: settings.subscribe_page_events]:
        entry = DS.timeline_entry({**row["event"], "seq": row["seq"], "timestamp": row["timestamp"]})
        size += len(_dumps(entry))
        if timeline and size > settings.subscribe_page_bytes:
            break
        timeline.append(entry)
    truncated = len(timeline) < len(rows)
    next_after_seq = rows[len(timeline) - 1]["seq"] if timeline else after_seq
    return {
        "type": "task_detail",
        "data": {
            "task": DS.task_detail(task),
            "timeline": timeline,
            "progress": dash.activity.tasks.get(task_id),
            "after_seq": after_seq,
            "next_after_seq": next_after_seq,
            "truncated": truncated,
        },
    }


def _after_seq(msg: dict[str, Any]) -> int | None:
    """``after_seq`` of a ``subscribe_task`` (0 when absent); None when it is not an integer in range."""
    value = msg.get("after_seq", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        return None
    return value


async def _read(ws: WebSocket, dash: Dashboard, client: Client) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            msg = jsonsafe.parse(message.get("text") or message.get("bytes") or b"")
        except ValueError:
            msg = None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "request_snapshot":
            client.push(_SNAPSHOT)
        elif kind == "subscribe_task" and isinstance(msg, dict) and isinstance(msg.get("task_id"), str):
            after_seq = _after_seq(msg)
            if after_seq is None:
                client.push(
                    _dumps(
                        {
                            "type": "error",
                            "error": "invalid_after_seq",
                            "detail": f"after_seq must be an integer from 0 to {MAX_SEQ}",
                        }
                    )
                )
            else:
                client.push(_dumps(await _task_detail(dash, msg["task_id"][:128], after_seq)))
        elif kind == "ping":
            client.push(_dumps({"type": "pong", "timestamp": dash.hub.clock.now_ms()}))
        elif kind != "auth":
            client.push(_dumps({"type": "error", "error": "unknown_message", "message_type": str(kind)[:64]}))


@router.websocket("/ws/dashboard")
async def dashboard_ws(ws: WebSocket) -> None:
    hub = hub_of(ws)
    await ws.accept()
    principal = await _authenticate(ws, hub)
    if principal is None:
        return
    dash = dashboard_for(hub)
    conn = Connection(ws, SendLimits.of(hub.settings), hub.fleet.socket_counters)
    client = Client(conn, principal, hub.settings.dashboard_outbox_bytes)
    client.push(_SNAPSHOT)
    dash.clients.add(client)
    hub.sockets.add(conn)  # closed with the hub's other sockets at shutdown

    async def on_revoked() -> None:  # its token was revoked: not one more event, then closed
        dash.clients.discard(client)
        while not client.outbox.empty():
            client.outbox.get_nowait()
        await conn.close(4401, "token revoked")

    unwatch = hub.auth.watch(principal.token_id, on_revoked)
    started = time.monotonic()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(conn.run(), name=f"closer-{conn.key}")  # sends nothing queued: it closes, bounded
            writer = tg.create_task(_write(dash, client))
            try:
                await _read(ws, dash, client)
            finally:
                writer.cancel()
                dash.clients.discard(client)
                await conn.close(1000, "bye")
    except* (WebSocketDisconnect, RuntimeError, OSError) as group:
        logger.info("dashboard socket %s ended: %r", conn.key, group.exceptions[0])
    finally:
        unwatch()
        dash.clients.discard(client)
        hub.sockets.discard(conn)
        logger.info("dashboard page %s (%s) left after %.0fs", conn.key, principal.role, time.monotonic() - started)
