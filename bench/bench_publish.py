"""Publication costs: the pre-publication scan, the tier decision, and a whole publication on a local repository.

- ``scan_diff`` over a diff of ``--lines`` added lines of ordinary code (no finding) and over a report-sized diff
  (64,000 characters), ms per diff;
- ``classify`` per change, µs;
- ``publish`` end to end on a real bare remote and the fake forge, ``--tasks`` times each: the auto tier (scan, push
  the branch, fast-forward main) and the pull-request tier (scan, push, open the PR over HTTP); wall ms and the
  ``git_ms`` the report counts.

Run: ``python -m bench.bench_publish`` (``--help`` for options). Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from shared.fakes.forge_server import FakeForgeServer
from shared.repos import DIFF_CHARS, ChangeReport, FileStat, RepoCheckout, ReviewPolicy
from shared.review import classify
from shared.secret_scan import scan_diff
from sidecar.git.forge import GitHubForge
from sidecar.git.publish import publish

TOKEN = "bench-forge-token"


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=bench", "-c", "user.email=bench@agentcom.invalid", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


def code_diff(n_lines: int) -> str:
    body = [
        f"+    value_{i} = compute(item_{i}, factor={i % 7}) + offsets[{i % 13}]  # step {i}" for i in range(n_lines)
    ]
    return "\n".join(["diff --git a/m.py b/m.py", "--- a/m.py", "+++ b/m.py", f"@@ -0,0 +1,{n_lines} @@", *body])


def timed_ms(fn: object, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float], unit: str = "ms", scale: float = 1.0) -> str:
    values = sorted(s * scale for s in samples)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    cells = [f"{v:.2f} {unit}" for v in (statistics.median(values), p95, values[-1])]
    return f"| {name} | {len(values)} | " + " | ".join(cells) + " |"


async def publications(root: Path, n_tasks: int) -> list[str]:
    remote = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    work = root / "work"
    git(root, "clone", "-q", str(remote), str(work))
    (work / "app.py").write_text("x = 0\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "seed")
    git(work, "push", "-q", "origin", "HEAD:main")
    rows = []
    async with FakeForgeServer(token=TOKEN, repos=["acme/demo"]) as fake:
        forge = GitHubForge(TOKEN, base_url=fake.url)
        for tier, policy in (("auto_merge", ReviewPolicy(auto_merge=True)), ("pull_request", ReviewPolicy())):
            wall, spent = [], []
            for n in range(n_tasks):
                task_id = f"{tier}-{n}"
                base = git(work, "rev-parse", "origin/main" if n == 0 else "HEAD")
                git(work, "checkout", "-q", "-B", f"agentcom/{task_id}", base)
                (work / f"{task_id}.txt").write_text(f"{task_id}\n")
                git(work, "add", "-A")
                git(work, "commit", "-qm", task_id)
                commit = git(work, "rev-parse", "HEAD")
                change = ChangeReport(
                    repo="demo",
                    branch=f"agentcom/{task_id}",
                    base_commit=base,
                    commit=commit,
                    files=[FileStat(path=f"{task_id}.txt", added=1, status="added")],
                    added=1,
                )
                checkout = RepoCheckout(name="demo", url=str(remote), branch=f"agentcom/{task_id}", review=policy,
                                        forge="github", forge_repo="acme/demo")  # fmt: skip
                started = time.perf_counter()
                report = await publish(work, checkout, change, "verified", task_id=task_id, summary_md="# bench",
                                       forge=forge)  # fmt: skip
                wall.append((time.perf_counter() - started) * 1000)
                spent.append(float(report.git_ms or 0))
                expected = "merged" if tier == "auto_merge" else "pull_request"
                assert report.published == expected, (report.published, report.publish_error)
            rows += [row(f"publish, {tier} tier (wall)", wall), row(f"publish, {tier} tier (git_ms)", spent)]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scan, classify and publish costs.")
    parser.add_argument("--lines", type=int, default=20_000, help="added lines in the large scan diff")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=10, help="publications per tier")
    args = parser.parse_args(argv)
    large = code_diff(args.lines)
    report_sized = large[:DIFF_CHARS]
    change = ChangeReport(repo="demo", branch="agentcom/t", base_commit="abc1234", commit="def5678",
                          files=[FileStat(path=f"src/m{i}.py", added=3) for i in range(30)], added=90)  # fmt: skip
    policy = ReviewPolicy(auto_merge=True, sensitive_paths=[".github/**", "**/migrations/**", "*.pem"])
    lines = ["| what | n | median | p95 | max |", "|---|---|---|---|---|"]
    lines.append(row(f"scan_diff, {len(report_sized):,} chars", timed_ms(lambda: scan_diff(report_sized), args.repeat)))
    lines.append(row(f"scan_diff, {args.lines:,} lines / {len(large) / 1e6:.1f} MB",
                     timed_ms(lambda: scan_diff(large), max(3, args.repeat // 4))))  # fmt: skip
    lines.append(row("classify, 30 files, 3 globs", timed_ms(lambda: classify(change, "verified", policy), 1000),
                     "µs", 1000))  # fmt: skip
    with tempfile.TemporaryDirectory() as root:
        lines += asyncio.run(publications(Path(root), args.tasks))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
