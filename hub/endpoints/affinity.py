"""Repository affinity: which agents recently worked on which repositories, kept across restarts.

The ranker (hub/endpoints/scoring.py) prefers an agent whose checkout of the task's repository is warm: one that
was given a task there within ``window_s``. :meth:`Affinity.touch` notes it when a task is assigned (in memory,
no await, in the scheduler's round). When a task on a repository completes, :meth:`Affinity.run` (a loop reading
the lossless lifecycle feed) stores the pair as a record of kind ``affinity``: one write per completion, of its own
(nothing else waits on it), carrying the deletes of the pairs evicted since the last write. At start
:meth:`Affinity.load` reads them back, dropping pairs older than the window and keeping the newest
``max_entries`` (at most :data:`PER_AGENT` per agent). Memory and store stay bounded: the least recently used
agent's oldest pair leaves first, and a stored pair that leaves is deleted with the next write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable

from hub import lifecycle as L
from hub.clock import Clock, SystemClock
from hub.listeners import EventFeed
from hub.store import Change, DeleteRecord, PutRecord, RecordRow, Store, StoreError
from hub.tasks import Task

logger = logging.getLogger(__name__)

KIND = "affinity"
PER_AGENT = 8
"""Repositories remembered per agent (its most recent)."""
WINDOW_S = 7 * 86_400.0
MAX_ENTRIES = 4096


def key_of(agent_id: str, repo: str) -> str:
    return json.dumps([agent_id, repo], ensure_ascii=False)


class Affinity:
    """(agent, repository) -> when the agent last worked there (see the module docstring)."""

    def __init__(self, clock: Clock | None = None, window_s: float = WINDOW_S, max_entries: int = MAX_ENTRIES) -> None:
        self.clock = clock or SystemClock()
        self.window_ms, self.max_entries = int(window_s * 1000), max_entries
        self._agents: OrderedDict[str, OrderedDict[str, int]] = OrderedDict()
        """Least recently touched agent first; each agent's repositories oldest first."""
        self._n = 0
        self._stored: set[str] = set()
        """Keys of the pairs in the store."""
        self._gone: set[str] = set()
        """Keys of stored pairs evicted since the last write (deleted with the next one)."""
        self.written = asyncio.Condition()
        self.n_written = self.n_failed = self.n_bad = 0

    def __repr__(self) -> str:
        return f"<Affinity pairs={self._n} stored={len(self._stored)} written={self.n_written}>"

    def __len__(self) -> int:
        return self._n

    def has(self, agent_id: str, repo: str) -> bool:
        """Whether ``agent_id`` worked on ``repo`` within the window."""
        repos = self._agents.get(agent_id)
        ts = repos.get(repo) if repos is not None else None
        return ts is not None and ts > self.clock.now_ms() - self.window_ms

    def touch(self, agent_id: str, repo: str, ts: int | None = None) -> None:
        """``agent_id`` works on ``repo`` (at ``ts``, default now); evicts beyond the bounds (no await)."""
        repos = self._agents.get(agent_id)
        if repos is None:
            repos = self._agents[agent_id] = OrderedDict()
        else:
            self._agents.move_to_end(agent_id)
        if repo in repos:
            repos.move_to_end(repo)
        else:
            self._n += 1
        repos[repo] = self.clock.now_ms() if ts is None else ts
        while len(repos) > PER_AGENT:
            self._evicted(agent_id, repos.popitem(last=False)[0])
        while self._n > self.max_entries:
            oldest_agent, oldest = next(iter(self._agents.items()))
            self._evicted(oldest_agent, oldest.popitem(last=False)[0])
            if not oldest:
                del self._agents[oldest_agent]

    def _evicted(self, agent_id: str, repo: str) -> None:
        self._n -= 1
        key = key_of(agent_id, repo)
        if key in self._stored:
            self._stored.discard(key)
            self._gone.add(key)

    async def load(self, store: Store) -> None:
        """Read the stored pairs back: those within the window, the newest ``max_entries`` (the rest are deleted
        with the next write)."""
        horizon = self.clock.now_ms() - self.window_ms
        pairs: list[tuple[int, str, str]] = []
        for row in await store.load_records(KIND):
            try:
                body = json.loads(row.body)
                agent_id, repo, ts = body["agent_id"], body["repo"], body["ts"]
                if not (isinstance(agent_id, str) and isinstance(repo, str) and type(ts) is int):
                    raise ValueError("agent_id, repo and ts have the wrong types")
            except (ValueError, KeyError, TypeError) as exc:
                self.n_bad += 1
                logger.warning("affinity record %r is unreadable (%s); it is dropped", row.key[:200], exc)
                self._gone.add(row.key)
                continue
            if ts <= horizon or row.key != key_of(agent_id, repo):
                self._gone.add(row.key)
                continue
            pairs.append((ts, agent_id, repo))
        pairs.sort()
        for ts, agent_id, repo in pairs:
            self._stored.add(key_of(agent_id, repo))
            self.touch(agent_id, repo, ts)

    async def completed(self, store: Store, agent_id: str, repo: str) -> None:
        """A task of ``agent_id`` on ``repo`` completed: note it and store it (durable on return, unless the store
        refuses: then it is logged and counted, and the hub goes on with the pair in memory)."""
        ts = self.clock.now_ms()
        self.touch(agent_id, repo, ts)
        key = key_of(agent_id, repo)
        gone, self._gone = self._gone, set()
        body = json.dumps({"agent_id": agent_id, "repo": repo, "ts": ts}, ensure_ascii=False)
        changes: list[Change] = [PutRecord(RecordRow(KIND, key, ts, body))]
        changes += [DeleteRecord(KIND, k) for k in sorted(gone)]
        self._stored.add(key)
        try:
            await store.write(changes)
        except StoreError as exc:
            self.n_failed += 1
            self._stored.discard(key)
            self._gone |= gone
            logger.warning("repository affinity of %s on %s not stored: %s", agent_id, repo, exc)
            return
        self.n_written += 1
        async with self.written:
            self.written.notify_all()

    async def run(self, store: Store, feed: EventFeed, task_of: Callable[[str], Task | None]) -> None:
        """Store the affinity of every task on a repository that completes, from the lifecycle feed, forever."""
        async with feed.subscribe_lossless("affinity", from_seq=feed.delivered_seq) as events:
            async for event in events:
                if not isinstance(event, L.TaskEnded) or event.then != "completed" or event.agent_id is None:
                    continue
                task = task_of(event.task_id)
                if task is not None and task.repo:
                    await self.completed(store, event.agent_id, task.repo)
