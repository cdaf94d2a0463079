"""Helpers of the regression tests for the original AgentCom's bugs (test_regressions_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle

FAST = {"acceptance_timeout_s": 0.3, "sweep_interval_s": 0.05}


async def wait_until(handle: HubHandle, predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    """Wait until ``predicate`` holds, re-checking on every event the hub publishes (no polling)."""
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(timeout_s * SCALE):
            while not predicate():
                await events.get()


def events_of(handle: HubHandle, tid: str) -> list[str]:
    return [h["event"] for h in handle.hub.queue.tasks[tid].history]


def is_type(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


async def sim_for(handle: HubHandle, agent_id: str, token: str | None = None, **kwargs: Any) -> AgentSim:
    sim = AgentSim(handle.ws_url, agent_id, token or await handle.mint_token(agent_id), **kwargs)
    await sim.connect()
    return sim
