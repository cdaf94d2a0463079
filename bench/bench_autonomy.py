"""Autonomy tick benchmark: the cost of one tick of the hub's state machine, and what 30 idle minutes do.

A real hub (127.0.0.1, port 0, SQLite in a temporary directory) driven by a manual clock. Cases: an idle hub with
no scan target; an idle hub with one scanned, unchanged git repository and no repository cooldown (each tick asks
git for its HEAD); a hub with 1,000 queued tasks and no agent to run them (it rests, counting them stranded).
Then 30 simulated minutes of ticks every 30 s on an idle hub with a repository: transitions, cycles and journal
rows written.

Run: ``python -m bench.bench_autonomy`` (``--help`` for options). Prints a table (median of the ticks).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.table import print_rows
from hub.autonomy.loop import Autonomy
from hub.autonomy.states import State
from hub.clock import ManualClock
from hub.server import HubServer
from hub.settings import HubSettings
from hub.tasks import Task

QUIET = {"autonomy_tick_s": 3600.0, "presence_ttl_s": 1e6, "acceptance_timeout_s": 1e6}


def repo(path: Path) -> Path:
    env = {
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@example.org",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@example.org",
        "HOME": str(path),
        "PATH": "/usr/bin:/bin",
    }
    path.mkdir()
    (path / "m.py").write_text("x = 1\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, timeout=30)
    return path


async def hub(root: Path, clock: ManualClock, **overrides: Any) -> tuple[HubServer, Autonomy]:
    settings = HubSettings(host="127.0.0.1", port=0, data_dir=root / f"hub{time.monotonic_ns()}", **QUIET, **overrides)
    server = HubServer(settings, clock)
    await server.start()
    auto: Autonomy = server.hub.autonomy
    return server, auto


async def time_ticks(auto: Autonomy, clock: ManualClock, n: int, step_s: float) -> float:
    times = []
    for _ in range(n):
        clock.advance(step_s)
        t0 = time.perf_counter()
        await auto.tick()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


async def main(ticks: int) -> None:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clock = ManualClock()
        server, auto = await hub(root, clock)
        rows.append(("tick, idle, no scan target (ms)", f"{await time_ticks(auto, clock, ticks, 30):.3f}"))
        await server.stop()

        server, auto = await hub(
            root, clock, autonomy_scan_paths=(repo(root / "r1"),), autonomy_improve_cooldown_s=0,
            autonomy_submit_goals=False,  # its finding (m.py has no test module) stays a record: the hub stays idle
        )  # fmt: skip
        await auto.tick()
        await auto.fsm.wait_until(lambda: auto.fsm.current is State.RESTING and len(auto.fsm.history) >= 4, 60)
        rows.append(("tick, idle, 1 scanned repo, no cooldown (ms)", f"{await time_ticks(auto, clock, ticks, 30):.3f}"))
        before, cycles, journal = (
            len(auto.fsm.history),
            auto.n_cycles,
            len(await server.hub.store.read_journal("hub_transition")),
        )
        await time_ticks(auto, clock, 60, 30)
        after_journal = len(await server.hub.store.read_journal("hub_transition"))
        rows.append(
            (
                "30 idle min: transitions / cycles / journal rows",
                f"{len(auto.fsm.history) - before} / {auto.n_cycles - cycles} / {after_journal - journal}",
            )
        )
        await server.stop()

        server, auto = await hub(root, clock)

        now = clock.now_ms()
        await server.hub.queue.submit_many(
            [Task(id=f"t{i:05d}", description="x", created_at=now, updated_at=now) for i in range(1000)]
        )
        server.hub.fleet.scheduler.wake()  # as the API does after a submission
        for _ in range(600):  # the scheduler's round marks each one waiting for an agent; a tick then counts them
            await auto.tick()
            if auto.stranded_tasks == 1000:
                break
            await asyncio.sleep(0.05)
        assert auto.fsm.current is State.RESTING, (auto.stranded_tasks, list(auto.fsm.history)[-3:])
        rows.append(
            ("tick, resting, 1,000 queued no agent can run (ms)", f"{await time_ticks(auto, clock, ticks, 1):.3f}")
        )
        await server.stop()
    print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    asyncio.run(main(parser.parse_args().ticks))
