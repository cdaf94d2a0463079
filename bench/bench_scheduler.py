"""Scheduler micro-benchmark: one scheduling round (``plan``) and the waiting-reason slices after it, in process.

1,000 queued tasks and 100 idle agents by default, in several fleets: every task runnable; every task needing a
capability nobody has (the worst case of a round: each task looks at every agent); complex tasks on a fleet
without Claude; tasks pinned to an executor nobody has. Then the cost of explaining waits: a full pass after the
fleet changed (every queued task looked at again), a slice when nothing changed, and a slice after one submission.

Run: ``python -m bench.bench_scheduler`` (``--help`` for options). Prints a table (median of the repeats).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from hub import complexity
from hub.scheduler import Candidate, plan
from hub.tasks import Task

NOW = 1_700_000_000_000


def make_task(n: int, tier: str = "standard", **fields: Any) -> Task:
    return Task(
        id=f"t{n:05d}",
        description=f"task {n}",
        created_at=NOW + n,
        updated_at=NOW + n,
        complexity=complexity.build(tier, f"task {n}", 0, 0),
        complexity_tier=tier,
        **fields,
    )


def agent(n: int, executors: frozenset[str] | None = None, models: tuple[str, ...] = ()) -> Candidate:
    try:
        return Candidate(f"a{n:03d}", frozenset({"shell", "code"}), executors, models)  # type: ignore[call-arg]
    except TypeError:  # a scheduler from before agents said what they run
        return Candidate(f"a{n:03d}", frozenset({"shell", "code"}))


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn`` in milliseconds, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


def fleets(n_tasks: int, n_agents: int) -> dict[str, tuple[list[Task], list[Candidate]]]:
    local = frozenset({"shell", "ollama"})
    return {
        "all runnable (undeclared agents)": (
            [make_task(n) for n in range(n_tasks)],
            [agent(n) for n in range(n_agents)],
        ),
        "all runnable (declared ollama)": (
            [make_task(n) for n in range(n_tasks)],
            [agent(n, local, ("qwen",)) for n in range(n_agents)],
        ),
        "capability nobody has": (
            [make_task(n, needed_capabilities=["gpu"]) for n in range(n_tasks)],
            [agent(n) for n in range(n_agents)],
        ),
        "complex, no claude in fleet": (
            [make_task(n, "complex") for n in range(n_tasks)],
            [agent(n, local, ("qwen",)) for n in range(n_agents)],
        ),
        "executor nobody has": (
            [make_task(n, executor="claude") for n in range(n_tasks)],
            [agent(n, local, ("qwen",)) for n in range(n_agents)],
        ),
    }


def bench_plan(n_tasks: int, n_agents: int, repeats: int) -> list[tuple[str, float, int]]:
    rows = []
    for name, (tasks, idle) in fleets(n_tasks, n_agents).items():
        ms, pairs = timed(partial(plan, tasks, idle, bool), repeats)
        rows.append((name, ms, len(pairs)))
    return rows


def waiting_rows(name: str, tasks: list[Task], fleet: list[Candidate], repeats: int) -> list[tuple[str, float, int]]:
    from hub.clock import ManualClock
    from hub.events import EventBus
    from hub.queue import TaskQueue
    from hub.waiting import WaitingReasons

    queue = TaskQueue(None, EventBus(), ManualClock())  # type: ignore[arg-type]  # its indexes only, no store
    for task in tasks:
        queue.tasks[task.id] = task
        queue._index(task)
    version = [0]
    changed: list[Task] = []
    waiting = WaitingReasons(queue, lambda: fleet, lambda: version[0], changed.append)

    def full_pass() -> tuple[int, int]:
        version[0] += 1
        slices, before = 1, waiting.n_checked
        while waiting.slice():
            slices += 1
        return slices, waiting.n_checked - before

    extra = [make_task(len(tasks) + k, executor="claude") for k in range(repeats)]

    def one_submitted() -> bool:
        task = extra.pop()
        queue.tasks[task.id] = task
        queue._index(task)
        return waiting.slice()

    ms_full, (slices, checked) = timed(full_pass, repeats)
    ms_idle, _ = timed(waiting.slice, repeats)
    ms_one, _ = timed(one_submitted, repeats)
    return [
        (f"{name}: full pass after a fleet change ({slices} slices)", ms_full, checked),
        (f"{name}: slice, nothing changed", ms_idle, 0),
        (f"{name}: slice after one submission", ms_one, 1),
    ]


def bench_waiting(n_tasks: int, n_agents: int, repeats: int) -> list[tuple[str, float, int]]:
    try:
        import hub.waiting  # noqa: F401
    except ImportError:  # a hub from before tasks said why they wait
        return []
    fleet = [agent(n, frozenset({"shell", "ollama"}), ("qwen",)) for n in range(n_agents)]
    rows = []
    for name, tasks in (
        ("all runnable", [make_task(n) for n in range(n_tasks)]),
        ("none runnable (executor)", [make_task(n, executor="claude") for n in range(n_tasks)]),
        ("mixed needs (10 shapes)", [make_task(n, needed_capabilities=[f"c{n % 10}"]) for n in range(n_tasks)]),
    ):
        rows += waiting_rows(name, tasks, fleet, repeats)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000, help="queued tasks")
    parser.add_argument("--agents", type=int, default=100, help="idle (and connected) agents")
    parser.add_argument("--repeats", type=int, default=50, help="runs per row (median reported)")
    args = parser.parse_args()
    print(f"\none scheduling round: {args.tasks} queued tasks, {args.agents} idle agents, median of {args.repeats}")
    print(f"{'fleet':<40} | {'plan ms':>8} | pairs")
    print(f"{'-' * 40}-+-{'-' * 8}-+------")
    for name, ms, pairs in bench_plan(args.tasks, args.agents, args.repeats):
        print(f"{name:<40} | {ms:>8.3f} | {pairs}")
    rows = bench_waiting(args.tasks, args.agents, args.repeats)
    if rows:
        print(f"\nexplaining waits: {args.tasks} queued tasks, {args.agents} connected agents")
        print(f"{'case':<72} | {'ms':>8} | tasks looked at")
        print(f"{'-' * 72}-+-{'-' * 8}-+----------------")
        for name, ms, n in rows:
            print(f"{name:<72} | {ms:>8.3f} | {n}")


if __name__ == "__main__":
    main()
