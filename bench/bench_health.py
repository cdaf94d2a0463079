"""Health and snapshot latency with many stored tasks: a real hub process over a database of N tasks.

Writes N tasks (mostly finished, a few hundred queued) straight into a fresh database with the hub's real schema,
starts ``python -m hub`` on it, and reports:
- start-up time (process start -> accepting requests, which includes loading every task);
- latency of ``GET /health``, ``GET /api/dashboard/state`` and ``GET /api/tasks?limit=100`` (p50/p95/p99/max over
  ``--requests`` sequential keep-alive requests with the admin token), and of two text searches (``q=``): one most
  tasks match (the walk stops at the page) and one none does (a scan of every stored task: the worst case);
- with ``--prune``: a second start on a copy of the same database under the default retention policy, how long the
  retention loop takes to bring it down to the policy, and /health latency meanwhile.

Run: ``python -m bench.bench_health`` (``--help`` for options). Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hub.queue.commits import task_row
from hub.store.sqlite import UPSERT_TASK, SqliteStore
from hub.tasks import Task, TaskStatus

ADMIN = "bench-admin-token"
DAY_MS = 24 * 3600 * 1000
SEARCHES = ("/api/tasks?limit=100&q=REFACTOR", "/api/tasks?limit=100&q=no-such-text")
"""Text searches timed: one most tasks match, one none does (it reads every stored task)."""


def build_database(path: Path, n_tasks: int, n_queued: int) -> float:
    """Create the schema through the hub's own migrations, then insert the rows directly; returns seconds taken."""
    started = time.perf_counter()

    async def schema() -> None:
        store = await SqliteStore.open(path, "NORMAL")
        await store.close()

    asyncio.run(schema())
    now = int(time.time() * 1000)
    rng = random.Random(9)
    rows = []
    for n in range(n_tasks):
        created = now - 6 * DAY_MS + n * (6 * DAY_MS // max(1, n_tasks))  # within the 7-day age limit
        if n >= n_tasks - n_queued:
            status = TaskStatus.QUEUED
        else:
            status = rng.choices([TaskStatus.COMPLETED, TaskStatus.DEAD_LETTER, TaskStatus.CANCELLED], [96, 3, 1])[0]
        task = Task(
            id=f"task-{n:016x}",
            description=f"stored task {n}: refactor module {n % 97}",
            created_at=created,
            updated_at=created + 1000,
            status=status,
            priority=n % 4,
            metadata={"repo": "example", "n": n},
            needed_capabilities=["nobody-has-this"] if status is TaskStatus.QUEUED else [],
        )
        if status is TaskStatus.COMPLETED:
            task.outcome, task.completed_at, task.assigned_to = "verified", created + 1000, f"agent-{n % 10}"
            task.result = {"status": "success", "output": "ok"}
        elif status is TaskStatus.DEAD_LETTER:
            task.dead_letter_reason, task.retry_count = "agent_error", 3
        task.history = [{"event": "queued", "timestamp": created, "details": {"note": "submitted"}}]
        rows.append(task_row(task))
    with sqlite3.connect(path) as db:
        db.executemany(UPSERT_TASK, rows)
    return time.perf_counter() - started


class HubProcess:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--port", "0", "--data-dir", str(data_dir), "--log-level", "WARNING"],
            env={**os.environ, "AGENTCOM_ADMIN_TOKEN": ADMIN, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "url=" not in line:
            raise RuntimeError(f"hub did not start: {line!r}")
        self.start_s = time.perf_counter() - self.started
        self.url = line.split("url=", 1)[1].strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RawGet:
    """One keep-alive HTTP/1.1 connection, so the numbers measure the hub and not a client library."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//", 1)[1].split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n".encode())
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def time_requests(url: str, path: str, n: int) -> dict[str, Any]:
    client = RawGet(url)
    samples = []
    size = 0
    try:
        for _ in range(n + 5):
            t0 = time.perf_counter()
            status, body = await client.get(path)
            samples.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
            size = len(body)
    finally:
        client.close()
    samples = samples[5:]  # warm-up excluded
    q = statistics.quantiles(samples, n=100)
    return {
        "path": path,
        "p50_ms": statistics.median(samples),
        "p95_ms": q[94],
        "p99_ms": q[98],
        "max_ms": max(samples),
        "bytes": size,
    }


async def wait_pruned(url: str, target: int, timeout_s: float) -> tuple[float, list[float]]:
    """Seconds until the stored total reaches ``target``, and /health latencies sampled meanwhile."""
    client = RawGet(url)
    started = time.perf_counter()
    health: list[float] = []
    try:
        while time.perf_counter() - started < timeout_s:
            t0 = time.perf_counter()
            await client.get("/health")
            health.append((time.perf_counter() - t0) * 1000)
            _, body = await client.get("/api/tasks/stats")
            if json.loads(body)["total"] <= target:
                return time.perf_counter() - started, health
            await asyncio.sleep(0.02)
    finally:
        client.close()
    raise RuntimeError(f"not pruned to {target} within {timeout_s}s")


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000, help="stored tasks")
    parser.add_argument("--queued", type=int, default=500, help="of which still queued")
    parser.add_argument("--requests", type=int, default=200, help="requests timed per endpoint")
    parser.add_argument("--prune", action="store_true", help="also time pruning down to the default policy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "hub"
        data_dir.mkdir()
        build_s = build_database(data_dir / "agentcom.db", args.tasks, args.queued)
        pristine = Path(tmp) / "pristine.db"
        if args.prune:
            shutil.copy(data_dir / "agentcom.db", pristine)
        keep_all = {
            f"AGENTCOM_RETENTION_{k}_MAX": str(10 * args.tasks) for k in ("COMPLETED", "DEAD_LETTER", "CANCELLED")
        }
        hub = HubProcess(data_dir, keep_all)
        try:
            results = [
                asyncio.run(time_requests(hub.url, path, args.requests))
                for path in ("/health", "/api/dashboard/state", "/api/tasks?limit=100", *SEARCHES)
            ]
        finally:
            hub.stop()
        print(
            f"\nAgentCom hub with {args.tasks:,} stored tasks ({args.queued} queued); database written in "
            f"{build_s:.1f} s; hub start-up (load every task, then accept) {hub.start_s * 1000:,.0f} ms"
        )
        rows = [["endpoint", "p50 ms", "p95 ms", "p99 ms", "max ms", "bytes"]]
        for r in results:
            rows.append(
                [
                    r["path"],
                    f"{r['p50_ms']:.2f}",
                    f"{r['p95_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    f"{r['max_ms']:.2f}",
                    f"{r['bytes']:,}",
                ]
            )
        print(f"{args.requests} sequential keep-alive requests per endpoint, admin token:")
        print(table(rows))
        if args.prune:
            prune_dir = Path(tmp) / "prune"
            prune_dir.mkdir()
            shutil.copy(pristine, prune_dir / "agentcom.db")
            with sqlite3.connect(pristine) as db:
                counts = dict(db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall())
            target = sum(min(n, 10_000) if s != "queued" else n for s, n in counts.items())
            hub = HubProcess(prune_dir, {})
            try:
                took, health = asyncio.run(wait_pruned(hub.url, target, 600))
            finally:
                hub.stop()
            print(
                f"\ndefault retention (10,000 kept per finished status): start-up {hub.start_s * 1000:,.0f} ms, "
                f"pruned {args.tasks - target:,} tasks (rows and trajectories) in {took:.1f} s; /health meanwhile "
                f"p50 {statistics.median(health):.2f} ms, max {max(health):.2f} ms over {len(health)} requests"
            )


if __name__ == "__main__":
    main()
