"""The cost ledger: one :class:`CostEntry` per model call, journalled durably, summed in memory by dimension.

Entries go to the store's ``cost`` journal; the rollups (per task, goal, agent, model, endpoint, hub state, hour
and day, plus hub state by hour and by day for the budgets) are rebuilt from it at start, reading only the last
``retention_days``. :meth:`Ledger.prune` drops older rows from the journal and from memory.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.clock import Clock
from hub.costs.prices import PriceTable
from hub.store import Store
from hub.store.records import AppendJournal, PruneJournal
from shared.fields import Count, NoControl, TimestampMs

logger = logging.getLogger(__name__)

KIND = "cost"
DIMENSIONS = ("task", "goal", "agent", "model", "endpoint", "hub_state", "hour", "day")
Dimension = Literal["task", "goal", "agent", "model", "endpoint", "hub_state", "hour", "day"]
Name = Annotated[str, Field(max_length=256), NoControl]
Amount = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
PAGE = 1000
DAY_MS = 24 * 3600 * 1000


class CostEntry(BaseModel):
    """One model call (or, for an older sidecar, one attempt's total) as the ledger keeps it."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    ts: TimestampMs
    task_id: Name | None = None
    goal_id: Name | None = None
    agent_id: Name | None = None
    model: Name | None = None
    provider: Name | None = None
    endpoint: Name | None = None
    hub_state: Name | None = None
    tokens_in: Count = 0
    tokens_out: Count = 0
    usd: Amount | None = None
    """None until priced: :meth:`Ledger.record` fills it from the price table."""
    gpu_seconds: Amount | None = None
    eval_seconds: Amount | None = None
    wall_ms: Count | None = None
    source: Literal["sidecar", "hub"] = "sidecar"
    grant_id: Name | None = None
    generation: Count | None = None
    attempt_total: bool = False
    """Charged from an attempt's final usage (its sidecar sent no ``usage_report``), not from one call."""

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def key(self, dimension: str) -> str:
        """This entry's group under ``dimension`` (``-`` when it has none)."""
        if dimension == "hour":
            return datetime.fromtimestamp(self.ts / 1000, UTC).strftime("%Y-%m-%dT%H")
        if dimension == "day":
            return datetime.fromtimestamp(self.ts / 1000, UTC).strftime("%Y-%m-%d")
        value = getattr(self, {"task": "task_id", "goal": "goal_id", "agent": "agent_id"}.get(dimension, dimension))
        return str(value) if value is not None else "-"


@dataclass(slots=True)
class Totals:
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    gpu_seconds: float = 0.0
    eval_seconds: float = 0.0
    wall_ms: int = 0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def add(self, entry: CostEntry) -> None:
        self.calls += 1
        self.tokens_in += entry.tokens_in
        self.tokens_out += entry.tokens_out
        self.usd += entry.usd or 0.0
        self.gpu_seconds += entry.gpu_seconds or 0.0
        self.eval_seconds += entry.eval_seconds or 0.0
        self.wall_ms += entry.wall_ms or 0

    def as_json(self) -> dict[str, float | int]:
        return {"calls": self.calls, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "tokens": self.tokens, "usd": round(self.usd, 9), "gpu_seconds": round(self.gpu_seconds, 6),
                "eval_seconds": round(self.eval_seconds, 6), "wall_ms": self.wall_ms}  # fmt: skip


def group(entries: Iterable[CostEntry], dimension: str) -> dict[str, Totals]:
    out: dict[str, Totals] = defaultdict(Totals)
    for entry in entries:
        out[entry.key(dimension)].add(entry)
    return dict(out)


class Ledger:
    """The journal of model calls and its rollups (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, prices: PriceTable, retention_days: float, max_entries: int) -> None:
        self.store, self.clock, self.prices = store, clock, prices
        self.retention_ms = int(retention_days * DAY_MS)
        self.entries: deque[CostEntry] = deque(maxlen=max_entries)
        """The retained entries, oldest first (for ``since``/``until`` queries)."""
        self.rollups: dict[str, dict[str, Totals]] = {d: defaultdict(Totals) for d in DIMENSIONS}
        self.state_hour: dict[tuple[str, str], Totals] = defaultdict(Totals)
        self.state_day: dict[tuple[str, str], Totals] = defaultdict(Totals)
        self.total = Totals()
        self.n_corrupt = 0
        self.attempts: set[tuple[str | None, int | None]] = set()
        """(task, generation) of the attempts charged so far, per call or from their final usage."""

    def __repr__(self) -> str:
        return f"<Ledger entries={len(self.entries)} usd={self.total.usd:.4f} tokens={self.total.tokens}>"

    async def load(self) -> None:
        """Rebuild the rollups from the journal's last ``retention_days``; an unreadable row is counted, skipped."""
        since, after = self.clock.now_ms() - self.retention_ms, 0
        while rows := await self.store.read_journal(KIND, after_seq=after, limit=PAGE, since_ts=since):
            for row in rows:
                try:
                    self._add(CostEntry.model_validate_json(row.body))
                except ValidationError:
                    self.n_corrupt += 1
                    logger.warning("cost journal row %d is unreadable; skipped", row.seq)
            after = rows[-1].seq

    def priced(self, entry: CostEntry) -> CostEntry:
        """``entry`` with its USD from the price table when the reporter gave none."""
        if entry.usd is not None:
            return entry
        return entry.model_copy(
            update={"usd": self.prices.usd(entry.model, entry.provider, entry.tokens_in, entry.tokens_out)}
        )

    async def record(self, entry: CostEntry) -> CostEntry:
        """Price ``entry`` if needed, append it to the journal (durable on return), then count it."""
        entry = self.priced(entry)
        await self.store.write([AppendJournal(KIND, entry.ts, entry.model_dump_json(exclude_none=True))])
        self._add(entry)  # after the write, with no await between it and the caller's next step
        return entry

    def _add(self, entry: CostEntry) -> None:
        self.entries.append(entry)
        self.total.add(entry)
        if entry.generation is not None:
            self.attempts.add((entry.task_id, entry.generation))
        for dimension in DIMENSIONS:
            self.rollups[dimension][entry.key(dimension)].add(entry)
        state = entry.key("hub_state")
        self.state_hour[(state, entry.key("hour"))].add(entry)
        self.state_day[(state, entry.key("day"))].add(entry)

    def totals(self, dimension: str, key: str) -> Totals:
        return self.rollups[dimension].get(key) or Totals()

    def grouped(self, dimension: str, since: int | None = None, until: int | None = None) -> dict[str, Totals]:
        """Totals per group of ``dimension``, over the entries with ``since <= ts < until`` (all when unbounded)."""
        if since is None and until is None:
            return {key: totals for key, totals in self.rollups[dimension].items() if totals.calls}
        lo, hi = since or 0, until if until is not None else 2**63
        return group((e for e in self.entries if lo <= e.ts < hi), dimension)

    async def prune(self) -> int:
        """Drop entries older than the retention from the journal and from memory; returns how many left memory."""
        before = self.clock.now_ms() - self.retention_ms
        await self.store.write([PruneJournal(KIND, before)])
        kept = [e for e in self.entries if e.ts >= before]
        dropped = len(self.entries) - len(kept)
        if dropped:
            self.entries.clear()
            self.rollups = {d: defaultdict(Totals) for d in DIMENSIONS}
            self.state_hour.clear()
            self.state_day.clear()
            self.attempts.clear()
            self.total = Totals()
            for entry in kept:
                self._add(entry)
        return dropped
