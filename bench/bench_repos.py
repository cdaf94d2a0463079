"""Repository micro-benchmark: what the hub's half of the git workflow costs.

- ``git ls-remote`` of a local bare repository (the hub's base-commit lookup; a network remote adds its latency);
- one scheduling round (``plan``) of 1,000 queued tasks on 10 repositories over 100 idle agents, without and with
  the file-conflict gate (tasks naming 3 files each out of 200 per repository, 50 tasks in flight).

Run: ``python -m bench.bench_repos`` (``--help`` for options). Prints a table (median of the repeats).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from hub.repos.conflicts import ConflictGate
from hub.repos.heads import git_env, ls_remote
from hub.scheduler import Candidate, plan
from hub.tasks import Task, TaskStatus


def bare_repo(root: Path) -> str:
    env = {**git_env(), "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@x"
    bare, work = root / "r.git", root / "w"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=env, timeout=30)
    subprocess.run(
        ["git", "clone", "-q", str(bare), str(work)], check=True, env=env, timeout=30, stderr=subprocess.DEVNULL
    )
    (work / "f").write_text("x\n")
    for args in (
        ["checkout", "-q", "-b", "main"],
        ["add", "f"],
        ["commit", "-qm", "x"],
        ["push", "-q", "origin", "main"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True, env=env, timeout=30)
    return str(bare)


def tasks(n: int, repos: int, files: int, rng: random.Random) -> list[Task]:
    out = []
    for i in range(n):
        hints = [{"path": f"src/f{rng.randrange(files)}.py"} for _ in range(3)]
        out.append(
            Task(id=f"t{i:05d}", description="x", created_at=0, updated_at=0, repo=f"r{i % repos}", file_hints=hints)
        )
    return out


def median_ms(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=100)
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = bare_repo(Path(tmp))
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            assert asyncio.run(ls_remote(url, "main", 15)) is not None
            times.append((time.perf_counter() - started) * 1000)
        rows.append(("git ls-remote, local bare repository", statistics.median(times)))
    rng = random.Random(1)
    queued = tasks(args.tasks, 10, 200, rng)
    running = tasks(50, 10, 200, rng)
    for t in running:
        t.status = TaskStatus.WORKING
    repos = frozenset(f"r{i}" for i in range(10))
    agents = [Candidate(f"a{i}", frozenset(), None, (), repos) for i in range(args.agents)]
    rows.append(
        (
            "plan: 1,000 tasks, 100 agents, no gate",
            median_ms(lambda: plan(queued, agents, lambda t: True), args.repeats),
        )
    )
    rows.append(
        (
            "plan: same, with the file-conflict gate",
            median_ms(
                lambda: plan(queued, agents, lambda t: True, ConflictGate(running, lambda t: None)), args.repeats
            ),
        )
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  median ms")
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:9.3f}")


if __name__ == "__main__":
    main()
