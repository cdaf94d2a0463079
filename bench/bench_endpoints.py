"""Endpoints bench: the cost of ranking agents in a scheduling round, a mixed batch routed by a real hub (where each
task went and why), the probe results of the fake models, and optionally of a real model server.

1. ``plan`` with and without the ranker (hub/endpoints/scoring.py): 1,000 queued tasks, 100 idle agents on 10
   endpoints (in process, median of the repeats).
2. A real hub on port 0 with two fake Ollama servers (one with the model warm and calling tools natively, one cold
   and answering in prose), agents on each, a shell agent and a Claude agent; a mixed batch is routed and every
   stored decision printed.
3. ``--probe-url URL [--kind ollama|openai]``: register a real endpoint with that hub and print its probe results
   (each model it serves; skipped when not given).

Run: ``python -m bench.bench_endpoints`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_scheduler import agent as candidate
from bench.bench_scheduler import make_task
from hub.agents import Agent, AgentRegistry
from hub.clock import ManualClock
from hub.endpoints.registry import Endpoint, EndpointRegistry, Warm
from hub.endpoints.scoring import EndpointRanker
from hub.endpoints.urls import endpoint_id
from hub.scheduler import plan
from hub.server import HubServer
from hub.settings import HubSettings
from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import Script, ScriptedCall, Turn

CALL = ScriptedCall(name="write_file", arguments={"path": "a.txt", "content": "b"})
NATIVE = Script(name="native", turns=[Turn(tool_calls=[CALL])])
CHATTY = Script(name="chatty", turns=[Turn(content="Here it is:\n```python\nprint('hi')\n```")])


def bench_rank(n_tasks: int, n_agents: int, repeats: int) -> list[tuple[str, float, int]]:
    clock = ManualClock()
    settings = HubSettings(data_dir=Path(tempfile.gettempdir()))
    registry = EndpointRegistry(None, clock, settings)  # type: ignore[arg-type]  # reads only, no store
    agents = AgentRegistry(clock)
    for e in range(10):
        url = f"http://gpu{e}:11434"
        ep = Endpoint(id=endpoint_id(url), url=url, kind="ollama", created_at=0, healthy=True)
        ep.warm = {"qwen": Warm()} if e % 2 else {}
        registry.endpoints[ep.id], registry.by_url[url] = ep, ep.id
        registry.probes[(ep.id, "qwen")] = {"score": e / 10}
    local = frozenset({"shell", "ollama"})
    idle = [candidate(n, local, ("qwen", "coder")) for n in range(n_agents)]
    for n, c in enumerate(idle):
        agents.add(Agent(c.agent_id, 0, executors=local, models=c.models, ollama_url=f"http://gpu{n % 10}:11434"))
    ranker = EndpointRanker(registry, agents)
    cases = {
        "all runnable": [make_task(n) for n in range(n_tasks)],
        "pinned to other agents": [make_task(n, assign_to=f"x{n}") for n in range(n_tasks)],
        "capability nobody has": [make_task(n, needed_capabilities=["gpu"]) for n in range(n_tasks)],
        "with repos (affinity)": [make_task(n, repo=f"r{n % 7}") for n in range(n_tasks)],
    }
    rows = []
    for name, tasks in cases.items():
        for label, r in (("plain", None), ("ranked", ranker)):
            times, pairs = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                if r is not None:
                    r.begin()
                pairs = plan(tasks, list(idle), bool, ranker=r)
                times.append((time.perf_counter() - start) * 1000)
            rows.append((f"{name} ({label})", statistics.median(times), len(pairs)))
    return rows


async def routed_batch(probe_url: str | None, kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = HubSettings(host="127.0.0.1", port=0, data_dir=Path(tmp), endpoint_health_interval_s=30)
        server = HubServer(settings)
        await server.start()
        hub = server.hub
        try:
            async with (
                FakeOllamaServer(models={"coder": NATIVE}, warm=["coder"]) as warm,
                FakeOllamaServer(models={"coder": CHATTY}, warm=[]) as cold,
                httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {hub.admin_token}"}) as http,
            ):
                await _run_batch(hub, http, server.ws_url, warm.url, cold.url)
                if probe_url:
                    await _probe_real(hub, http, probe_url, kind)
        finally:
            await server.stop()


async def _ready(hub: Any, http: httpx.AsyncClient, url: str, kind: str = "ollama", timeout_s: float = 30) -> str:
    ep_id: str = (await http.post("/api/endpoints", json={"url": url, "kind": kind})).json()["id"]
    registry = hub.endpoints

    def done() -> bool:
        ep = registry.endpoints[ep_id]
        return ep.healthy is not None and all((ep_id, m) in registry.probes for m in ep.models)

    await registry.wait_for(lambda: done() and bool(registry.endpoints[ep_id].models), timeout_s)
    return ep_id


async def _run_batch(hub: Any, http: httpx.AsyncClient, ws_url: str, warm_url: str, cold_url: str) -> None:
    from shared.agent_sim import AgentSim

    names = {await _ready(hub, http, warm_url): "warm", await _ready(hub, http, cold_url): "cold"}
    sims = []
    for agent_id, url, executors in (("on-cold", cold_url, ["ollama"]), ("shell", None, ["shell"]),
                                     ("on-warm", warm_url, ["ollama"]), ("claude", None, ["claude"]),
                                     ("on-warm-2", warm_url, ["ollama"])):  # fmt: skip
        token = (await http.post("/admin/tokens", json={"agent_id": agent_id, "role": "agent"})).json()["token"]
        sim = AgentSim(ws_url, agent_id, token, behaviour="ignore")
        await sim.connect(identify=False)
        frame = {"type": "identify", "agent_id": agent_id, "token": token, "client_type": "sidecar",
                 "models": ["coder"] if url else [], "executors": executors}  # fmt: skip
        if url:
            frame["ollama_url"] = url
        await sim.send(frame)
        await sim.identified.wait()
        sims.append(sim)
    body = {"tasks": [
        {"description": "write a helper", "complexity_tier": "standard"},
        {"description": "add a test", "complexity_tier": "standard", "repo": "https://forge.example/a/app"},
        {"description": "redesign the storage layer", "complexity_tier": "complex"},
        {"description": "list files", "metadata": {"shell_command": "ls"}},
        {"description": "fix typo", "complexity_tier": "trivial"},
    ]}  # fmt: skip
    with hub.bus.subscribe() as events:
        ids = [t["task_id"] for t in (await http.post("/api/tasks/batch", json=body)).json()["tasks"]]
        async with asyncio.timeout(30):
            while any(hub.queue.tasks[t].assigned_to is None for t in ids):
                await events.get()
    print("\nmixed batch: where each task went and why (agents ignore their tasks, so load builds up)")
    print(f"{'task':<28} | {'agent':<10} | {'endpoint':<5} | {'model':<6} | {'score':>5} | explanation")
    print(f"{'-' * 28}-+-{'-' * 10}-+-{'-' * 5}-+-{'-' * 6}-+-{'-' * 5}-+------------")
    for t in ids:
        task = (await http.get(f"/api/tasks/{t}")).json()
        d = task.get("routing_decision") or {}
        ep = names.get(d.get("endpoint_id"), "-")
        score = d.get("score")
        print(f"{task['description']:<28} | {task.get('assigned_to') or 'waiting':<10} | {ep:<5} | "
              f"{d.get('selected_model') or '-':<6} | {score if score is not None else '-':>5} | "
              f"{d.get('explanation') or task.get('waiting_reason') or ''}")  # fmt: skip
    _print_probes(hub, names)
    for sim in sims:
        await sim.close()


def _print_probes(hub: Any, names: dict[str, str]) -> None:
    print("\nprobe results")
    print(f"{'endpoint':<22} | {'model':<28} | {'score':>5} | {'path':<12} | valid | {'tok/s':>7} | context")
    print(f"{'-' * 22}-+-{'-' * 28}-+-{'-' * 5}-+-{'-' * 12}-+-------+-{'-' * 7}-+--------")
    for (ep_id, model), p in sorted(hub.endpoints.probes.items()):
        if ep_id in names:
            print(f"{names[ep_id][:22]:<22} | {model[:28]:<28} | {p['score']:>5} | {p['path']:<12} | "
                  f"{p['valid_args']:>5} | {p['tokens_per_s'] or '-':>7} | {p['context_length'] or '-'}")  # fmt: skip


async def _probe_real(hub: Any, http: httpx.AsyncClient, url: str, kind: str) -> None:
    try:
        ep_id = await _ready(hub, http, url, kind, timeout_s=1800)
    except TimeoutError:
        print(f"\n{url}: no probe result within 30 minutes")
        return
    ep = hub.endpoints.endpoints[ep_id]
    if not ep.healthy:
        print(f"\n{url}: unhealthy ({ep.last_error})")
        return
    _print_probes(hub, {ep_id: url})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--probe-url", default=None, help="a real Ollama or OpenAI-compatible server to probe")
    parser.add_argument("--kind", default="ollama", choices=["ollama", "openai"])
    args = parser.parse_args()
    print(f"\none scheduling round: {args.tasks} queued tasks, {args.agents} idle agents on 10 endpoints, "
          f"median of {args.repeats}")  # fmt: skip
    print(f"{'case':<40} | {'plan ms':>8} | pairs")
    print(f"{'-' * 40}-+-{'-' * 8}-+------")
    for name, ms, pairs in bench_rank(args.tasks, args.agents, args.repeats):
        print(f"{name:<40} | {ms:>8.3f} | {pairs}")
    asyncio.run(routed_batch(args.probe_url, args.kind))


if __name__ == "__main__":
    main()
