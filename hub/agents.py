"""Connected agents and their state machine (``transitions.AsyncMachine``).

    idle --assign--> assigned --accept--> working --block--> blocked --unblock--> working
      ^                 |                    |                  |
      +---- release ----+--------------------+------------------+        any --go_offline--> offline (terminal)

The FSM tracks what the agent is doing; the task queue owns the tasks. Long work never runs in callbacks (a new
trigger would cancel it), so the machine has none.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from transitions import MachineError
from transitions.extensions.asyncio import AsyncMachine, AsyncTransition

from hub.clock import Clock

logger = logging.getLogger(__name__)


class AgentState(StrEnum):
    IDLE = "idle"
    ASSIGNED = "assigned"
    WORKING = "working"
    BLOCKED = "blocked"
    OFFLINE = "offline"


S = AgentState
TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "assign", "source": S.IDLE, "dest": S.ASSIGNED},
    {"trigger": "accept", "source": S.ASSIGNED, "dest": S.WORKING},
    {"trigger": "resume", "source": [S.IDLE, S.ASSIGNED], "dest": S.WORKING},
    {"trigger": "release", "source": [S.ASSIGNED, S.WORKING, S.BLOCKED], "dest": S.IDLE},
    {"trigger": "block", "source": S.WORKING, "dest": S.BLOCKED},
    {"trigger": "unblock", "source": S.BLOCKED, "dest": S.WORKING},
    {"trigger": "go_offline", "source": [S.IDLE, S.ASSIGNED, S.WORKING, S.BLOCKED], "dest": S.OFFLINE},
]


class _DirectTransition(AsyncTransition):
    """``AsyncTransition`` that, when nothing is attached to it (no conditions, no callbacks on it, on its states
    or on the machine), just moves the model to ``dest``; anything attached takes the full path."""

    async def execute(self, event_data: Any) -> bool:  # type: ignore[override]  # the library's async override
        machine = event_data.machine
        if (
            self.prepare
            or self.conditions
            or self.before
            or self.after
            or machine.before_state_change
            or machine.after_state_change
            or machine.get_state(self.source).on_exit
            or not self.dest
        ):
            return bool(await super().execute(event_data))
        dest = machine.get_state(self.dest)
        if dest.on_enter or dest.final:
            return bool(await super().execute(event_data))
        machine.set_state(self.dest, event_data.model)
        event_data.update(dest)
        return True


class AgentMachine(AsyncMachine):
    """``AsyncMachine`` for a machine without callbacks, at a quarter of the cost per trigger (8 vs 32 us; three
    triggers per task): empty callback lists are not gathered, no task is registered for cancelling callbacks,
    and a transition with nothing attached just sets the state (:class:`_DirectTransition`). Source checks,
    refusals (``MachineError``) and the states are the library's; attach a callback and it takes the full path.
    """

    transition_cls = _DirectTransition

    async def callbacks(self, funcs: Any, event_data: Any) -> None:  # type: ignore[override]  # as execute
        if funcs:
            await super().callbacks(funcs, event_data)

    async def process_context(self, func: Any, model: Any) -> Any:
        # The base class registers the running task so a later trigger can cancel this one's callbacks; with no
        # callbacks there is nothing to cancel, and the bookkeeping is a third of a trigger's cost.
        return await func()

    @staticmethod
    async def await_all(callables: Any) -> list[Any]:
        if not callables:
            return []
        return await AsyncMachine.await_all(callables)


class InvalidAgentTransition(Exception):
    """A trigger the agent's current state does not allow."""


class Sender(Protocol):
    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(eq=False)
class Agent:
    """One connected agent. ``state`` is managed by the machine; mutate it only through :meth:`fire`."""

    agent_id: str
    connected_at: int
    name: str | None = None
    capabilities: frozenset[str] = frozenset()
    models: tuple[str, ...] = ()
    executors: frozenset[str] | None = None
    """What it can run (see :func:`executors_of`); None: an older client that did not say, routed as before."""
    sandbox_level: str | None = None
    client_type: str | None = None
    ollama_url: str | None = None
    pm2_name: str | None = None
    """The pm2 process the sidecar runs as (from ``identify``'s ``pm2_info``), for restarts by hand."""
    sender: Sender | None = None
    last_seen: int = 0
    idle_since: int = 0
    current_task_id: str | None = None
    last_state_change: int = 0
    flags: set[str] = field(default_factory=set)
    resources: dict[str, Any] = field(default_factory=dict)
    reachable_repos: frozenset[str] = frozenset()
    """Repositories the agent said it can fetch (``repo_reach``)."""
    n_completed: int = 0
    n_failed: int = 0
    awaiting_report_since: int | None = None
    """Set when the agent reconnected with a task in flight and has not yet said what it is doing."""
    state: str = AgentState.IDLE

    async def fire(self, trigger: str, now_ms: int, task_id: str | None = None) -> None:
        """Run ``trigger``; raises :class:`InvalidAgentTransition` when the current state does not allow it."""
        try:
            await getattr(self, trigger)()
        except MachineError as exc:
            raise InvalidAgentTransition(f"{self.agent_id}: {exc.value}") from None
        self.last_state_change = now_ms
        if self.state == AgentState.IDLE:
            self.current_task_id = None
            self.idle_since = now_ms
        elif task_id is not None:
            self.current_task_id = task_id

    def view(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "name": self.name or self.agent_id,
            "status": "online" if self.state != AgentState.OFFLINE else "offline",
            "fsm_state": self.state,
            "current_task_id": self.current_task_id,
            "capabilities": sorted(self.capabilities),
            "models": list(self.models),
            "executors": sorted(self.executors) if self.executors is not None else None,
            "sandbox_level": self.sandbox_level,
            "pm2_name": self.pm2_name,
            "client_type": self.client_type,
            "connected_at": self.connected_at,
            "last_seen": self.last_seen,
            "last_state_change": self.last_state_change,
            "flags": sorted(self.flags),
            "resources": finite_resources(self.resources),
            "completed": self.n_completed,
            "failed": self.n_failed,
        }


def executors_of(
    declared: list[str] | None, client_type: str | None, capabilities: list[str], ollama_url: str | None
) -> frozenset[str] | None:
    """The executors an agent runs, from its ``identify``: the list it declares, else, for a sidecar from before
    the list existed, what such a sidecar has (shell always, ollama with an ``ollama_url``, claude if its
    capabilities name it: its API key is not sent). Other clients that do not say get None (anything is tried)."""
    if declared is not None:
        return frozenset(declared)
    if client_type == "sidecar":
        return frozenset(
            {"shell", *(["ollama"] if ollama_url else []), *(["claude"] if "claude" in capabilities else [])}
        )
    return None


def finite_resources(report: dict[str, Any]) -> dict[str, Any]:
    """A resource report as it may be shown: numbers that are finite and not negative (the protocol refuses
    others; whatever slipped in is left out, since a JSON encoder writes NaN, which browsers refuse to parse)."""
    return {
        k: v
        for k, v in report.items()
        if isinstance(k, str)
        and (
            v is None
            or isinstance(v, str)
            or (isinstance(v, int | float) and (isinstance(v, bool) or (math.isfinite(v) and v >= 0)))
        )
    }


class AgentRegistry:
    """Connected agents by id, all driven by one machine; a reconnect replaces the old entry."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._machine = AgentMachine(
            model=None,
            states=list(AgentState),
            transitions=TRANSITIONS,
            initial=AgentState.IDLE,
            auto_transitions=False,
            queued=False,
            model_attribute="state",
        )
        self.connected: dict[str, Agent] = {}
        self.departed: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"<AgentRegistry connected={len(self.connected)} departed={len(self.departed)}>"

    def add(self, agent: Agent) -> Agent | None:
        """Register ``agent``; returns the entry it replaced (a reconnect), which the caller must close."""
        old = self.connected.pop(agent.agent_id, None)
        if old is not None:
            self._machine.remove_model(old)
        agent.state = AgentState.IDLE
        self._machine.add_model(agent, initial=AgentState.IDLE)
        now = self._clock.now_ms()
        agent.idle_since = agent.last_seen = agent.last_state_change = now
        self.connected[agent.agent_id] = agent
        self.departed.pop(agent.agent_id, None)
        return old

    async def remove(self, agent: Agent) -> bool:
        """Take ``agent`` offline; False when a newer connection for the same id already replaced it."""
        if self.connected.get(agent.agent_id) is not agent:
            return False
        del self.connected[agent.agent_id]
        if agent.state != AgentState.OFFLINE:
            await agent.fire("go_offline", self._clock.now_ms())
        self._machine.remove_model(agent)
        view = agent.view()
        view["disconnected_at"] = self._clock.now_ms()
        self.departed[agent.agent_id] = view
        return True

    def get(self, agent_id: str) -> Agent | None:
        return self.connected.get(agent_id)

    def idle(self) -> list[Agent]:
        """Idle agents, longest idle first (so work spreads across the fleet)."""
        return sorted((a for a in self.connected.values() if a.state == AgentState.IDLE), key=lambda a: a.idle_since)

    def views(self) -> list[dict[str, Any]]:
        live = [a.view() for a in self.connected.values()]
        return sorted(live, key=lambda v: v["agent_id"]) + sorted(self.departed.values(), key=lambda v: v["agent_id"])
