"""Time per task spent in git operations (``result.change.git_ms``) for real tasks on the demo's repository.

Starts what ``agentcom demo`` starts (a hub, ``--agents`` sidecars with their real sandbox), creates the demo's
repository (:func:`scripts.demo_git.make_repo`) afresh for each batch, registers it with the ``--publish`` mode, and
submits ``N`` shell tasks on it at once for each ``N`` of ``--tasks`` (default 1 and 10). Each task writes a file of
its own (no conflicts) and fixes ``add()``, so every task has a commit to make, verified by the repository's test
command (only a verified change is published). ``git_ms`` is the sidecar's wall
time in git for the task: mirror fetch, the task's tree (a clone of the mirror), commit, the fresh tree after the
commit, rebase and, when published, push and merge. The first task of a batch also pays for the mirror's first fetch.

Modes: ``none`` keeps the change in the sidecar's mirror; ``push`` pushes the task's branch; ``auto`` allows the
auto-merge tier (each verified change fast-forwards main, later tasks rebase onto it).
Run: ``python -m bench.bench_git_task`` (``--help``). Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from scripts.demo import Demo
from scripts.demo_git import make_repo
from shared.fakes import calc_project as calc

FINAL = ("completed", "failed", "dead_letter", "cancelled")


def batch(http: httpx.Client, root: Path, n: int, publish: str, timeout_s: float) -> dict[str, Any]:
    """Run ``n`` tasks at once on a fresh copy of the demo's repository; their git times and the batch's wall time."""
    name = f"calc{n}{publish}"
    bare = make_repo(root / "repos", name)
    review = {"auto_merge": publish == "auto"}
    body = {"name": name, "url": str(bare), "review": review, "test_command": calc.TEST_COMMAND}
    body["publish"] = {"none": "none", "push": "push", "auto": "pull_request"}[publish]
    r = http.post("/api/repos", json=body)
    r.raise_for_status()
    tasks = [
        {
            "description": f"bench task {i}",
            "executor": "shell",
            "repo": name,
            "metadata": {"shell_command": f"echo {i} > note-{i}.txt && sed -i 's/a - b/a + b/' calc.py"},
        }
        for i in range(n)
    ]
    started = time.monotonic()
    ids = [t["task_id"] for t in http.post("/api/tasks/batch", json={"tasks": tasks}).json()["tasks"]]
    deadline = time.monotonic() + timeout_s
    while True:
        done = [http.get(f"/api/tasks/{i}").json() for i in ids]
        if all(t["status"] in FINAL for t in done) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    wall = time.monotonic() - started
    changes = [(t.get("result") or {}).get("change") or {} for t in done]
    git_ms = [c["git_ms"] for c in changes if isinstance(c.get("git_ms"), int)]
    return {
        "n": n,
        "publish": publish,
        "ok": sum(t["status"] == "completed" for t in done),
        "git_ms": git_ms,
        "published": Counter(str(c.get("published")) for c in changes),
        "task_s": [((t.get("completed_at") or t["updated_at"]) - t["created_at"]) / 1000 for t in done],
        "wall_s": wall,
    }


def row(result: dict[str, Any]) -> str:
    ms = result["git_ms"] or [0]
    return (
        f"{result['publish']:<7} {result['n']:>5} {result['ok']:>4} {min(ms):>7} {statistics.median(ms):>8.0f}"
        f" {statistics.mean(ms):>7.0f} {max(ms):>7} {statistics.median(result['task_s']):>8.2f}"
        f" {result['wall_s']:>7.2f}  {' '.join(f'{k}={v}' for k, v in sorted(result['published'].items()))}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 10], help="batch sizes (default 1 10)")
    parser.add_argument("--agents", type=int, default=2, help="sidecars (default 2, as in the demo)")
    parser.add_argument("--publish", nargs="+", choices=["none", "push", "auto"], default=["none", "push", "auto"])
    parser.add_argument("--timeout", type=float, default=300, help="seconds per batch (default 300)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentcom-bench-git-") as tmp:
        demo = Demo(Path(tmp), sys.executable)
        try:
            hub_url = demo.start_hub()
            http = httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {demo.admin_token}"}, timeout=30)
            model_url, model, _ = demo.start_model("calc_fix")
            agents = [f"bench-{i}" for i in range(args.agents)]
            for slot, agent_id in enumerate(agents):
                token = http.post("/admin/tokens", json={"agent_id": agent_id}).json()["token"]
                demo.start_sidecar(hub_url, agent_id, token, model_url, model, slot, {})
            deadline = time.monotonic() + 60
            while sum(a["status"] == "online" for a in http.get("/api/agents").json()["agents"]) < len(agents):
                if time.monotonic() > deadline:
                    raise RuntimeError("sidecars did not connect")
                time.sleep(0.2)
            print(f"git time per task on the demo repository; {len(agents)} sidecars, one task each at a time")
            print("publish  tasks   ok  git min  git med git mean git max  task med  wall s  published")
            print("                        (ms)     (ms)    (ms)    (ms)     (s)")
            for publish in args.publish:
                for n in args.tasks:
                    print(row(batch(http, Path(tmp), n, publish, args.timeout)), flush=True)
        finally:
            demo.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
