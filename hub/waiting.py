"""Why a queued task waits when no connected agent can ever run it.

:func:`waiting_reason` is the decision, a pure function of one task and what the connected agents offer (busy ones
too: a task waiting for a busy agent that can run it has no reason to show). :class:`WaitingReasons` keeps the
``waiting_reason`` of queued tasks current at a bounded cost: it looks only after a round, only at tasks not yet
looked at for the current fleet (those that entered the queue since are its newest, so that look stops at the
first task already seen), and everything again only when agents joined or left; never more than ``budget`` tasks
per slice, and tasks with the same needs share one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.routing import Needs, needs_of, route_needs
from hub.scheduler import Candidate
from hub.tasks import Task, TaskStatus, WaitingReason, set_waiting

if TYPE_CHECKING:
    from hub.queue import TaskQueue

SHOWN_NAMES = 8
"""Names listed in a reason's detail before the rest is counted."""


@dataclass(frozen=True, slots=True)
class Offers:
    """What the connected agents offer: each by id (for pinned tasks) and each distinct offer once."""

    by_id: Mapping[str, Candidate]
    profiles: tuple[Candidate, ...]

    @classmethod
    def of(cls, agents: Iterable[Candidate]) -> Offers:
        by_id = {a.agent_id: a for a in agents}
        distinct: dict[tuple[object, ...], Candidate] = {}
        for a in by_id.values():
            distinct.setdefault((a.capabilities, a.executors, a.models, a.repos), a)
        return cls(by_id, tuple(distinct.values()))


def _names(names: Iterable[str]) -> str:
    ordered = sorted(set(names))
    if not ordered:
        return "none"
    shown = ", ".join(ordered[:SHOWN_NAMES])
    return shown + (f" (+{len(ordered) - SHOWN_NAMES} more)" if len(ordered) > SHOWN_NAMES else "")


def _reason(code: str, detail: str) -> WaitingReason:
    return {"code": code, "detail": detail[:1000]}


def waiting_reason(task: Task, offers: Offers, needs: Needs | None = None) -> WaitingReason | None:
    """Why no connected agent can ever run ``task``, or None when one can (whether or not it is free now).

    Codes: ``no_agent_connected``, ``pinned_agent_not_connected``, ``no_agent_with_capabilities``,
    ``no_agent_with_executor``, ``no_agent_with_model``, ``no_agent_can_reach_repo``.
    """
    if task.assign_to is not None:
        pinned = offers.by_id.get(task.assign_to)
        if pinned is None:
            return _reason("pinned_agent_not_connected", f"pinned to agent {task.assign_to}, which is not connected")
        pool: tuple[Candidate, ...] = (pinned,)
        who = f"agent {task.assign_to} offers"
    else:
        if not offers.profiles:
            return _reason("no_agent_connected", "no agent is connected")
        pool, who = offers.profiles, "connected agents offer"
    capable = [a for a in pool if a.capabilities.issuperset(task.needed_capabilities)]
    if not capable:
        return _reason(
            "no_agent_with_capabilities",
            f"needs capabilities {_names(task.needed_capabilities)}; "
            f"{who} {_names(c for a in pool for c in a.capabilities)}",
        )
    if task.repo is not None:
        capable = [a for a in capable if a.repos is None or task.repo in a.repos]
        if not capable:
            return _reason("no_agent_can_reach_repo", f"no agent can reach repo {task.repo}")
    needs = needs or needs_of(task)
    if any(route_needs(needs, a.executors, a.models) is not None for a in capable):
        return None
    offered = {e for a in capable for e in a.executors or ()}  # every agent left here said what it runs
    wanted = " or ".join(needs.targets)
    if offered.isdisjoint(needs.targets):
        return _reason("no_agent_with_executor", f"needs executor {wanted}; {who} {_names(offered)}")
    served = _names(m for a in capable if not (a.executors or frozenset()).isdisjoint(needs.targets) for m in a.models)
    if needs.model is not None:
        return _reason("no_agent_with_model", f"needs model {needs.model} ({wanted}); {who} models {served}")
    return _reason("no_agent_with_model", f"needs a model to run with {wanted}; {who} models {served}")


class WaitingReasons:
    """Keeps ``Task.waiting_reason`` of queued tasks current, one bounded :meth:`slice` at a time."""

    def __init__(
        self,
        queue: TaskQueue,
        agents: Callable[[], Iterable[Candidate]],
        version: Callable[[], int],
        on_change: Callable[[Task], None],
        budget: int = 256,
    ) -> None:
        self._queue = queue
        self._agents = agents
        self._version = version
        self._on_change = on_change
        self.budget = budget
        self._seen: int | None = None
        self._offers = Offers({}, ())
        self._memo: dict[tuple[object, ...], WaitingReason | None] = {}
        self._stamps: dict[str, tuple[int, int]] = {}
        """Task id -> (fleet version, task generation) it was last looked at for."""
        self._sweep = False
        """Every queued task must be looked at again (the fleet changed, or a look ran out of budget)."""
        self.n_checked = 0
        self.n_changed = 0

    def __repr__(self) -> str:
        return f"<WaitingReasons checked={self.n_checked} changed={self.n_changed} sweep={self._sweep}>"

    def slice(self) -> bool:
        """Look at up to ``budget`` queued tasks not yet looked at for this fleet; True while more remain."""
        queue = self._queue
        if not queue.count(TaskStatus.QUEUED):
            self._stamps.clear()
            return False
        version = self._version()
        if version != self._seen:
            self._seen, self._offers, self._sweep = version, Offers.of(self._agents()), True
            self._memo.clear()
        budget = self.budget
        if not self._sweep:  # only the tasks that entered the queue since the last look, newest first
            newest = queue.latest(TaskStatus.QUEUED, 1)  # most rounds stop at this one: nothing new
            if newest and self._stamps.get(newest[0].id) == (version, newest[0].generation):
                return False
            newest = queue.latest(TaskStatus.QUEUED, budget)
            for task in newest:
                if self._stamps.get(task.id) == (version, task.generation):
                    return False
                self._check(task, version)
            self._sweep = len(newest) == budget  # there may be older ones not looked at
            return self._sweep
        for task in queue.oldest(TaskStatus.QUEUED):  # a live view: nothing here changes a task's status
            if self._stamps.get(task.id) == (version, task.generation):
                continue
            if not budget:
                return True
            budget -= 1
            self._check(task, version)
        self._sweep = False
        if len(self._stamps) > 2 * queue.count(TaskStatus.QUEUED) + self.budget:
            tasks = queue.tasks
            self._stamps = {
                tid: s
                for tid, s in self._stamps.items()
                if (t := tasks.get(tid)) is not None and t.status is TaskStatus.QUEUED
            }
        return False

    def _check(self, task: Task, version: int) -> None:
        needs = needs_of(task)
        key = (task.assign_to, tuple(task.needed_capabilities), needs.targets, needs.model, task.repo)
        if key in self._memo:
            reason = self._memo[key]
        else:
            if len(self._memo) >= 4096:
                self._memo.clear()
            reason = self._memo[key] = waiting_reason(task, self._offers, needs)
        if reason is None and (task.waiting_reason or {}).get("code") == "file_conflict":
            reason = task.waiting_reason  # held back by the scheduler (hub/repos/conflicts.py), not by the fleet
        self.n_checked += 1
        self._stamps[task.id] = (version, task.generation)
        if reason is None and (task.waiting_reason or {}).get("code") == "goal_concurrency":
            return  # held back by its goal's quota (hub/costs/quotas.py), which clears the reason when it lets it go
        if reason is None and (task.waiting_reason or {}).get("code") == "retry_backoff":
            return  # waits out its backoff (hub/retry_backoff.py), which clears the reason when it is over
        if set_waiting(task, reason):
            self.n_changed += 1
            self._on_change(task)
