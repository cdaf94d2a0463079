"""The fleet: connected agents, hand-out of tasks to them, and their release when an attempt ends.

It joins the three owners (task queue, agent registry, scheduler) without writing around any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any

from hub.agents import Agent, AgentRegistry, AgentState, InvalidAgentTransition
from hub.clock import Clock
from hub.events import EventBus
from hub.queue import TaskQueue
from hub.repos.conflicts import ConflictGate
from hub.routing import decision_record
from hub.scheduler import Candidate, Match, Scheduler
from hub.socket_counters import SocketCounters
from hub.store import StoreError
from hub.tasks import Task
from hub.waiting import WaitingReasons
from shared.payloads import RoutingDecision
from shared.protocol import Message, TaskAssign, TaskCancelled, encode
from shared.repos import RepoCheckout

if TYPE_CHECKING:
    from hub.repos.registry import RepoRegistry

logger = logging.getLogger(__name__)

RESTART_PENDING = "restart_pending"
"""Agent flag: a restart was asked while it ran a task; it gets no new task and restarts when idle (hub/restarts.py)."""
NO_NEW_WORK = frozenset({RESTART_PENDING, "restarting"})
"""Flags of an agent about to restart (told to, or saying so itself): the scheduler passes it over."""


def assign_message(task: Task, checkout: RepoCheckout | None = None) -> TaskAssign:
    return TaskAssign(
        task_id=task.id,
        description=task.description,
        generation=task.generation,
        assigned_at=task.assigned_at or 0,
        metadata=task.metadata,
        repo=task.repo,
        branch=task.branch,
        file_hints=task.file_hints,
        success_criteria=task.success_criteria,
        verification_steps=task.verification_steps,
        complexity=task.complexity,
        routing_decision=RoutingDecision.model_validate(task.routing_decision) if task.routing_decision else None,
        executor=task.executor,
        skip_verification=task.skip_verification,
        verification_timeout_ms=task.verification_timeout_ms,
        max_verification_retries=task.max_verification_retries,
        checkout=checkout,
    )


class Fleet:
    def __init__(self, queue: TaskQueue, agents: AgentRegistry, bus: EventBus, clock: Clock) -> None:
        self.queue = queue
        self.agents = agents
        self._bus = bus
        self._clock = clock
        self.version = 0
        """Bumped whenever an agent joins or leaves: what the fleet can run may have changed."""
        self.waiting = WaitingReasons(queue, self._connected, lambda: self.version, self._publish_waiting)
        self.scheduler = Scheduler(
            queue.queued_in_order, self._idle, queue.deps_done, self.dispatch, explain=self.waiting.slice
        )
        self.repos: RepoRegistry | None = None
        """The repository registry (hub/repos), once the hub attached it: reachability, conflicts, checkouts."""
        self.scheduler.gate = self._gate
        self.n_send_failures = 0
        self.socket_counters = SocketCounters()

    def _idle(self) -> list[Candidate]:
        return [
            Candidate(a.agent_id, a.capabilities, a.executors, a.models, self._reach(a))
            for a in self.agents.idle()
            if not a.flags & NO_NEW_WORK  # it restarts (now, or once its task is done): no new work meanwhile
        ]

    def _connected(self) -> list[Candidate]:
        """Every connected agent, busy or not (what the fleet can run at all)."""
        return [
            Candidate(a.agent_id, a.capabilities, a.executors, a.models, self._reach(a))
            for a in self.agents.connected.values()
        ]

    def _reach(self, agent: Agent) -> frozenset[str] | None:
        """The repositories an agent reaches; None while the registry is empty (a repo is then only a label)."""
        return agent.reachable_repos if self.repos is not None and len(self.repos) else None

    def _gate(self) -> ConflictGate | None:
        if self.repos is None or not len(self.repos):
            return None
        return ConflictGate((t for t in self.queue.in_flight() if t.repo is not None), self._publish_waiting)

    def _publish_waiting(self, task: Task) -> None:
        reason = task.waiting_reason
        self._bus.publish(
            {
                "kind": "task_event",
                "event": "task_waiting",
                "task_id": task.id,
                "status": str(task.status),
                "agent_id": None,
                "priority": task.priority,
                "goal_id": task.goal_id,
                "timestamp": self._clock.now_ms(),
                "reason": reason["code"] if reason else None,
            }
        )

    async def send(self, agent: Agent, message: Message) -> bool:
        """Queue ``message`` for the agent; never waits on its socket (a peer that does not read is dropped)."""
        if agent.sender is None:
            return False
        try:
            await agent.sender.send(encode(message))
            return True
        except Exception as exc:  # a closing or dropped socket; its own handler disconnects the agent
            self.n_send_failures += 1
            logger.info("send to %s failed: %s", agent.agent_id, exc)
            return False

    def _publish_agent(self, event: str, agent: Agent, **extra: Any) -> None:
        # Subscribers look the agent up when they need its details (the dashboard does, once per batch).
        self._bus.publish(
            {
                "kind": "agent_event",
                "event": event,
                "agent_id": agent.agent_id,
                "timestamp": self._clock.now_ms(),
                **extra,
            }
        )

    async def connect(self, agent: Agent) -> Agent | None:
        """Register a newly identified agent; returns a replaced older connection (the caller closes it).

        If a task is still in flight for this agent (it reconnected, or the hub restarted), the agent waits in
        ``assigned`` for its ``state_report``; one that never comes is reclaimed by the sweep.
        """
        old = self.agents.add(agent)
        self.version += 1
        task = self.queue.assigned_to(agent.agent_id)
        if task is not None:
            await agent.fire("assign", self._clock.now_ms(), task.id)
            agent.flags.add("awaiting_state_report")
            agent.awaiting_report_since = self._clock.now_ms()
        self._publish_agent("agent_joined", agent)
        return old

    async def disconnect(self, agent: Agent) -> None:
        """The agent's socket is gone. Its task is not reclaimed at once: the sweep waits the reconnect grace."""
        if await self.agents.remove(agent):
            self.version += 1
            self._publish_agent("agent_left", agent)
            self.scheduler.wake()  # tasks only it could run now say why they wait

    async def dispatch(self, pairs: list[Match]) -> Coroutine[Any, Any, None]:
        """Book planned pairs: assign them in memory and queue their commit, before any await, so they join the
        commit of the submit or completion that made them possible. Returns their delivery (awaiting it waits for
        that commit, then pushes ``task_assign`` to each agent), so the next round need not wait for the disk."""
        now = self._clock.now_ms()
        booked: list[tuple[Task, str]] = []
        for task, agent_id, chosen in pairs:
            agent = self.agents.get(agent_id)
            if agent is None or agent.state != AgentState.IDLE:
                continue
            task.routing_decision = decision_record(chosen, now).stored()
            if self.repos is not None and task.repo is not None:
                task.base_commit = self.repos.base_commit(task.repo)
            booked.append((task, agent_id))
        assigned, committed = self.queue.assign_many(booked)
        for task in assigned:  # only this loop books agents, and it runs alone: none can be booked twice
            agent = self.agents.get(task.assigned_to or "")
            if agent is not None and agent.state == AgentState.IDLE:
                await agent.fire("assign", now, task.id)
        return self._deliver(assigned, committed)

    async def _deliver(self, assigned: list[Task], committed: Awaitable[None]) -> None:
        try:
            await committed
        except StoreError:
            for task in assigned:
                if (agent := self.agents.get(task.assigned_to or "")) is not None:
                    await self._release(agent, None)
            raise
        for task in assigned:
            agent = self.agents.get(task.assigned_to or "")
            if agent is not None:
                checkout = None if self.repos is None else self.repos.checkout(task, task.base_commit)
                await self.send(agent, assign_message(task, checkout))

    async def _release(self, agent: Agent, task_id: str | None) -> None:
        if task_id is not None and agent.current_task_id not in (None, task_id):
            return
        try:
            if agent.state in (AgentState.ASSIGNED, AgentState.WORKING, AgentState.BLOCKED):
                await agent.fire("release", self._clock.now_ms())
        except InvalidAgentTransition as exc:
            logger.warning("release ignored: %s", exc)
        agent.flags.discard("awaiting_state_report")
        agent.awaiting_report_since = None
        self._publish_agent("status_changed", agent)
        self.scheduler.wake()

    async def attempt_ended(self, agent_id: str | None, task_id: str, ack: str) -> None:
        """Free the agent after its attempt at ``task_id`` ended with ``ack`` (complete/retried/dead_letter)."""
        agent = self.agents.get(agent_id) if agent_id else None
        if agent is not None:
            if ack == "complete":
                agent.n_completed += 1
            else:
                agent.n_failed += 1
            await self._release(agent, task_id)
        self.scheduler.wake()

    async def cancel_on_agent(self, agent_id: str | None, task_id: str) -> None:
        """Tell the agent running ``task_id`` to stop, and free it."""
        agent = self.agents.get(agent_id) if agent_id else None
        if agent is not None:
            await self.send(agent, TaskCancelled(task_id=task_id, timestamp=self._clock.now_ms()))
            await self._release(agent, task_id)
        self.scheduler.wake()
