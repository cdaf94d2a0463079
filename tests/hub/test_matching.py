"""Matching that knows what an agent can run: why a task waits (hub/waiting.waiting_reason) as a table, then a real
hub with agents that say what they run, over raw WebSocket frames."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hub import tasks
from hub.scheduler import Candidate
from hub.tasks import Task
from hub.waiting import Offers, waiting_reason
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle, wait_tasks

NOW = 1_700_000_000_000


def task(tier: str = "standard", needs: tuple[str, ...] = (), assign_to: str | None = None, **fields: Any) -> Task:
    return Task(
        id="t",
        description="d",
        created_at=NOW,
        updated_at=NOW,
        needed_capabilities=list(needs),
        assign_to=assign_to,
        complexity={"effective_tier": tier},
        **fields,
    )


def runs(aid: str, executors: str | None, *models: str, caps: tuple[str, ...] = ()) -> Candidate:
    return Candidate(aid, frozenset(caps), frozenset(executors.split()) if executors is not None else None, models)


LOCAL = runs("local", "shell ollama", "qwen", caps=("code",))
BARE = runs("bare", "shell", caps=("code",))
CLOUD = runs("cloud", "shell claude")
REASONS: list[tuple[str, Task, list[Candidate], str | None, str]] = [
    # (case, task, connected agents, code or None, text the detail contains)
    ("nobody connected", task(), [], "no_agent_connected", "no agent is connected"),
    ("runnable by a connected agent", task(), [LOCAL], None, ""),
    ("complex runs on a local model: no reason", task("complex"), [LOCAL], None, ""),
    (
        "complex, no agent with claude or a model",
        task("complex"),
        [BARE],
        "no_agent_with_executor",
        "needs executor claude or ollama or openai; connected agents offer shell",
    ),
    (
        "explicit executor nobody has",
        task(executor="claude"),
        [BARE, LOCAL],
        "no_agent_with_executor",
        "needs executor claude; connected agents offer ollama, shell",
    ),
    (
        "capability nobody has",
        task(needs=("gpu",)),
        [LOCAL, CLOUD],
        "no_agent_with_capabilities",
        "needs capabilities gpu; connected agents offer code",
    ),
    (
        "capabilities and executor on different agents",
        task(needs=("code",), executor="claude"),
        [LOCAL, CLOUD],
        "no_agent_with_executor",
        "needs executor claude; connected agents offer ollama, shell",
    ),
    (
        "pinned to an agent not connected",
        task(assign_to="ghost"),
        [LOCAL],
        "pinned_agent_not_connected",
        "pinned to agent ghost, which is not connected",
    ),
    (
        "pinned to a connected agent that cannot run it",
        task("complex", assign_to="bare"),
        [BARE, CLOUD],
        "no_agent_with_executor",
        "agent bare offers shell",
    ),
    ("pinned to a connected agent that can", task(assign_to="local"), [BARE, LOCAL], None, ""),
    (
        "a pinned model nobody serves",
        task(metadata={"model": "llama3"}),
        [LOCAL],
        "no_agent_with_model",
        "needs model llama3 (ollama or openai or claude); connected agents offer models qwen",
    ),
    (
        "ollama without any model",
        task(executor="ollama"),
        [runs("o", "ollama")],
        "no_agent_with_model",
        "needs a model to run with ollama",
    ),
    ("an agent that did not say can run anything", task(executor="claude"), [runs("old", None)], None, ""),
]


@pytest.mark.parametrize(("case", "t", "agents", "code", "detail"), REASONS, ids=[r[0] for r in REASONS])
def test_waiting_reason(case: str, t: Task, agents: list[Candidate], code: str | None, detail: str) -> None:
    """A task says why it waits exactly when no connected agent (busy or not) may and can run it."""
    reason = waiting_reason(t, Offers.of(agents))
    assert (reason or {}).get("code") == code
    assert detail in (reason or {}).get("detail", "")


def test_long_name_lists_are_cut() -> None:
    """A reason lists a few names and counts the rest, so its size does not grow with the fleet."""
    agents = [runs(f"a{n}", "shell", caps=(f"cap-{n:03d}",)) for n in range(100)]
    reason = waiting_reason(task(needs=("gpu",)), Offers.of(agents))
    assert reason is not None and reason["detail"].endswith("(+92 more)") and len(reason["detail"]) < 200


# --- against a real hub ------------------------------------------------------------------------------------------


AgentFactory = Callable[..., Awaitable[AgentSim]]


@pytest.fixture
async def offering(hub: HubHandle) -> AsyncIterator[AgentFactory]:
    """Factory: an agent whose identify frame says what it runs (``executors``, ``models``), behaving as asked."""
    sims: list[AgentSim] = []

    async def connect(
        executors: list[str] | None,
        models: list[str] | None = None,
        agent_id: str | None = None,
        behaviour: str = "ignore",
        **identify: Any,
    ) -> AgentSim:
        agent_id = agent_id or f"m-{uuid.uuid4().hex[:8]}"
        token = await hub.mint_token(agent_id)
        sim = AgentSim(hub.ws_url, agent_id, token, behaviour=behaviour)  # type: ignore[arg-type]
        await sim.connect(identify=False)
        sims.append(sim)
        frame = {
            "type": "identify",
            "agent_id": agent_id,
            "token": token,
            "client_type": "test",
            "models": models or [],
            **identify,
        }
        if executors is not None:
            frame["executors"] = executors
        await sim.send(frame)
        await asyncio.wait_for(sim.identified.wait(), 10 * SCALE)
        return sim

    yield connect
    for sim in sims:
        await sim.close()


async def wait_until(handle: HubHandle, check: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait until ``check()`` holds, woken by the hub's own events (no polling)."""
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(timeout_s * SCALE):
            while not check():
                await events.get()


def reason_code(handle: HubHandle, task_id: str) -> str | None:
    reason = handle.hub.queue.tasks[task_id].waiting_reason
    return reason["code"] if reason else None


async def test_complex_task_goes_to_a_local_model_on_an_agent_without_claude(hub, offering):
    """A complex task is handed to an agent without Claude on its local model (it used to be routed to Claude there
    and dead-lettered), and the decision says it fell back."""
    sim = await offering(["shell", "ollama"], ["qwen3:8b"], behaviour="complete")
    tid = await hub.submit(description="Refactor the scheduler", complexity_tier="complex")
    await wait_tasks(hub, [tid], {"completed"})
    decision = sim.received[0].message["routing_decision"]
    assert (decision["target_type"], decision["selected_model"], decision["fallback_used"]) == (
        "ollama",
        "qwen3:8b",
        True,
    )
    assert decision["effective_tier"] == "complex"
    assert (await hub.task(tid))["routing_decision"]["target_type"] == "ollama"


async def test_complex_task_prefers_an_idle_agent_with_claude(hub, offering):
    """With an agent that has Claude idle too, the complex task goes to it, not to the longer idle local one."""
    local = await offering(["shell", "ollama"], ["qwen"])
    cloud = await offering(["shell", "claude"])
    tid = await hub.submit(description="Redesign it", complexity_tier="complex")
    await wait_tasks(hub, [tid], {"assigned", "working"})
    assert hub.hub.queue.tasks[tid].assigned_to == cloud.agent_id
    assert hub.hub.queue.tasks[tid].routing_decision["target_type"] == "claude"
    assert local.received == []


async def test_waiting_reason_appears_and_clears_when_a_capable_agent_connects(hub, offering):
    """A complex task no connected agent can run waits with a reason in the API; an agent with Claude clears it by
    taking the task; while that agent is busy, another such task waits without a reason; once it leaves, the
    reason is back."""
    await offering(["shell"])
    first = await hub.submit(description="Migrate the store", complexity_tier="complex")
    await wait_until(hub, lambda: reason_code(hub, first) is not None)
    shown = (await hub.task(first))["waiting_reason"]
    assert shown == {
        "code": "no_agent_with_executor",
        "detail": "needs executor claude or ollama or openai; connected agents offer shell",
    }
    assert (await hub.task(first))["status"] == "queued"

    cloud = await offering(["claude"])
    await wait_tasks(hub, [first], {"assigned", "working"})
    assert hub.hub.queue.tasks[first].assigned_to == cloud.agent_id
    assert (await hub.task(first))["waiting_reason"] is None

    second = await hub.submit(description="Migrate it again", complexity_tier="complex")
    marker = await hub.submit(description="submitted after it", assign_to="not-here")  # looked at no earlier
    await wait_until(hub, lambda: reason_code(hub, marker) == "pinned_agent_not_connected")
    assert (await hub.task(second))["status"] == "queued" and (await hub.task(second))["waiting_reason"] is None

    await cloud.close()
    await wait_until(hub, lambda: reason_code(hub, second) == "no_agent_with_executor")


async def test_pinned_agent_not_connected_says_so_until_it_connects(hub, offering):
    """A task pinned to an agent that is not connected says so; it is assigned (and the reason gone) once it is."""
    await offering(None)
    tid = await hub.submit(description="for the absent one", assign_to="absent-agent")
    await wait_until(hub, lambda: reason_code(hub, tid) == "pinned_agent_not_connected")
    assert "absent-agent" in (await hub.task(tid))["waiting_reason"]["detail"]
    await offering(None, agent_id="absent-agent")
    await wait_tasks(hub, [tid], {"assigned", "working"})
    assert (await hub.task(tid))["waiting_reason"] is None


async def test_no_agent_connected_then_one_that_can(hub, offering):
    """With no agent connected, queued tasks say so; the first agent that can run them takes them."""
    tid = await hub.submit(description="early", executor="shell", metadata={"shell_command": "true"})
    await wait_until(hub, lambda: reason_code(hub, tid) == "no_agent_connected")
    await offering(["shell"], behaviour="complete")
    await wait_tasks(hub, [tid], {"completed"})
    assert (await hub.task(tid))["waiting_reason"] is None


async def test_older_sidecar_identify_is_read_for_what_it_runs(hub, offering):
    """A sidecar that does not list its executors runs shell, and ollama when it gave an ollama_url."""
    plain = await offering(None, client_type="sidecar")
    local = await offering(None, ["qwen"], client_type="sidecar", ollama_url="http://127.0.0.1:11434")
    agents = {a["agent_id"]: a for a in (await hub.http.get("/api/agents")).json()["agents"]}
    assert agents[plain.agent_id]["executors"] == ["shell"]
    assert agents[local.agent_id]["executors"] == ["ollama", "shell"]
    tid = await hub.submit(description="Security overhaul", complexity_tier="complex")
    await wait_tasks(hub, [tid], {"assigned", "working"})
    assert hub.hub.queue.tasks[tid].assigned_to == local.agent_id


async def test_bad_executors_list_is_refused_at_identify(hub):
    """An identify frame whose executors list is not a list of short strings is answered validation_failed."""
    agent_id = f"m-{uuid.uuid4().hex[:8]}"
    sim = AgentSim(hub.ws_url, agent_id, await hub.mint_token(agent_id))
    await sim.connect(identify=False)
    try:
        await sim.send({"type": "identify", "agent_id": agent_id, "token": "x", "executors": "shell"})
        error = await sim.wait_for(lambda m: m.get("type") == "error")
        assert error["error"] == "validation_failed" and error["errors"][0]["field"] == "executors"
        assert hub.hub.agents.get(agent_id) is None
    finally:
        await sim.close()


def test_waiting_reason_is_shown_not_stored() -> None:
    """The reason is in the API view of a task but not in its stored body; any transition clears it."""
    t = task()
    t.waiting_reason = {"code": "no_agent_connected", "detail": "no agent is connected"}
    assert t.public()["waiting_reason"] == t.waiting_reason
    assert "waiting_reason" not in t.to_json()
    assert Task.from_json(t.to_json()).waiting_reason is None
    tasks.assign(t, "a", NOW)
    assert t.waiting_reason is None
