"""The endpoint registry: every model server the hub knows, keyed by its normalised URL, stored as records.

An endpoint is reported by sidecars (``identify`` with ``ollama_url`` and ``models``) or added by an admin. Its
record (kind ``endpoint``) keeps what it is (URL, kind, name, owners, declared models) and what the health loop last
found (models with their capabilities, health); the warm models (``/api/ps``) are only kept in memory. Probe
results are records of kind ``probe`` keyed ``<endpoint id> <model>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from hub.clock import Clock
from hub.endpoints.urls import BadUrl, Kind, endpoint_id, localise, normalise_url
from hub.events import EventBus
from hub.settings import HubSettings
from hub.store import DeleteRecord, PutRecord, RecordRow, Store, StoreError

logger = logging.getLogger(__name__)

KIND = "endpoint"
MAX_AGENTS_REMEMBERED = 4096
"""Agents whose reported endpoint is remembered (the most recent)."""
PROBE_KIND = "probe"
MAX_OWNERS = 64
"""Agents listed as owners of one endpoint (the most recent kept)."""
MAX_MODELS = 256
"""Models kept per endpoint (declared or discovered)."""
MAX_MODEL_CHARS = 256


@dataclass(slots=True)
class ModelInfo:
    """What ``/api/show`` (or ``/v1/models``) said about one model."""

    capabilities: list[str] = field(default_factory=list)
    context_length: int | None = None
    size: int | None = None
    family: str | None = None


@dataclass(slots=True)
class Warm:
    """A model loaded in the server's memory (``/api/ps``)."""

    size_vram: int | None = None
    context_length: int | None = None
    expires_at: str | None = None


@dataclass(slots=True)
class Endpoint:
    id: str
    url: str
    kind: Kind
    created_at: int
    name: str | None = None
    added_by_admin: bool = False
    owners: list[str] = field(default_factory=list)
    """Agents that reported this endpoint (most recent last)."""
    declared_models: list[str] = field(default_factory=list)
    """Models an admin or the owners named."""
    models: dict[str, ModelInfo] = field(default_factory=dict)
    """Models the server itself listed, with what it said about them."""
    healthy: bool | None = None
    """None until the first check."""
    failures: int = 0
    """Consecutive failed checks."""
    last_ok_at: int | None = None
    last_check_at: int | None = None
    last_error: str | None = None
    # in memory only:
    warm: dict[str, Warm] = field(default_factory=dict)
    vram_bytes: int = 0
    next_check_at: int = 0

    STORED = (
        "id", "url", "kind", "created_at", "name", "added_by_admin", "owners", "declared_models", "models",
        "healthy", "failures", "last_ok_at", "last_check_at", "last_error",
    )  # fmt: skip

    def record(self, now_ms: int) -> PutRecord:
        body = {k: v for k, v in asdict(self).items() if k in self.STORED}
        return PutRecord(RecordRow(KIND, self.id, now_ms, json.dumps(body, separators=(",", ":"))))

    @classmethod
    def from_record(cls, row: RecordRow) -> Endpoint:
        body = json.loads(row.body)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        models = {str(k): ModelInfo(**v) for k, v in (body.pop("models", None) or {}).items()}
        return cls(**{k: v for k, v in body.items() if k in cls.STORED}, models=models)

    def all_models(self) -> list[str]:
        """Discovered models, then declared ones the server did not list (yet)."""
        return [*self.models, *(m for m in self.declared_models if m not in self.models)]


class EndpointRegistry:
    """The endpoints and probe results of one hub, in memory and in the store."""

    def __init__(self, store: Store, clock: Clock, settings: HubSettings, bus: EventBus | None = None) -> None:
        self._store = store
        self._clock = clock
        self._bus = bus
        self.settings = settings
        self.endpoints: dict[str, Endpoint] = {}
        self.by_url: dict[str, str] = {}
        self.probes: dict[tuple[str, str], dict[str, Any]] = {}
        """Probe results by (endpoint id, model)."""
        self.changed = asyncio.Condition()
        self.check_soon = asyncio.Event()
        """Set when an endpoint was added: the health loop looks again at once."""
        self.probe_soon = asyncio.Event()
        """Set when a probe was asked for."""
        self.probe_wanted: dict[tuple[str, str], bool] = {}
        """(endpoint id, model) waiting for a probe (insertion order), with whether it was forced."""
        self.agent_endpoint: OrderedDict[str, str] = OrderedDict()
        """The endpoint each agent reported (by id), most recent last."""
        self.n_bad_rows = 0
        self.n_refused_reports = 0
        self.n_full = 0
        self.n_probes_running_max = 0
        """The most probes that ever ran at once (never above ``endpoint_probe_concurrency``)."""

    def __repr__(self) -> str:
        return f"<EndpointRegistry endpoints={len(self.endpoints)} probes={len(self.probes)}>"

    async def load(self) -> None:
        for row in await self._store.load_records(KIND):
            try:
                ep = Endpoint.from_record(row)
            except (ValueError, TypeError) as exc:
                self.n_bad_rows += 1
                logger.warning("endpoint record %s skipped: %s", row.key[:64], type(exc).__name__)
                continue
            self.endpoints[ep.id] = ep
            self.by_url[ep.url] = ep.id
        for row in await self._store.load_records(PROBE_KIND):
            try:
                body = json.loads(row.body)
                key = (str(body["endpoint_id"]), str(body["model"]))
            except (ValueError, TypeError, KeyError):
                self.n_bad_rows += 1
                continue
            if key[0] in self.endpoints:
                self.probes[key] = body

    def now_ms(self) -> int:
        return self._clock.now_ms()

    # --- changes -------------------------------------------------------------------------------------------------

    async def notify(self, event: str, ep: Endpoint | None = None, publish: bool = True) -> None:
        """Wake whoever waits on a change; ``publish`` also tells the dashboard (not for a routine check)."""
        async with self.changed:
            self.changed.notify_all()
        if self._bus is not None and publish:
            self._bus.publish({"kind": "endpoint_event", "event": event, "endpoint_id": ep.id if ep else None,
                               "healthy": ep.healthy if ep else None, "timestamp": self._clock.now_ms()})  # fmt: skip

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until ``predicate`` holds, woken by every change."""
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(predicate)

    async def save(self, ep: Endpoint) -> None:
        """Store ``ep`` as it is now, unless it was removed meanwhile (a check still running must not revive it)."""
        if self.endpoints.get(ep.id) is ep:
            await self._store.write([ep.record(self._clock.now_ms())])

    async def add(
        self, url: str, kind: Kind, *, name: str | None = None, models: Iterable[str] = (), owner: str | None = None
    ) -> tuple[Endpoint, bool]:
        """Add or update the endpoint at ``url`` (already normalised); returns it and whether it is new. Raises
        :class:`RegistryFull` when it is new and the registry holds ``endpoint_max`` endpoints."""
        now = self._clock.now_ms()
        ep = self.endpoints.get(self.by_url.get(url, ""))
        new = ep is None
        if ep is None:
            if len(self.endpoints) >= self.settings.endpoint_max:
                self.n_full += 1
                raise RegistryFull(self.settings.endpoint_max)
            ep = Endpoint(id=endpoint_id(url), url=url, kind=kind, created_at=now)
        before = json.dumps([ep.kind, ep.name, ep.added_by_admin, ep.owners, ep.declared_models])
        if owner is None:
            ep.added_by_admin = True
            ep.kind = kind
            ep.name = name if name is not None else ep.name
        else:
            ep.owners = [*(o for o in ep.owners if o != owner), owner][-MAX_OWNERS:]
        for model in models:
            if model not in ep.declared_models and len(ep.declared_models) < MAX_MODELS:
                ep.declared_models.append(model[:MAX_MODEL_CHARS])
        if new or json.dumps([ep.kind, ep.name, ep.added_by_admin, ep.owners, ep.declared_models]) != before:
            await self._store.write([ep.record(now)])
        if new:
            self.endpoints[ep.id] = ep
            self.by_url[url] = ep.id
            ep.next_check_at = 0
            self.check_soon.set()
            await self.notify("endpoint_added", ep)
        return ep, new

    async def agent_reported(
        self, agent_id: str, ollama_url: str | None, models: Iterable[str], peer: str | None = None
    ) -> Endpoint | None:
        """An agent (connected from address ``peer``) identified with ``ollama_url`` serving ``models``: register it
        (or add the agent as an owner). A loopback URL from an agent on another machine names that machine's server
        (:func:`localise`). A URL the registry refuses (credentials, another scheme...) or a full registry is
        counted, not fatal."""
        if not ollama_url:
            return None
        try:
            url = localise(normalise_url(ollama_url), peer)
            ep, _ = await self.add(url, "ollama", models=models, owner=agent_id)
            self.agent_endpoint[agent_id] = ep.id
            self.agent_endpoint.move_to_end(agent_id)
            while len(self.agent_endpoint) > MAX_AGENTS_REMEMBERED:
                self.agent_endpoint.popitem(last=False)
        except BadUrl as exc:
            self.n_refused_reports += 1
            logger.warning("agent %s reported an endpoint the hub refuses: %s", agent_id, exc)
            return None
        except (RegistryFull, StoreError):
            self.n_refused_reports += 1
            return None
        return ep

    async def remove(self, ep_id: str) -> Endpoint | None:
        ep = self.endpoints.pop(ep_id, None)
        if ep is None:
            return None
        self.by_url.pop(ep.url, None)
        keys = [k for k in self.probes if k[0] == ep_id]
        for key in keys:
            del self.probes[key]
        for key in [k for k in self.probe_wanted if k[0] == ep_id]:
            del self.probe_wanted[key]
        await self._store.write([DeleteRecord(KIND, ep_id), *(DeleteRecord(PROBE_KIND, " ".join(k)) for k in keys)])
        await self.notify("endpoint_removed", ep)
        return ep

    async def put_probe(self, ep_id: str, model: str, result: dict[str, Any]) -> None:
        if ep_id not in self.endpoints:
            return  # removed while it was being probed
        body = {"endpoint_id": ep_id, "model": model, **result}
        self.probes[(ep_id, model)] = body
        row = RecordRow(PROBE_KIND, f"{ep_id} {model}", self._clock.now_ms(), json.dumps(body, separators=(",", ":")))
        await self._store.write([PutRecord(row)])
        await self.notify("endpoint_probed", self.endpoints[ep_id])

    def want_probe(self, ep_id: str, model: str, force: bool = False) -> None:
        """Ask for a probe of ``model`` on ``ep_id`` (bounded: one entry per pair, at most 4 per endpoint slot)."""
        key = (ep_id, model)
        if key in self.probe_wanted:
            self.probe_wanted[key] = self.probe_wanted[key] or force
        elif len(self.probe_wanted) < self.settings.endpoint_max * 4:
            self.probe_wanted[key] = force
        self.probe_soon.set()

    # --- reads ---------------------------------------------------------------------------------------------------

    def endpoint_of(self, agent_id: str, url: str | None) -> tuple[Endpoint | None, str | None]:
        """The endpoint serving an agent's models, and what its load is counted under (the endpoint's id, else the
        normalised URL; None without a usable URL)."""
        ep = self.endpoints.get(self.agent_endpoint.get(agent_id, "")) or self.lookup(url)
        if ep is not None:
            return ep, ep.id
        try:
            return None, normalise_url(url) if url else None
        except BadUrl:
            return None, None

    def lookup(self, url: str | None) -> Endpoint | None:
        """The endpoint an agent's ``ollama_url`` names, if registered."""
        if not url:
            return None
        try:
            return self.endpoints.get(self.by_url.get(normalise_url(url), ""))
        except BadUrl:
            return None

    def probe_score(self, ep_id: str, model: str) -> float | None:
        result = self.probes.get((ep_id, model))
        score = result.get("score") if result else None
        return float(score) if isinstance(score, int | float) else None

    def summary(self, ep: Endpoint, connected: Callable[[str], bool] = lambda _: False) -> dict[str, Any]:
        probes = {m: self.probes[(ep.id, m)] for m in ep.all_models() if (ep.id, m) in self.probes}
        return {
            "id": ep.id,
            "url": ep.url,
            "kind": ep.kind,
            "name": ep.name,
            "added_by_admin": ep.added_by_admin,
            "owners": list(ep.owners),
            "owners_connected": [o for o in ep.owners if connected(o)],
            "health": "unknown" if ep.healthy is None else "healthy" if ep.healthy else "unhealthy",
            "failures": ep.failures,
            "last_ok_at": ep.last_ok_at,
            "last_check_at": ep.last_check_at,
            "last_error": ep.last_error,
            "models": [
                {"name": m, **(asdict(ep.models[m]) if m in ep.models else {}), "discovered": m in ep.models}
                for m in ep.all_models()
            ],
            "warm": [{"name": m, **asdict(w)} for m, w in ep.warm.items()],
            "vram_bytes": ep.vram_bytes,
            "probes": {
                m: {k: p.get(k) for k in ("score", "path", "probed_at", "tokens_per_s")} for m, p in probes.items()
            },
        }

    def stats(self) -> dict[str, int]:
        return {
            "endpoints": len(self.endpoints),
            "healthy": sum(ep.healthy is True for ep in self.endpoints.values()),
            "probes": len(self.probes),
            "bad_rows": self.n_bad_rows,
            "refused_reports": self.n_refused_reports,
            "full": self.n_full,
            "probes_running_max": self.n_probes_running_max,
        }


class RegistryFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the registry holds its maximum of {limit} endpoints")
        self.limit = limit
