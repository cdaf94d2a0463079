"""The hub process: its parts, the FastAPI app and the lifespan that owns every background loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket

from hub import api_admin, api_agents, api_tasks, dashboard_socket
from hub.agent_socket import Connection, serve_agent_socket
from hub.agents import AgentRegistry
from hub.api_limits import router as rate_limits_router
from hub.auth import Auth, Role, load_admin_token
from hub.clock import Clock, SystemClock
from hub.events import EventBus
from hub.fleet import Fleet
from hub.gc_policy import POLICY
from hub.http import install_error_handlers
from hub.limits import install as install_limits
from hub.queue import TaskQueue
from hub.retention import run_retention
from hub.settings import HubSettings
from hub.storage_guard import StorageGuard
from hub.store import Store, StoreError
from hub.sweeps import run_sweeps
from hub.trajectory import Trajectory
from hub.violations import ViolationTracker

logger = logging.getLogger(__name__)


class Hub:
    """Holds the hub's parts; built by :meth:`open`, torn down by :meth:`close`."""

    store: Store
    auth: Auth
    queue: TaskQueue
    trajectory: Trajectory
    fleet: Fleet

    def __init__(self, settings: HubSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.bus = EventBus()
        self.agents = AgentRegistry(self.clock)
        self.violations = ViolationTracker(self.clock, settings.violation_limit, settings.violation_window_s,
                                           settings.violation_cooldowns_s)
        self.sockets: set[Connection] = set()
        self.started_at = self.clock.now_ms()
        self.failed: str | None = None
        self.on_fatal: Callable[[], None] = lambda: None
        self.n_http_rejections = 0
        self.admin_token = ""
        self.created: list[Path] = []
        """Files the last :meth:`open` created (a start abandoned before serving removes them again)."""

    def __repr__(self) -> str:
        return f"<Hub agents={len(self.agents.connected)} {self.queue!r} {self.store!r}>"

    async def open(self) -> None:
        """Open the store and load the hub's state from it. On failure nothing this call made is left behind: the
        store is closed again (its WAL sync helper with it), and a database or admin token it created is removed.
        """
        data_dir = self.settings.data_dir
        db_path = data_dir / "agentcom.db"
        made = [p for p in (data_dir / "admin.token", db_path) if not p.exists()]
        if db_path in made:  # a WAL is removed only with its database: alone it may hold committed pages
            made += [p for p in (db_path.with_name(db_path.name + s) for s in ("-wal", "-shm")) if not p.exists()]
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.store = await Store.open(db_path, self.settings.sqlite_synchronous)
            configured = self.settings.admin_token.get_secret_value() if self.settings.admin_token else None
            self.admin_token = load_admin_token(data_dir, configured)
            self.auth = Auth(self.store, self.clock, self.admin_token)
            try:
                await self.auth.load()
            except ValueError as exc:  # a role this hub does not know
                roles = ", ".join(f"'{r}'" for r in Role)
                raise StoreError(
                    f"the tokens table of {db_path} holds a token this hub cannot read ({exc}). Remove or correct "
                    f"that row, e.g. sqlite3 {db_path} \"DELETE FROM tokens WHERE role NOT IN ({roles})\", "
                    f"then start again."
                ) from exc
            self.queue = TaskQueue(self.store, self.bus, self.clock, self.settings.max_history)
            await self.queue.load()
            self.trajectory = Trajectory(self.store, self.bus, self.clock)
            await self.trajectory.load()
            self.queue.on_forget.append(self.trajectory.forget)
        except BaseException:
            await self.close()
            for path in made:
                path.unlink(missing_ok=True)
            raise
        self.created = made
        self.fleet = Fleet(self.queue, self.agents, self.bus, self.clock)
        self.started_at = self.clock.now_ms()

    @property
    def opened(self) -> bool:
        return hasattr(self, "fleet")

    async def close(self) -> None:
        """Close the store if it is open (idempotent)."""
        store: Store | None = getattr(self, "store", None)
        if store is not None:
            await store.close()

    def background(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """Every long-lived loop of the hub, by name."""
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "scheduler": self.fleet.scheduler.run,
            "checkpointer": self.store.run_checkpointer,
            "sweeps": lambda: run_sweeps(self),
            "dashboard": lambda: dashboard_socket.run_fanout(self),
            "retention": lambda: run_retention(self),
        }
        if self.settings.gc_freeze:
            loops["gc-thaw"] = lambda: POLICY.run_thaw(self.settings.gc_thaw_interval_s)
        return loops

    async def supervised(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a loop; if it crashes, log loudly and stop the hub (pm2 restarts it) instead of limping on."""
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.critical("background loop %r crashed; stopping the hub", name, exc_info=True)
            self.failed = name
            self.on_fatal()
            raise


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    hub: Hub = app.state.hub
    if not hub.opened:  # HubServer opens it before it listens, so that a failed start raises plainly
        await hub.open()
    if hub.settings.gc_freeze:
        POLICY.install()  # after the load: the tasks read back are the first survivors frozen
    async with asyncio.TaskGroup() as tg:
        tg.create_task(hub.supervised("store-writer", hub.store.run_writer))
        loops = [tg.create_task(hub.supervised(n, fn)) for n, fn in hub.background().items()]
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
    app = FastAPI(title="AgentCom hub", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.state.hub = Hub(settings, clock)
    install_error_handlers(app)
    install_limits(app)  # body caps and rate limits, before any route reads a byte
    app.add_middleware(StorageGuard)
    app.include_router(api_agents.router)
    app.include_router(api_tasks.router)
    app.include_router(api_admin.router)
    app.include_router(rate_limits_router)
    app.include_router(dashboard_socket.router)

    @app.websocket("/ws")
    async def agents_ws(ws: WebSocket) -> None:
        await serve_agent_socket(ws, app.state.hub)

    return app
