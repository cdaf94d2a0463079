"""Budget gate under a concurrent burst that tries to overspend: a real hub (in process, port 0, SQLite in a temp
dir) and simulated agents on real WebSockets, each holding one task and firing ``budget_request`` frames without
waiting, then reporting a usage for every grant (at the estimate, or at ``--overrun`` times it).

Prints, per budget kind (a hub state's hourly USD, a goal's USD, each task's tokens): requests, grants, refusals,
the limit, what was reserved at the peak, what the ledger holds after settlement, the overspend (spent above the
limit: 0 unless calls used more than they reserved), and the median / p99 time from a request to its answer.

Run: ``python -m bench.bench_budget`` (``--help`` for options). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim

KINDS: dict[str, dict[str, Any]] = {
    "hub state hourly USD": {"hub_states": {"executing": {"hourly": {"usd": 10.0}}}},
    "goal USD": {"goals": {"g": {"usd": 10.0}}},
    "task tokens": {"tasks": {"{task}": {"tokens": 50_000}}},
}


async def burst(kind: str, budgets: dict[str, Any], agents: int, per_agent: int, overrun: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = HubServer(HubSettings(host="127.0.0.1", port=0, data_dir=Path(tmp), rate_limits_enabled=False))
        await server.start()
        http = httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {server.hub.admin_token}"})
        try:
            sims = []
            for _ in range(agents):
                aid = f"b-{uuid.uuid4().hex[:6]}"
                token = (await http.post("/admin/tokens", json={"agent_id": aid, "role": "agent"})).json()["token"]
                sims.append(await AgentSim(server.ws_url, aid, token, behaviour="ignore").connect())
            tids = []
            for sim in sims:
                r = await http.post("/api/tasks", json={"description": "b", "assign_to": sim.agent_id, "goal_id": "g"})
                tids.append(r.json()["task_id"])
            for sim, tid in zip(sims, tids, strict=True):
                await sim.wait_for(lambda m, t=tid: m.get("type") == "task_assign" and m["task_id"] == t)
            if "tasks" in budgets:  # a limit of the (first) task's own
                budgets = {"tasks": {tids[0]: budgets["tasks"]["{task}"]}}
            assert (await http.put("/api/costs/budgets", json=budgets)).status_code == 200
            sent: dict[str, float] = {}

            async def fire(sim: AgentSim, tid: str) -> list[tuple[dict[str, Any], float]]:
                ids = [uuid.uuid4().hex for _ in range(per_agent)]
                for rid in ids:
                    sent[rid] = time.perf_counter()
                    await sim.send({"type": "budget_request", "request_id": rid, "task_id": tid, "model": "claude-x",
                                    "est_tokens_in": 1000, "est_tokens_out": 1000, "est_usd": 0.1})  # fmt: skip
                out = []
                for rid in ids:
                    m = await sim.wait_for(lambda m, r=rid: m.get("type") == "budget_grant" and m["request_id"] == r)
                    out.append((m, (time.perf_counter() - sent[rid]) * 1000))
                return out

            answers = await asyncio.gather(*(fire(s, t) for s, t in zip(sims, tids, strict=True)))
            peak = (await http.get("/api/costs/budgets")).json()["budgets"]
            latencies = [ms for per in answers for _, ms in per]
            granted = 0
            for sim, tid, per in zip(sims, tids, answers, strict=True):
                for grant, _ in per:
                    if grant["granted"]:
                        granted += 1
                        usage = {"tokens_in": int(1000 * overrun), "tokens_out": int(1000 * overrun),
                                 "model": "claude-x", "cost_usd": 0.1 * overrun}  # fmt: skip
                        await sim.send({"type": "usage_report", "task_id": tid, "grant_id": grant["grant_id"],
                                        "usage": usage})  # fmt: skip
            while server.hub.costs.ledger.total.calls < granted:
                await asyncio.sleep(0.01)
            after = (await http.get("/api/costs/budgets")).json()["budgets"]
            for sim in sims:
                await sim.close()
        finally:
            await http.aclose()
            await server.stop()
    usd = "usd" in kind.lower()
    unit = "limit_usd" if usd else "limit_tokens"
    spent_key, reserved_key = ("spent_usd", "reserved_usd") if usd else ("spent_tokens", "reserved_tokens")
    worst = max(after, key=lambda row: row[spent_key] - row[unit])
    peak_row = next(row for row in peak if row["budget"] == worst["budget"])
    latencies.sort()
    return {
        "kind": kind, "requests": len(latencies), "granted": granted, "refused": len(latencies) - granted,
        "limit": worst[unit], "peak_reserved": peak_row[reserved_key], "spent": round(worst[spent_key], 6),
        "overspend": round(max(0.0, worst[spent_key] - worst[unit]), 6),
        "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    rows = []
    for kind, budgets in KINDS.items():
        agents = 1 if kind == "task tokens" else args.agents
        rows.append(await burst(kind, budgets, agents, args.requests // agents, args.overrun))
    cols = ["kind", "requests", "granted", "refused", "limit", "peak_reserved", "spent", "overspend"]
    cols += ["p50_ms", "p99_ms"]
    print(" | ".join(f"{c:>20}" if c == "kind" else f"{c:>13}" for c in cols))
    for row in rows:
        cells = [f"{row[c]:>20}" if c == "kind" else f"{row[c]:>13.2f}" if isinstance(row[c], float)
                 else f"{row[c]:>13}" for c in cols]  # fmt: skip
        print(" | ".join(cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10, help="agents, each holding one task (default 10)")
    parser.add_argument("--requests", type=int, default=500, help="budget requests in the burst (default 500)")
    parser.add_argument("--overrun", type=float, default=1.0, help="usage reported per grant / its estimate")
    asyncio.run(main(parser.parse_args()))
