"""Repository affinity survives a restart: stored once per completed task on a repository, read back at start,
bounded in number and by its window."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from hub.endpoints.affinity import KIND
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle, wait_tasks
from tests.hub.endpoints.helpers import connect_agent

MakeHub = Callable[..., Awaitable[HubHandle]]
REPO = "https://forge.example/team/app.git"
SHELL = {"metadata": {"shell_command": "true"}}


async def written(hub: HubHandle, n: int) -> None:
    """Wait until the hub has stored ``n`` affinity writes, woken by each write."""
    affinity = hub.hub.affinity
    async with asyncio.timeout(10 * SCALE), affinity.written:
        await affinity.written.wait_for(lambda: affinity.n_written >= n)


async def stored(hub: HubHandle) -> list[tuple[str, str]]:
    """The (agent, repository) pairs in the store, by repository."""
    rows = await hub.hub.store.load_records(KIND)
    return sorted(((json.loads(r.body)["agent_id"], json.loads(r.body)["repo"]) for r in rows), key=lambda p: p[1])


async def run_on(hub: HubHandle, repo: str | None) -> str:
    """Submit a shell task (on ``repo``), wait for it to complete; the agent that ran it."""
    task_id = await hub.submit(description=f"on {repo}", repo=repo, **SHELL)
    await wait_tasks(hub, [task_id], {"completed"})
    return str((await hub.task(task_id))["assigned_to"])


async def test_a_restarted_hub_still_prefers_the_agent_that_last_worked_on_the_repo(
    make_hub: MakeHub, tmp_path: Path
) -> None:
    """After a restart on the same data dir, a task on the repository goes to the agent that last ran one there,
    not to the longest idle agent."""
    sims: list[AgentSim] = []
    try:
        first = await make_hub(data_dir=tmp_path / "data")
        sims += [
            await connect_agent(first, "x", executors=["shell"]),
            await connect_agent(first, "y", executors=["shell"]),
        ]
        assert await run_on(first, REPO) == "x"  # longest idle
        await written(first, 1)
        await first.server.stop()
        second = await make_hub(data_dir=tmp_path / "data")
        sims += [
            await connect_agent(second, "y", executors=["shell"]),
            await connect_agent(second, "x", executors=["shell"]),
        ]
        task_id = await second.submit(description="again", repo=REPO, **SHELL)
        await wait_tasks(second, [task_id], {"completed"})
        task = await second.task(task_id)
        assert task["assigned_to"] == "x", task["routing_decision"]
        assert task["routing_decision"]["score_parts"] == {"repo": 0.3}
        assert await run_on(second, None) == "y"  # without a repository: the longest idle
    finally:
        for sim in sims:
            await sim.close()


async def test_stored_affinity_is_bounded_in_number_and_by_its_window(make_hub: MakeHub, tmp_path: Path) -> None:
    """Past the bound the oldest pair leaves the store; at start pairs older than the window are dropped, and are
    deleted from the store with the next write; a task without a repository writes nothing."""
    data = tmp_path / "data"
    sims: list[AgentSim] = []
    try:
        hub = await make_hub(data_dir=data, affinity_max_entries=2)
        sims.append(await connect_agent(hub, "x", executors=["shell"]))
        for n, repo in enumerate(("a", "b", "c"), start=1):
            await run_on(hub, f"https://forge.example/{repo}")
            await written(hub, n)
        await run_on(hub, None)
        assert hub.hub.affinity.n_written == 3
        assert await stored(hub) == [("x", "https://forge.example/b"), ("x", "https://forge.example/c")]
        await hub.server.stop()

        again = await make_hub(data_dir=data, affinity_max_entries=2)
        assert len(again.hub.affinity) == 2 and again.hub.affinity.has("x", "https://forge.example/c")
        assert not again.hub.affinity.has("x", "https://forge.example/a")
        await again.server.stop()

        late = await make_hub(data_dir=data, affinity_window_s=0.001)  # every stored pair is older than this
        assert len(late.hub.affinity) == 0
        sims.append(await connect_agent(late, "x", executors=["shell"]))
        await run_on(late, "https://forge.example/d")
        await written(late, 1)
        assert await stored(late) == [("x", "https://forge.example/d")]
    finally:
        for sim in sims:
            await sim.close()
