"""Goals benchmark: goals carried from a sentence to complete by a real hub, the fake Ollama decomposing each into
three tasks (a chain) and judging it, and simulated agents running the tasks; then the hub left idle.

Everything runs in this one process and loop (hub, fake model, agents), so the times are an upper bound on the
hub's own share. Per goal, from its history: submitted -> executing (decomposition: one model call, three tasks
queued), executing -> verifying (the chain of tasks run), verifying -> complete (the verdict: one model call), and
the whole. Then ``--idle`` seconds with nothing to do: the goals loop's passes and model calls in that time (both
must be 0: it sleeps until woken).

Run: ``python -m bench.bench_goals`` (``--help`` for options). Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim
from tests.hub.goals.helpers import MODEL, GoalOllama, GoalReplies, plan, task

PHASES = (("decompose", "submitted", "executing"), ("execute", "executing", "verifying"),
          ("verify", "verifying", "complete"), ("total", "submitted", "complete"))  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n_goals: int, n_agents: int, idle_s: float) -> None:
    chain = plan(task("first"), task("second", [0]), task("third", [1]))
    async with GoalOllama(GoalReplies([chain])) as model:
        data = Path(tempfile.mkdtemp(prefix="bench-goals-"))
        settings = HubSettings(host="127.0.0.1", port=0, data_dir=data, hub_model_url=model.url, hub_model=MODEL)
        server = HubServer(settings)
        await server.start()
        hub = server.hub
        headers = {"Authorization": f"Bearer {hub.admin_token}"}
        try:
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
                agents = []
                for _ in range(n_agents):
                    agent_id = f"sim-{uuid.uuid4().hex[:6]}"
                    r = await http.post("/admin/tokens", json={"agent_id": agent_id, "role": "agent"})
                    agents.append(await AgentSim(server.ws_url, agent_id, r.json()["token"]).connect())
                started = time.perf_counter()
                ids = [
                    (await http.post("/api/goals", json={"description": f"goal {i}"})).json()["id"]
                    for i in range(n_goals)
                ]
                backlog = hub.goals.backlog
                async with backlog.changed:
                    while not all(backlog.get(g).final for g in ids):
                        await backlog.changed.wait()
                wall = time.perf_counter() - started
                passes, calls = hub.goals.n_passes, hub.goals.model.n_calls
                await asyncio.sleep(idle_s)
                idle_passes, idle_calls = hub.goals.n_passes - passes, hub.goals.model.n_calls - calls
                for sim in agents:
                    await sim.close()
        finally:
            await server.stop()
            shutil.rmtree(data, ignore_errors=True)
    goals = [hub.goals.get(g) for g in ids]
    statuses = {str(g.status) for g in goals}
    print(f"{n_goals} goals x 3 chained tasks, {n_agents} simulated agents; final statuses: {sorted(statuses)}")
    print(f"{'phase':<10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, start, end in PHASES:
        spans = []
        for g in goals:
            at = {h.status.value: h.at for h in g.history}
            if start in at and end in at:
                spans.append(float(at[end] - at[start]))
        if spans:
            print(f"{name:<10} {pct(spans, 0.5):>8.0f} {pct(spans, 0.95):>8.0f} {max(spans):>8.0f}")
    print(f"wall {wall:.2f}s for all goals ({n_goals / wall:.1f} goals/s)")
    print(f"idle {idle_s:g}s afterwards: {idle_passes} loop passes, {idle_calls} model calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--goals", type=int, default=50)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds left idle after the goals (default 5)")
    args = parser.parse_args()
    asyncio.run(run(args.goals, args.agents, args.idle))


if __name__ == "__main__":
    main()
