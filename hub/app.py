"""The web app around one :class:`~hub.hub.Hub`: its routers and sockets, and the lifespan that owns every
background loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket

from hub import api_admin, api_agents, api_tasks, dashboard_socket
from hub.agent_socket import serve_agent_socket
from hub.api_limits import router as rate_limits_router
from hub.clock import Clock
from hub.costs import api as costs_api
from hub.gc_policy import POLICY
from hub.http import install_error_handlers
from hub.hub import Hub, Loop
from hub.limits import install as install_limits
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
        "costs": hub.costs.run_retention,
        "goal-quotas": hub.quotas.run,
    }
    if hub.settings.gc_freeze:
        loops["gc-thaw"] = lambda: POLICY.run_thaw(hub.settings.gc_thaw_interval_s)
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
    app = FastAPI(title="AgentCom hub", lifespan=lambda _: running(hub), docs_url="/api/docs", redoc_url=None)
    app.state.hub = hub  # what hub_of finds
    install_error_handlers(app)
    install_limits(app)  # body caps and rate limits, before any route reads a byte
    app.add_middleware(StorageGuard)
    app.include_router(api_agents.router)
    app.include_router(api_tasks.router)
    app.include_router(api_admin.router)
    app.include_router(rate_limits_router)
    app.include_router(dashboard_socket.router)
    app.include_router(costs_api.router)

    @app.websocket("/ws")
    async def agents_ws(ws: WebSocket) -> None:
        await serve_agent_socket(ws, hub)

    return app
