"""Dashboard at fleet scale: 100 simulated agents and 1,000 tasks against a real hub.

Measures the snapshot (bytes, build time, time to reach a socket client), then the page in Debian's Chromium
(time until all agents and tasks are on screen, render time of the snapshot, worst render during a burst of
completions and tool calls). Prints one table.

    python bench/bench_dashboard.py [--agents 100] [--tasks 1000] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.dashboard_socket import dashboard_for  # noqa: E402
from hub.server import HubServer  # noqa: E402
from hub.settings import HubSettings  # noqa: E402
from hub.task_submit import TaskSubmit  # noqa: E402
from shared.agent_sim import AgentSim, Received  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
PRIORITIES = ["urgent", "high", "normal", "normal", "low"]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def run_round(sims: list[AgentSim], complete: bool, n_tools: int) -> None:
    """Every agent accepts its latest assignment, streams tool calls, and (if ``complete``) finishes it."""

    async def one(sim: AgentSim) -> None:
        rec: Received = sim.received[-1]
        await sim.send({"type": "task_accepted", "task_id": rec.task_id, "generation": rec.generation})
        for n in range(1, n_tools + 1):
            await sim.send(
                {
                    "type": "task_progress",
                    "task_id": rec.task_id,
                    "generation": rec.generation,
                    "execution_event": {
                        "event_type": "tool_call",
                        "tool_name": "read_file",
                        "args_summary": f"path=src/file{n}.py",
                        "result_summary": "42 lines",
                        "duration_ms": 12,
                        "iteration": n,
                        "tokens_so_far": 400 * n,
                    },
                }
            )
        if complete:
            await sim.send(
                {
                    "type": "task_complete",
                    "task_id": rec.task_id,
                    "generation": rec.generation,
                    "result": {"status": "success", "output": "ok"},
                    "tokens_used": 1200,
                }
            )

    await asyncio.gather(*(one(s) for s in sims))


async def wait_for(predicate: Any, timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


async def populate(server: HubServer, http: httpx.AsyncClient, n_agents: int, n_tasks: int) -> list[AgentSim]:
    hub = server.hub

    async def connect(n: int) -> AgentSim:
        agent_id = f"bench-{n:03d}"
        token = (await http.post("/admin/tokens", json={"agent_id": agent_id})).json()["token"]
        sim = AgentSim(server.ws_url, agent_id, token, capabilities=["code"], behaviour="ignore")
        return await sim.connect()

    sims = list(await asyncio.gather(*(connect(n) for n in range(n_agents))))
    now = hub.clock.now_ms()
    bodies = [
        TaskSubmit(description=f"bench task {n}: refactor module {n % 37}", priority=PRIORITIES[n % 5])
        for n in range(n_tasks)
    ]
    await asyncio.gather(*(hub.queue.submit(b.to_task("bench", now)) for b in bodies))
    hub.fleet.scheduler.wake()
    await wait_for(lambda: all(s.received for s in sims))
    await run_round(sims, complete=True, n_tools=3)
    await wait_for(lambda: all(len(s.received) >= 2 for s in sims))
    await run_round(sims, complete=False, n_tools=3)
    await wait_for(lambda: sum(1 for t in hub.queue.tasks.values() if t.status == "working") >= min(n_agents, n_tasks))
    return sims


async def measure_socket(server: HubServer, repeats: int = 10) -> list[float]:
    url = server.ws_url + "/dashboard"
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        async with websockets.connect(url, max_size=2**24) as ws:
            await ws.send(json.dumps({"type": "auth", "token": server.hub.admin_token}))
            while json.loads(await ws.recv())["type"] != "snapshot":
                pass
        out.append(time.perf_counter() - started)
    return out


async def poll(page: Any, expression: str, timeout_s: float = 30) -> None:
    """Wait until ``expression`` is true in the page (polled from here: the page's CSP forbids eval)."""
    async with asyncio.timeout(timeout_s):
        while not await page.evaluate(expression):
            await asyncio.sleep(0.01)


async def measure_browser(server: HubServer, sims: list[AgentSim], n_agents: int) -> dict[str, float]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        started = time.perf_counter()
        await page.goto(f"{server.url}/dashboard#token={server.hub.admin_token}")
        await poll(
            page,
            f"document.querySelectorAll('#agents tr[data-agent-id]').length === {n_agents}"
            " && document.querySelectorAll('#tasks tr[data-task-id]').length > 0",
        )
        visible_s = time.perf_counter() - started
        probe = await page.evaluate("window.agentcom.probe")
        snapshot_render_ms = probe["lastRenderMs"]
        burst_started = time.perf_counter()
        completed = server.hub.queue.stats()["by_status"]["completed"] + len(sims)
        await run_round(sims, complete=True, n_tools=5)
        await poll(page, f"window.agentcom.state.queue.by_status.completed >= {completed}")
        burst_s = time.perf_counter() - burst_started
        probe = await page.evaluate("window.agentcom.probe")
        await browser.close()
    return {
        "visible_s": visible_s,
        "snapshot_render_ms": snapshot_render_ms,
        "burst_s": burst_s,
        "max_render_ms": probe["maxRenderMs"],
        "batches": probe["batches"],
        "execution_events": probe["executionEvents"],
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = HubSettings(
            host="127.0.0.1",
            port=0,
            data_dir=Path(tmp),
            sqlite_synchronous="NORMAL",
            acceptance_timeout_s=600,
            presence_ttl_s=600,
        )
        server = HubServer(settings)
        await server.start()
        http = httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {server.hub.admin_token}"}, timeout=30
        )
        sims: list[AgentSim] = []
        try:
            sims = await populate(server, http, args.agents, args.tasks)
            dash = dashboard_for(server.hub)
            builds = []
            for _ in range(30):
                t0 = time.perf_counter()
                dash.snapshot()
                builds.append(time.perf_counter() - t0)
            encoded = json.dumps(dash.snapshot(), separators=(",", ":"), default=str).encode()
            http_s = []
            for _ in range(10):
                http_started = time.perf_counter()
                r = await http.get("/api/dashboard/state")
                http_s.append(time.perf_counter() - http_started)
                assert r.status_code == 200, r.text
            socket_s = await measure_socket(server)
            rows = [
                (
                    "fleet",
                    f"{args.agents} agents, {len(server.hub.queue.tasks)} tasks "
                    f"({json.dumps(server.hub.queue.stats()['by_status'])})",
                ),
                ("snapshot size", f"{len(encoded):,} bytes ({len(gzip.compress(encoded)):,} gzipped)"),
                ("snapshot build (median of 30)", ms(statistics.median(builds))),
                ("snapshot build (max of 30)", ms(max(builds))),
                ("GET /api/dashboard/state (median of 10)", ms(statistics.median(http_s))),
                ("socket connect -> snapshot (median of 10)", ms(statistics.median(socket_s))),
            ]
            if not args.no_browser and CHROMIUM.exists():
                b = await measure_browser(server, sims, args.agents)
                rows += [
                    ("page load -> all agents rendered", ms(b["visible_s"])),
                    ("render of the snapshot (JS)", f"{b['snapshot_render_ms']:.1f} ms"),
                    (f"burst: {args.agents} completions + {5 * args.agents} tool calls -> on page", ms(b["burst_s"])),
                    ("worst single render during the run", f"{b['max_render_ms']:.1f} ms"),
                    ("batches / execution events seen by the page", f"{b['batches']} / {b['execution_events']}"),
                ]
            else:
                rows.append(("browser", "skipped (--no-browser or no /usr/bin/chromium)"))
            width = max(len(k) for k, _ in rows)
            print(f"{'measure':<{width}}  value\n{'-' * width}  {'-' * 40}")
            for key, value in rows:
                print(f"{key:<{width}}  {value}")
        finally:
            for sim in sims:
                await sim.close()
            await http.aclose()
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--no-browser", action="store_true")
    asyncio.run(main(parser.parse_args()))
