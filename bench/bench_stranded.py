"""Stranded-work benchmark: what finding queued tasks no agent can run adds to the hub's state machine.

Two parts. A real hub (127.0.0.1, port 0, SQLite in a temporary directory, manual clock, no agent connected) with N
queued tasks, all stranded (``no_agent_connected``): the median tick once their waiting reasons are set (the hub
rests). Then :func:`hub.autonomy.stranded.gather` alone over N queued tasks: none stranded (the common case), all
stranded, and one stranded task with N - 1 others depending on it in a chain listed newest first (the worst order
for the dependency walk).

Run: ``python -m bench.bench_stranded`` (``--help`` for options). Prints a table (medians).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.table import print_rows
from hub.autonomy.loop import Autonomy
from hub.autonomy.states import State
from hub.autonomy.stranded import gather
from hub.clock import ManualClock
from hub.server import HubServer
from hub.settings import HubSettings
from hub.tasks import Task

QUIET = {"autonomy_tick_s": 3600.0, "presence_ttl_s": 1e6, "acceptance_timeout_s": 1e6}


async def tick_ms(root: Path, n: int, ticks: int) -> float:
    clock = ManualClock()
    settings = HubSettings(host="127.0.0.1", port=0, data_dir=root / f"hub{n}", **QUIET)
    server = HubServer(settings, clock)
    await server.start()
    try:
        auto: Autonomy = server.hub.autonomy
        now = clock.now_ms()
        await server.hub.queue.submit_many(
            [Task(id=f"t{i:06d}", description="x", created_at=now, updated_at=now) for i in range(n)]
        )
        server.hub.fleet.scheduler.wake()  # as the submit endpoint does: its rounds explain why the tasks wait
        async with asyncio.timeout(300):
            while server.hub.fleet.waiting.n_changed < n:
                await asyncio.sleep(0.01)
        await auto.tick()
        times = []
        for _ in range(ticks):
            t0 = time.perf_counter()
            await auto.tick()
            times.append(time.perf_counter() - t0)
        assert auto.fsm.current is State.RESTING and auto.stranded_tasks == n
        return statistics.median(times) * 1e3
    finally:
        await server.stop()


def tasks_of(n: int, kind: str) -> list[Task]:
    out = [Task(id=f"t{i:06d}", description="x", created_at=0, updated_at=0) for i in range(n)]
    for i, task in enumerate(out):
        if kind == "all" or (kind == "chain" and i == 0):
            task.waiting_reason = {"code": "no_agent_with_executor", "detail": ""}
        if kind == "chain" and i:
            task.depends_on = [out[i - 1].id]
    return out[::-1] if kind == "chain" else out


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def gather_ms(n: int, kind: str) -> float:
    queued = tasks_of(n, kind)
    index = {t.id: t for t in queued}
    assert gather(queued, index, ()).tasks == (0 if kind == "none" else n)
    return median_ms(lambda: gather(queued, index, ()), 20)


async def main(sizes: list[int], ticks: int) -> None:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            rows.append((f"tick, resting, {n:,} stranded queued (ms)", f"{await tick_ms(Path(tmp), n, ticks):.3f}"))
    for n in sizes:
        for kind in ("none", "all", "chain"):
            rows.append((f"gather, {n:,} queued, {kind} stranded (ms)", f"{gather_ms(n, kind):.3f}"))
    print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--ticks", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.ticks))
