"""The hub: its parts (store, tokens, task queue, trajectory, agents, fleet), opened and closed together.

Nothing here speaks HTTP: the web app (hub/app.py) holds one :class:`Hub` and its routers and sockets reach it through
:func:`hub.http.hub_of`; the lifespan there runs the hub's background loops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from hub.agents import AgentRegistry
from hub.alerts import Alerts
from hub.auth import Auth, load_admin_token
from hub.clock import Clock, SystemClock
from hub.costs.quotas import GoalQuotas
from hub.costs.service import Costs
from hub.endpoints.affinity import Affinity
from hub.endpoints.registry import EndpointRegistry
from hub.endpoints.scoring import EndpointRanker
from hub.events import EventBus
from hub.fleet import Fleet
from hub.goals.service import GoalService
from hub.metrics import HubMetrics
from hub.queue import TaskQueue
from hub.repos import wiring as repo_wiring
from hub.repos.registry import RepoRegistry
from hub.retry_backoff import RetryBackoff
from hub.settings import HubSettings
from hub.store import Store
from hub.store.backup import BackupInfo, refuse_if_damaged
from hub.store.sqlite import SqliteStore
from hub.trajectory import Trajectory
from hub.violations import ViolationTracker

logger = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]
"""A long-lived background loop of the hub, run in the lifespan's TaskGroup."""


class Socket(Protocol):
    """An open agent or dashboard socket, as the hub closes it at shutdown."""

    async def close(self, code: int, reason: str) -> None: ...


class Hub:
    """Holds the hub's parts; built by :meth:`open`, torn down by :meth:`close`."""

    store: Store
    auth: Auth
    queue: TaskQueue
    trajectory: Trajectory
    fleet: Fleet
    repos: RepoRegistry
    goals: GoalService
    endpoints: EndpointRegistry
    costs: Costs
    quotas: GoalQuotas
    backoff: RetryBackoff
    affinity: Affinity

    def __init__(self, settings: HubSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.bus = EventBus()
        self.agents = AgentRegistry(self.clock)
        self.violations = ViolationTracker(
            self.clock, settings.violation_limit, settings.violation_window_s, settings.violation_cooldowns_s
        )
        self.sockets: set[Socket] = set()
        self.started_at = self.clock.now_ms()
        self.failed: str | None = None
        self.on_fatal: Callable[[], None] = lambda: None
        self.n_http_rejections = 0
        self.admin_token = ""
        self.created: list[Path] = []
        """Files the last :meth:`open` created (a start abandoned before serving removes them again)."""
        self.last_backup: BackupInfo | None = None
        self.restarts_asked_by: dict[str, str] = {}
        """Agents with a deferred restart, and who asked for it (hub/restarts.py)."""
        self.metrics = HubMetrics(self)
        self.alerts = Alerts(lambda: self.store.degraded)
        self.autonomy: Any = None
        """The state machine (hub.autonomy.loop.Autonomy), set by the app's lifespan when enabled."""

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
        self.db_path = db_path
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            if self.settings.integrity_check and db_path not in made:
                refuse_if_damaged(db_path, data_dir)  # before serving: nothing else waits on the loop yet
            self.store = await SqliteStore.open(db_path, self.settings.sqlite_synchronous)
            configured = self.settings.admin_token.get_secret_value() if self.settings.admin_token else None
            self.admin_token = load_admin_token(data_dir, configured)
            self.auth = Auth(self.store, self.clock, self.admin_token)
            await self.auth.load()  # StoreError naming the row and the fix for a token of an unknown role
            self.queue = TaskQueue(self.store, self.bus, self.clock, self.settings.max_history)
            await self.queue.load()
            self.trajectory = Trajectory(self.store, self.bus, self.clock)
            await self.trajectory.load()
            self.queue.on_forget.append(self.trajectory.forget)
            self.repos = await repo_wiring.load(self.store, self.settings, self.queue.tasks.values())
            self.goals = GoalService(self)
            await self.goals.load()
            self.repos.goal_repo = self.goals.repo_of  # a goal's tasks inherit its repository
            self.endpoints = EndpointRegistry(self.store, self.clock, self.settings, self.bus)
            await self.endpoints.load()
            self.affinity = Affinity(self.clock, self.settings.affinity_window_s, self.settings.affinity_max_entries)
            await self.affinity.load(self.store)  # which agents worked on which repositories, for the ranker
            self.costs = Costs(self.settings, self.store, self.clock, self.queue)  # the cost ledger and budgets
            await self.costs.load()
            self.goals.model.costs = self.costs  # the hub's own model calls go through the ledger and budgets
        except BaseException:
            await self.close()
            for path in made:
                path.unlink(missing_ok=True)
            raise
        self.created = made
        self.fleet = Fleet(self.queue, self.agents, self.bus, self.clock)
        self.fleet.scheduler.ranker = EndpointRanker(self.endpoints, self.agents, self.queue.tasks.get, self.affinity)
        self.quotas = GoalQuotas(self.settings, self.queue, self.bus)  # per-goal concurrency and fail-fast
        self.fleet.scheduler.admit = self.quotas.admit
        self.backoff = RetryBackoff(  # after the quotas: it wraps their filter
            self.queue, self.fleet.scheduler, self.clock, self.settings.retry_backoff_base_s,
            self.settings.retry_backoff_max_s,
        )  # fmt: skip
        self.started_at = self.clock.now_ms()
        repo_wiring.wire(self.repos, self.fleet)

    @property
    def opened(self) -> bool:
        return hasattr(self, "fleet")

    async def close(self) -> None:
        """Close the store if it is open (idempotent)."""
        store: Store | None = getattr(self, "store", None)
        if store is not None:
            await store.close()

    async def supervised(self, name: str, loop: Loop) -> None:
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
