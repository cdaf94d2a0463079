"""Hub dispatch benchmark: simulated agents over real WebSockets against a real hub process.

Measures, with every state change durable (WAL, synchronous=FULL):
- end-to-end throughput: N no-op tasks, submit -> completed, at 1, 10 and 100 agents;
- dispatch latency: submit -> ``task_assign`` received, p50/p95/p99, one task at a time;
- hub RSS with 1,000 connected agents heartbeating.

Run: ``python -m bench.bench_hub`` (``--help`` for options). Prints a table; ``--json FILE`` also saves it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

ADMIN = "bench-admin-token"


class HubProcess:
    def __init__(self, data_dir: Path, synchronous: str = "FULL") -> None:
        env = {
            **os.environ,
            "AGENTCOM_ADMIN_TOKEN": ADMIN,
            "AGENTCOM_SQLITE_SYNCHRONOUS": synchronous,
            "AGENTCOM_PRESENCE_TTL_S": "600",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--port", "0", "--data-dir", str(data_dir), "--log-level", "WARNING"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "url=" not in line:
            raise RuntimeError(f"hub did not start: {line!r}")
        self.url = line.split("url=", 1)[1].strip()
        self.ws_url = self.url.replace("http://", "ws://") + "/ws"

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Agent:
    """A lean simulated agent: accepts and completes every task at once; records assign arrival times."""

    def __init__(self, ws_url: str, agent_id: str, token: str, bench: Bench) -> None:
        self.ws_url, self.agent_id, self.token, self.bench = ws_url, agent_id, token, bench
        self.ws: Any = None

    async def connect(self) -> None:
        self.ws = await websockets.connect(self.ws_url, compression=None, max_size=2**22)
        await self.ws.send(
            json.dumps({"type": "identify", "agent_id": self.agent_id, "token": self.token, "capabilities": []})
        )
        reply = json.loads(await self.ws.recv())
        assert reply["type"] == "identified", reply

    async def run(self) -> None:
        try:
            async for frame in self.ws:
                msg = json.loads(frame)
                if msg["type"] != "task_assign":
                    continue
                self.bench.assigned_at[msg["task_id"]] = time.perf_counter()
                gen = msg["generation"]
                await self.ws.send(json.dumps({"type": "task_accepted", "task_id": msg["task_id"], "generation": gen}))
                await self.ws.send(
                    json.dumps(
                        {
                            "type": "task_complete",
                            "task_id": msg["task_id"],
                            "generation": gen,
                            "result": {"status": "success"},
                        }
                    )
                )
                self.bench.completed += 1
                if self.bench.completed >= self.bench.target:
                    self.bench.done.set()
        except websockets.ConnectionClosed:
            pass


class RawHttp:
    """A lean keep-alive HTTP/1.1 client for the submit path, so the numbers measure the hub and not the client
    library (httpx adds about 1 ms per request here)."""

    def __init__(self, url: str, size: int) -> None:
        host, port = url.split("//", 1)[1].split(":")
        self.host, self.port = host, int(port)
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self._size = size
        self._opened = 0

    async def post(self, path: str, payload: Any) -> dict[str, Any]:
        if self._idle.empty() and self._opened < self._size:
            self._opened += 1
            self._idle.put_nowait(await asyncio.open_connection(self.host, self.port))
        reader, writer = await self._idle.get()
        body = json.dumps(payload).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {ADMIN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = json.loads(await reader.readexactly(length))
        self._idle.put_nowait((reader, writer))
        if status >= 300:
            raise RuntimeError(f"POST {path}: {status} {data}")
        return data  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


class Bench:
    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.http = httpx.AsyncClient(
            base_url=hub.url,
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=30,
            limits=httpx.Limits(max_connections=16),
        )
        self.raw = RawHttp(hub.url, size=16)
        self.assigned_at: dict[str, float] = {}
        self.completed = 0
        self.target = 0
        self.done = asyncio.Event()

    async def tokens(self, n: int, prefix: str) -> list[tuple[str, str]]:
        out = []
        for i in range(n):
            r = await self.http.post("/admin/tokens", json={"agent_id": f"{prefix}-{i}"})
            out.append((f"{prefix}-{i}", r.json()["token"]))
        return out

    async def agents(self, n: int, prefix: str) -> list[Agent]:
        out = [Agent(self.hub.ws_url, a, t, self) for a, t in await self.tokens(n, prefix)]  # type: ignore[arg-type]
        await asyncio.gather(*(a.connect() for a in out))
        return out

    async def submit_batch(self, descriptions: list[str]) -> None:
        await self.raw.post("/api/tasks/batch", {"tasks": [{"description": d} for d in descriptions]})

    async def submit(self, description: str) -> str:
        return str((await self.raw.post("/api/tasks", {"description": description}))["task_id"])

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.raw.aclose()


class AgentCounters:
    """What an agents process keeps: when each task's assignment arrived, how many tasks it completed."""

    def __init__(self, target: int) -> None:
        self.assigned_at: dict[str, float] = {}
        self.completed = 0
        self.target = target
        self.done = asyncio.Event()


def agents_process(ws_url: str, tokens: list[tuple[str, str]], target: int, pipe: Connection) -> None:
    """Entry point of the agents' own process: connect, then work until ``target`` tasks are completed."""

    async def main() -> None:
        counters = AgentCounters(target)
        agents = [Agent(ws_url, agent_id, token, counters) for agent_id, token in tokens]  # type: ignore[arg-type]
        await asyncio.gather(*(a.connect() for a in agents))
        pipe.send("ready")
        async with asyncio.TaskGroup() as tg:
            readers = [tg.create_task(a.run()) for a in agents]
            stop = asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "stop" from the parent
            done = asyncio.ensure_future(counters.done.wait())
            await asyncio.wait([stop, done], return_when=asyncio.FIRST_COMPLETED)
            pipe.send(("finished", counters.completed, counters.assigned_at))
            for a in agents:
                await a.ws.close()
            for r in readers:
                r.cancel()
            if not stop.done():
                await stop

    asyncio.run(main())


class AgentsProcess:
    """The simulated agents in a process of their own (as the peers run their workers), so the submitting
    client, the hub and the agents each have a process, like Celery's client, broker and worker."""

    def __init__(self, bench: Bench, tokens: list[tuple[str, str]], target: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=agents_process, args=(bench.hub.ws_url, tokens, target, child), daemon=True)
        self.proc.start()
        if self.pipe.recv() != "ready":
            raise RuntimeError("agents did not start")

    async def finished(self, timeout_s: float) -> tuple[int, dict[str, float]]:
        loop = asyncio.get_running_loop()
        ready = await loop.run_in_executor(None, self.pipe.poll, timeout_s)
        if not ready:
            self.pipe.send("stop")
        _, completed, assigned_at = await loop.run_in_executor(None, self.pipe.recv)
        return completed, assigned_at

    def stop(self) -> None:
        try:
            self.pipe.send("stop")
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


async def throughput(hub: HubProcess, n_agents: int, n_tasks: int, concurrency: int, batch: int) -> dict[str, Any]:
    bench = Bench(hub)
    tokens = await bench.tokens(n_agents, f"tp{n_agents}-{batch}")
    agents = AgentsProcess(bench, tokens, n_tasks)
    try:
        start = time.perf_counter()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n_tasks):
            queue.put_nowait(i)

        async def submitter() -> None:
            while not queue.empty():
                if batch > 1:
                    ids = [queue.get_nowait() for _ in range(min(batch, queue.qsize()))]
                    await bench.submit_batch([f"noop {i}" for i in ids])
                else:
                    await bench.submit(f"noop {queue.get_nowait()}")

        await asyncio.gather(*(submitter() for _ in range(concurrency)))
        submitted = time.perf_counter()
        completed, _ = await agents.finished(300)
        elapsed = time.perf_counter() - start
    finally:
        agents.stop()
        await bench.aclose()
    if completed < n_tasks:
        raise RuntimeError(f"only {completed} of {n_tasks} tasks completed")
    return {
        "agents": n_agents,
        "tasks": n_tasks,
        "batch": batch,
        "tasks_per_s": n_tasks / elapsed,
        "submit_per_s": n_tasks / (submitted - start),
        "elapsed_s": elapsed,
    }


async def latency(hub: HubProcess, n_agents: int, n_samples: int) -> dict[str, Any]:
    """Submit one task at a time; latency = POST sent -> task_assign received by an agent (another process;
    perf_counter is the system-wide monotonic clock on Linux, so the two are comparable)."""
    bench = Bench(hub)
    tokens = await bench.tokens(n_agents, f"lat{n_agents}")
    agents = AgentsProcess(bench, tokens, n_samples + 10)
    sent: dict[str, float] = {}
    try:
        for i in range(n_samples + 10):
            t0 = time.perf_counter()
            sent[await bench.submit(f"latency {i}")] = t0
            await asyncio.sleep(0.004)  # one at a time: the previous task is long done
        _, assigned_at = await agents.finished(60)
    finally:
        agents.stop()
        await bench.aclose()
    ordered = sorted(sent, key=sent.get)[10:]  # type: ignore[arg-type]  # warm-up excluded
    samples = [(assigned_at[t] - sent[t]) * 1000 for t in ordered]
    q = statistics.quantiles(samples, n=100)
    return {"agents": n_agents, "p50_ms": statistics.median(samples), "p95_ms": q[94], "p99_ms": q[98]}


async def heartbeat_rss(hub: HubProcess, n_agents: int, seconds: float) -> dict[str, Any]:
    bench = Bench(hub)
    before = hub.rss_mb()
    agents = await bench.agents(n_agents, "rss")

    async def beat(agent: Agent) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await agent.ws.send('{"type":"ping"}')
            await agent.ws.recv()
            await asyncio.sleep(1.0)

    await asyncio.gather(*(beat(a) for a in agents))
    rss = hub.rss_mb()
    for a in agents:
        await a.ws.close()
    await bench.aclose()
    return {"agents": n_agents, "rss_before_mb": before, "rss_mb": rss}


def rate(result: dict[str, Any]) -> str:
    """Median tasks/s of the runs, with their range."""
    return f"{result['tasks_per_s']:,.0f} ({result['min']:,.0f}-{result['max']:,.0f})"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"throughput": [], "throughput_batch": [], "latency": [], "rss": None}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.agents:
            hub = HubProcess(Path(tmp) / f"tp{n}", args.synchronous)
            try:
                for key, batch in (("throughput", 1), ("throughput_batch", args.batch)):
                    runs = [await throughput(hub, n, args.tasks, args.concurrency, batch) for _ in range(args.repeats)]
                    rates = [r["tasks_per_s"] for r in runs]
                    results[key].append(
                        {
                            "agents": n,
                            "batch": batch,
                            "tasks_per_s": statistics.median(rates),
                            "min": min(rates),
                            "max": max(rates),
                            "runs": runs,
                        }
                    )
                results["latency"].append(await latency(hub, n, args.samples))
            finally:
                hub.stop()
        hub = HubProcess(Path(tmp) / "rss", args.synchronous)
        try:
            results["rss"] = await heartbeat_rss(hub, args.rss_agents, args.rss_seconds)
        finally:
            hub.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks per throughput run")
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 10, 100], help="agent counts")
    parser.add_argument("--samples", type=int, default=1000, help="latency samples per agent count (p99 needs many)")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per setting (median reported)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP submitters")
    parser.add_argument("--batch", type=int, default=100, help="tasks per POST /api/tasks/batch")
    parser.add_argument("--rss-agents", type=int, default=1000)
    parser.add_argument("--rss-seconds", type=float, default=5.0)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    res = asyncio.run(main_async(args))
    rows = [["agents", "tasks/s (1 POST/task)", f"tasks/s (batch {args.batch})", "dispatch p50 ms", "p95 ms", "p99 ms"]]
    for tp, tb, lat in zip(res["throughput"], res["throughput_batch"], res["latency"], strict=True):
        rows.append(
            [
                str(tp["agents"]),
                rate(tp),
                rate(tb),
                f"{lat['p50_ms']:.2f}",
                f"{lat['p95_ms']:.2f}",
                f"{lat['p99_ms']:.2f}",
            ]
        )
    print(
        f"\nAgentCom hub, SQLite synchronous={args.synchronous}, {args.tasks} no-op tasks per run, "
        f"throughput median (min-max) of {args.repeats} runs"
    )
    print(table(rows))
    rss = res["rss"]
    print(
        f"\nhub RSS with {rss['agents']} agents heartbeating: {rss['rss_mb']:.1f} MiB "
        f"(idle hub {rss['rss_before_mb']:.1f} MiB)"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
