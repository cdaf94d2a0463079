"""The web app around one :class:`~hub.hub.Hub`: its routers and sockets, and the lifespan that owns every
background loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket

from hub import api_admin, api_agents, api_ops, api_tasks, dashboard_socket
from hub.agent_socket import serve_agent_socket
from hub.api_limits import router as rate_limits_router
from hub.api_reruns import router as reruns_router
from hub.autonomy import api as autonomy_api
from hub.autonomy.loop import Autonomy
from hub.backups import run_backups
from hub.clock import Clock
from hub.costs import api as costs_api
from hub.endpoints import api as endpoints_api
from hub.endpoints.health import run_health
from hub.endpoints.probe import run_probes
from hub.gc_policy import POLICY
from hub.goals import api as goals_api
from hub.goals.loop import run_goals
from hub.http import install_error_handlers
from hub.hub import Hub, Loop
from hub.limits import install as install_limits
from hub.metrics import run_metrics
from hub.openapi import install as install_openapi
from hub.openapi_docs import router as docs_router
from hub.repos.api import router as repos_router
from hub.repos.followup_loop import run_followups
from hub.restarts import run_restarts
from hub.retention import run_retention
from hub.settings import HubSettings
from hub.storage_guard import StorageGuard
from hub.sweeps import run_sweeps

logger = logging.getLogger(__name__)


def background(hub: Hub) -> dict[str, Loop]:
    """Every long-lived loop of the hub but the store's writer, by name."""
    loops: dict[str, Loop] = {
        "scheduler": hub.fleet.scheduler.run,
        "checkpointer": hub.store.run_checkpointer,
        "sweeps": lambda: run_sweeps(hub),
        "dashboard": lambda: dashboard_socket.run_fanout(hub),
        "retention": lambda: run_retention(hub),
        "metrics": lambda: run_metrics(hub),
        "backups": lambda: run_backups(hub),
        "restarts": lambda: run_restarts(hub),
        "repo-heads": lambda: hub.repos.run_heads(hub.settings.repo_heads_interval_s),
        "repo-followups": lambda: run_followups(hub),
        "endpoint-health": lambda: run_health(hub.endpoints),
        "endpoint-probe": lambda: run_probes(hub.endpoints),
        "costs": hub.costs.run_retention,
        "goal-quotas": hub.quotas.run,
        "retry-backoff": hub.backoff.run,
        "affinity": lambda: hub.affinity.run(hub.store, hub.queue.feed, hub.queue.tasks.get),
    }
    if hub.autonomy is not None:
        loops["autonomy"] = hub.autonomy.run
    if hub.settings.gc_freeze:
        loops["gc-thaw"] = lambda: POLICY.run_thaw(hub.settings.gc_thaw_interval_s)
    if hub.settings.goals_loop:
        loops["goals"] = lambda: run_goals(hub)
    return loops


@asynccontextmanager
async def running(hub: Hub) -> AsyncIterator[None]:
    """The app's lifespan: open the hub (unless already open), run its loops while serving, then close it."""
    if not hub.opened:  # HubServer opens it before it listens, so that a failed start raises plainly
        await hub.open()
    if hub.settings.gc_freeze:
        POLICY.install()  # after the load: the tasks read back are the first survivors frozen
    async with asyncio.TaskGroup() as tg:
        tg.create_task(hub.supervised("store-writer", hub.store.run_writer))
        if hub.settings.autonomy_enabled and hub.autonomy is None:  # its load writes: after the writer starts
            hub.autonomy = autonomy = Autonomy(hub)
            await autonomy.load()
            hub.costs.hub_state = lambda: str(autonomy.fsm.current.value)  # costs are booked to the hub's state
        loops = [tg.create_task(hub.supervised(n, fn)) for n, fn in background(hub).items()]
        hub.fleet.scheduler.wake()
        try:
            yield
        finally:
            for task in loops:
                task.cancel()
            for conn in list(hub.sockets):
                await conn.close(1012, "hub shutting down")
            await asyncio.gather(*loops, return_exceptions=True)
            await hub.close()
            if hub.settings.gc_freeze:
                POLICY.uninstall()
    logger.info("hub stopped")


def create_app(settings: HubSettings, clock: Clock | None = None) -> FastAPI:
    hub = Hub(settings, clock)
    app = FastAPI(title="AgentCom hub", lifespan=lambda _: running(hub), docs_url=None, redoc_url=None)
    app.state.hub = hub  # what hub_of finds
    hub.alerts.source = lambda: dashboard_socket.dashboard_for(hub).metrics()["health"]["conditions"]
    install_error_handlers(app)
    install_limits(app)  # body caps and rate limits, before any route reads a byte
    app.add_middleware(StorageGuard)
    app.include_router(api_agents.router)
    app.include_router(api_tasks.router)
    app.include_router(api_admin.router)
    app.include_router(rate_limits_router)
    app.include_router(api_ops.router)
    app.include_router(dashboard_socket.router)
    app.include_router(goals_api.router)
    app.include_router(repos_router)
    app.include_router(endpoints_api.router)
    app.include_router(autonomy_api.router)
    app.include_router(costs_api.router)
    app.include_router(docs_router)  # /api/docs, its assets served locally
    app.include_router(reruns_router)  # POST /api/tasks/{id}/rerun
    install_openapi(app, settings.metrics_public)

    @app.websocket("/ws")
    async def agents_ws(ws: WebSocket) -> None:
        await serve_agent_socket(ws, hub)

    return app
