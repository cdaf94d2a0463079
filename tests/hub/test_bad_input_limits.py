"""Violation limits: repeated bad frames close an agent's socket and start an escalating cooldown; each test gets
its own hub."""

from __future__ import annotations

from typing import Any

import pytest

from hub.clock import ManualClock
from hub.violations import ViolationTracker
from shared.agent_sim import AgentSim
from tests.hub.bad_input_hub import assert_serves_a_task


async def closed(sim: AgentSim) -> tuple[int | None, str | None]:
    """Wait for the hub to close ``sim``'s socket; its close code and reason."""
    with pytest.raises(ConnectionError):
        await sim.wait_for(lambda m: False)
    assert sim.ws is not None
    return sim.ws.close_code, sim.ws.close_reason


async def test_ten_violations_close_and_cooldown_refuses_reidentify(hub) -> None:
    """Ten invalid frames close the socket with 1008; identifying again within the cooldown is closed with 1008."""
    token = await hub.mint_token("noisy")
    sim = AgentSim(hub.ws_url, "noisy", token)
    await sim.connect()
    for n in range(10):
        await sim.send_raw(f"not json {n}")
    assert await closed(sim) == (1008, "too many validation errors")
    assert [e["error"] for e in sim.errors] == ["invalid_json"] * 10
    assert hub.hub.violations.stats() == {"violations": 10, "disconnects": 1}

    again = AgentSim(hub.ws_url, "noisy", token)
    await again.connect(identify=False)
    await again.send({"type": "identify", "agent_id": "noisy", "token": token})
    code, reason = await closed(again)
    assert code == 1008 and reason is not None and reason.startswith("cooldown active: retry in ")
    assert not again.identified.is_set() and hub.hub.agents.get("noisy") is None

    r = await hub.http.get("/health")
    assert r.json()["status"] == "ok" and r.json()["violations"] == {"violations": 10, "disconnects": 1}
    await assert_serves_a_task(hub)


async def test_nine_violations_keep_the_socket(hub) -> None:
    """Nine invalid frames within the window are answered but do not close the socket."""
    token = await hub.mint_token("clumsy")
    sim = AgentSim(hub.ws_url, "clumsy", token)
    await sim.connect()
    for _ in range(9):
        await sim.send_raw("{")
    await sim.send({"type": "ping"})
    await sim.wait_for(lambda m: m.get("type") == "pong")
    assert len(sim.errors) == 9
    await sim.close()


async def test_violations_before_identify_close_the_connection_only(hub) -> None:
    """Ten bad frames before identify close that connection; the agent may still identify on a new one."""
    token = await hub.mint_token("early")
    sim = AgentSim(hub.ws_url, "early", token)
    await sim.connect(identify=False)
    for _ in range(10):
        await sim.send({"type": "ping"})
    assert await closed(sim) == (1008, "too many validation errors")
    fresh = AgentSim(hub.ws_url, "early", token)
    await fresh.connect()
    assert hub.hub.agents.get("early") is not None
    await fresh.close()


# (actions, expected results): "v" records a violation (result: closes?), "d" a disconnect (result: cooldown s),
# "+N" advances the clock N seconds, "c" reads the remaining cooldown.
TRACKER: list[tuple[str, list[str], list[Any]]] = [
    ("ninth violation does not close", ["v"] * 9, [False] * 9),
    ("tenth violation closes", ["v"] * 10, [False] * 9 + [True]),
    ("window slides", ["v"] * 9 + ["+61", "v"], [False] * 9 + [None, False]),
    ("inside the window they add up", ["v"] * 9 + ["+59", "v"], [False] * 9 + [None, True]),
    ("cooldowns escalate", ["d", "d", "d", "d"], [30.0, 60.0, 300.0, 300.0]),
    ("disconnect clears the count", ["v"] * 9 + ["d", "v"], [False] * 9 + [30.0, False]),
    ("cooldown runs down", ["c", "d", "c", "+10", "c", "+20", "c"], [0.0, 30.0, 30.0, None, 20.0, None, 0.0]),
]


@pytest.mark.parametrize(("case", "actions", "results"), TRACKER, ids=[t[0] for t in TRACKER])
def test_violation_tracker(case: str, actions: list[str], results: list[Any]) -> None:
    """The tracker closes at the 10th violation within 60 s and escalates cooldowns 30 s, 60 s, 300 s."""
    clock = ManualClock()
    tracker = ViolationTracker(clock, limit=10, window_s=60, cooldowns_s=(30.0, 60.0, 300.0))
    out: list[Any] = []
    for action in actions:
        if action == "v":
            out.append(tracker.record("agent"))
        elif action == "d":
            out.append(tracker.disconnected("agent"))
        elif action == "c":
            out.append(tracker.cooldown_remaining_s("agent"))
        else:
            clock.advance(float(action))
            out.append(None)
    assert out == results


def test_violation_tracker_keys_are_independent() -> None:
    """One offender's violations and cooldown do not affect another key."""
    tracker = ViolationTracker(ManualClock(), limit=2, window_s=60, cooldowns_s=(30.0,))
    assert tracker.record("a") is False and tracker.record("a") is True
    tracker.disconnected("a")
    assert tracker.record("b") is False
    assert tracker.cooldown_remaining_s("b") == 0.0 and tracker.cooldown_remaining_s("a") == 30.0


async def test_replies_keep_frame_order_around_a_binary_frame(hub, make_agent) -> None:
    """A binary frame's error is answered after the replies to the frames sent before it."""
    sim = await make_agent(behaviour="ignore")
    tid = await hub.submit(description="ordered")
    gen = (await sim.wait_for(lambda m: m.get("type") == "task_assign"))["generation"]
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": gen})
    await sim.send({"type": "task_complete", "task_id": tid, "generation": gen, "result": {}})
    assert sim.ws is not None
    await sim.ws.send(b"\x00")
    await sim.send({"type": "ping"})
    await sim.wait_for(lambda m: m.get("type") == "pong")
    replies = [
        m.get("status") or m.get("error") or m["type"]
        for m in sim.inbox
        if m["type"] not in ("task_assign", "identified")
    ]
    assert replies == ["accepted", "complete", "invalid_json", "pong"]
