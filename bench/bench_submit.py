"""Submission burst benchmark: many ``POST /api/tasks`` in flight at once against a real hub process.

Three processes, as in bench_hub: the hub (every state change durable), simulated agents draining the queue
(shared/agent_sim.py, in a process of their own; ``--agents 0`` leaves the tasks queued), and this client. The
client opens its keep-alive connections first, then runs, in this order:

- ``GET /nowhere``: the burst against a trivial answer (a 404 through the same HTTP stack), the floor for any
  endpoint, and a check on the client: its CPU time is printed beside the hub's;
- ``GET /health``: the same burst against the health endpoint;
- ``POST /api/tasks, at once``: ``--requests`` submissions started together over ``--connections`` connections;
- ``POST /api/tasks, one at a time``: ``--requests`` submissions in a row over one connection.

Two latencies per request: ``on the wire``, from the request's write on its connection to its response (what each
of ``--connections`` concurrent callers waits per request), and ``from start``, from the start of the burst (what a
caller firing all of them at once waits, time queued in the client for a free connection included: about
``requests / (req/s)`` at worst). The client speaks raw HTTP/1.1 by default; ``--client httpx`` sends the burst
through httpx.AsyncClient, whose connection pool rescans every queued request on each event: with 1,000 requests
queued behind 100 connections it spends seconds of CPU per hundred requests (then ``on the wire`` includes that
wait in the pool too).

Run: ``python -m bench.bench_submit`` (``--help`` for options). Prints a table; ``--json FILE`` also saves it.
``--profile FILE`` runs the hub under cProfile (it inflates the hub's cost about threefold; a sampling profiler
attached to the hub's pid distorts less).
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
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.bench_hub import ADMIN, HubProcess, table
from shared.agent_sim import AgentSim


class ProfiledHub(HubProcess):
    """A hub process whose event loop's thread runs under cProfile, writing ``profile`` when it stops."""

    def __init__(self, data_dir: Path, synchronous: str, profile: Path) -> None:
        env = {
            **os.environ,
            "AGENTCOM_ADMIN_TOKEN": ADMIN,
            "AGENTCOM_SQLITE_SYNCHRONOUS": synchronous,
            "AGENTCOM_PRESENCE_TTL_S": "600",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(profile),
                "-m",
                "hub",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                "--log-level",
                "WARNING",
            ],
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


@dataclass
class Sample:
    status: int
    started: float
    """perf_counter when the request was written to its connection."""
    done: float


@dataclass
class Run:
    name: str
    t0: float
    samples: list[Sample] = field(default_factory=list)
    end: float = 0.0

    def row(self) -> dict[str, Any]:
        from_start = sorted((s.done - self.t0) * 1000 for s in self.samples)
        on_wire = sorted((s.done - s.started) * 1000 for s in self.samples)
        return {
            "name": self.name,
            "count": len(self.samples),
            "statuses": dict(sorted(Counter(s.status for s in self.samples).items())),
            "from_start_ms": quantiles(from_start),
            "on_wire_ms": quantiles(on_wire),
            "per_s": len(self.samples) / (self.end - self.t0),
        }


def quantiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": statistics.median(values), "p95": q[94], "p99": q[98], "max": values[-1]}


class RawPool:
    """Keep-alive HTTP/1.1 connections speaking just enough of the protocol for JSON requests, so the numbers
    measure the hub and not a client library."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//", 1)[1].split(":")
        self.host, self.port = host, int(port)
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self._all: list[asyncio.StreamWriter] = []

    async def open(self, n: int) -> None:
        for _ in range(n):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.append(writer)
            self._idle.put_nowait((reader, writer))

    async def request(self, method: str, path: str, body: bytes | None) -> Sample:
        reader, writer = await self._idle.get()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {ADMIN}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        started = time.perf_counter()
        writer.write(head.encode() + b"\r\n" + (body or b""))
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        done = time.perf_counter()
        self._idle.put_nowait((reader, writer))
        return Sample(status, started, done)

    async def aclose(self) -> None:
        for writer in self._all:
            writer.close()


class HttpxPool:
    """The same requests through httpx.AsyncClient (its pool holds the connections)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient()

    async def open(self, n: int) -> None:
        await self.http.aclose()
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=120,
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
        )
        await asyncio.gather(*(self.http.get("/health") for _ in range(n)))  # open them all

    async def request(self, method: str, path: str, body: bytes | None) -> Sample:
        started = time.perf_counter()
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            r = await self.http.request(method, path, content=body, headers=headers)
        except httpx.TransportError:  # counted (as status 0, shown as "error"), not raised: the run goes on
            return Sample(0, started, time.perf_counter())
        return Sample(r.status_code, started, time.perf_counter())

    async def aclose(self) -> None:
        await self.http.aclose()


Pool = RawPool | HttpxPool


def task_body(i: int) -> bytes:
    return json.dumps({"description": f"bench submit {i}", "metadata": {"n": i}}).encode()


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def burst(hub: HubProcess, pool: Pool, name: str, n: int, method: str, path: str, body: bool) -> dict[str, Any]:
    cpu = cpu_s(hub.proc.pid), cpu_s(os.getpid())
    run = Run(name, time.perf_counter())
    run.samples = await asyncio.gather(*(pool.request(method, path, task_body(i) if body else None) for i in range(n)))
    run.end = time.perf_counter()
    return {**run.row(), "hub_cpu_s": cpu_s(hub.proc.pid) - cpu[0], "client_cpu_s": cpu_s(os.getpid()) - cpu[1]}


async def one_at_a_time(hub: HubProcess, pool: Pool, name: str, n: int) -> dict[str, Any]:
    cpu = cpu_s(hub.proc.pid), cpu_s(os.getpid())
    run = Run(name, time.perf_counter())
    for i in range(n):
        run.samples.append(await pool.request("POST", "/api/tasks", task_body(i)))
    run.end = time.perf_counter()
    row = {**run.row(), "hub_cpu_s": cpu_s(hub.proc.pid) - cpu[0], "client_cpu_s": cpu_s(os.getpid()) - cpu[1]}
    row["from_start_ms"] = row["on_wire_ms"]  # nothing waits for a connection: each starts when the last ended
    return row


def agents_process(ws_url: str, tokens: list[tuple[str, str]], pipe: Connection) -> None:
    """Entry point of the agents' own process: connect every agent, complete whatever arrives until told to stop."""

    async def main() -> None:
        sims = [AgentSim(ws_url, agent_id, token) for agent_id, token in tokens]
        await asyncio.gather(*(s.connect() for s in sims))
        pipe.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        pipe.send(sum(len(s.received) for s in sims))
        await asyncio.gather(*(s.close() for s in sims))

    asyncio.run(main())


class AgentsProcess:
    def __init__(self, ws_url: str, tokens: list[tuple[str, str]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=agents_process, args=(ws_url, tokens, child), daemon=True)
        self.proc.start()
        if not self.pipe.poll(60) or self.pipe.recv() != "ready":
            raise RuntimeError("agents did not start")

    def stop(self) -> int:
        """Stop the agents; returns how many assignments they received."""
        try:
            self.pipe.send("stop")
            received = int(self.pipe.recv()) if self.pipe.poll(30) else -1
        except (OSError, EOFError):
            received = -1
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        return received


async def drained(http: httpx.AsyncClient, timeout_s: float) -> float:
    """Wait until no task is queued or in flight; returns the seconds it took."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        by_status = (await http.get("/api/tasks/stats")).json()["by_status"]
        if by_status["queued"] + by_status["assigned"] + by_status["working"] == 0:
            return time.perf_counter() - start
        await asyncio.sleep(0.05)
    raise RuntimeError(f"tasks not drained within {timeout_s} s")


async def measure(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    hub = (
        ProfiledHub(data_dir, args.synchronous, args.profile)
        if args.profile
        else HubProcess(data_dir, args.synchronous)
    )
    http = httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    agents: AgentsProcess | None = None
    pool: Pool = RawPool(hub.url) if args.client == "raw" else HttpxPool(hub.url)
    single: Pool = RawPool(hub.url) if args.client == "raw" else HttpxPool(hub.url)
    out: dict[str, Any] = {"runs": []}
    try:
        tokens = []
        for i in range(args.agents):
            r = await http.post("/admin/tokens", json={"agent_id": f"submit-{i}"})
            tokens.append((f"submit-{i}", r.json()["token"]))
        if tokens:
            agents = AgentsProcess(hub.ws_url, tokens)
        await pool.open(args.connections)
        await single.open(1)
        n, c = args.requests, args.connections
        out["runs"].append(
            await burst(hub, pool, f"GET /nowhere (404), {n} at once, {c} conns", n, "GET", "/nowhere", False)
        )
        out["runs"].append(await burst(hub, pool, f"GET /health, {n} at once, {c} conns", n, "GET", "/health", False))
        out["rss_before_mb"] = hub.rss_mb()
        out["runs"].append(
            await burst(hub, pool, f"POST /api/tasks, {n} at once, {c} conns", n, "POST", "/api/tasks", True)
        )
        out["rss_after_mb"] = hub.rss_mb()
        if agents is not None:
            out["drain_s"] = await drained(http, 120)
        out["runs"].append(await one_at_a_time(hub, single, f"POST /api/tasks, {n} one at a time, 1 conn", n))
        if agents is not None:
            await drained(http, 120)
        out["health"] = (await http.get("/health")).json()
    finally:
        await pool.aclose()
        await single.aclose()
        await http.aclose()
        if agents is not None:
            out["assignments_received"] = agents.stop()
        hub.stop()
    return out


def print_table(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """One row per run kind: each figure is the median over the repeats (req/s also with its min-max)."""
    rows = [
        [
            "run",
            "count",
            "statuses",
            "from start p50 ms",
            "p95",
            "p99",
            "max",
            "on the wire p50 ms",
            "p95",
            "p99",
            "max",
            "req/s",
            "hub CPU s",
            "client CPU s",
        ]
    ]
    for i, first in enumerate(results[0]["runs"]):
        runs = [res["runs"][i] for res in results]

        def med(key: str, q: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key][q] for r in runs)

        rates = [r["per_s"] for r in runs]
        statuses: Counter[int] = Counter()
        for r in runs:
            statuses.update(r["statuses"])
        rate = f"{statistics.median(rates):,.0f}" + (f" ({min(rates):,.0f}-{max(rates):,.0f})" if len(runs) > 1 else "")
        rows.append(
            [
                first["name"],
                str(sum(r["count"] for r in runs)),
                " ".join(f"{k or 'error'}:{v}" for k, v in sorted(statuses.items())),
                *(f"{med('from_start_ms', q):,.1f}" for q in ("p50", "p95", "p99", "max")),
                *(f"{med('on_wire_ms', q):,.1f}" for q in ("p50", "p95", "p99", "max")),
                rate,
                f"{statistics.median(r['hub_cpu_s'] for r in runs):.2f}",
                f"{statistics.median(r['client_cpu_s'] for r in runs):.2f}",
            ]
        )
    print(
        f"\nAgentCom hub, SQLite synchronous={args.synchronous}, {args.agents} simulated agents draining, "
        f"client {args.client}, median of {len(results)} run(s) on fresh hubs"
    )
    print(table(rows))
    for res in results:
        store = res["health"]["store"]
        extra = f", drained {res['drain_s']:.2f} s after the burst" if "drain_s" in res else ""
        print(
            f"hub: {store['commits']} commits for {store['writes']} writes (max {store['commit_ms_max']} ms), "
            f"RSS {res['rss_before_mb']:.0f} -> {res['rss_after_mb']:.0f} MiB over the burst{extra}"
        )


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        return [await measure(args, Path(tmp) / f"run{i}") for i in range(args.repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="submissions per run")
    parser.add_argument("--connections", type=int, default=100, help="keep-alive connections for the burst")
    parser.add_argument("--agents", type=int, default=10, help="simulated agents completing tasks (0: none)")
    parser.add_argument("--client", default="raw", choices=["raw", "httpx"], help="HTTP client of the burst")
    parser.add_argument("--repeats", type=int, default=1, help="runs, each on a fresh hub")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the hub under cProfile and write its stats here (read them with: python -m pstats FILE)",
    )
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print_table(args, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
