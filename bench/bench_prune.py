"""Time of one sweep of task branches out of a mirror (:func:`sidecar.git.prune.sweep`), by number of branches.

Builds a mirror of a small local bare remote with :class:`sidecar.git.mirror.Mirrors`, then ``N`` task branches
(``refs/heads/agentcom/t<i>``, one commit each on main's head, written in one ``update-ref --stdin``): a quarter
merged (main's head), a quarter expired (committed 30 days ago), the rest recent, so the sweep has every kind of
work. Times, per ``N``: the first sweep (with the batch as large as ``N``), then a second one (nothing to do), and
the first sweep with the default batch (500). Loose refs as the sidecar leaves them, and ``--packed`` packs them
first (``git pack-refs --all``). Run: ``python -m bench.bench_prune`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

from shared.repos import RepoCheckout
from sidecar.git.mirror import Mirrors
from sidecar.git.prune import sweep
from sidecar.settings import GitSettings

ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    **{f"GIT_{who}_NAME": "b" for who in ("AUTHOR", "COMMITTER")},
    **{f"GIT_{who}_EMAIL": "b@b" for who in ("AUTHOR", "COMMITTER")},
}


def sh(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env or ENV, input=stdin, check=True, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    return done.stdout.strip()


async def mirror_with_branches(root: Path, n: int, packed: bool) -> tuple[Path, GitSettings]:
    remote, work = root / "remote.git", root / "work"
    sh("init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
    sh("init", "-q", "-b", "main", str(work), cwd=root)
    (work / "README").write_text("bench\n")
    sh("add", "-A", cwd=work)
    sh("commit", "-qm", "initial", cwd=work)
    sh("push", "-q", str(remote), "main", cwd=work)
    checkout = RepoCheckout(name="bench", url=str(remote), branch="agentcom/bench")
    mirror = await Mirrors(root / "mirrors", GitSettings()).sync(checkout)
    main = sh("rev-parse", "refs/remotes/origin/main", cwd=mirror)
    old = {**ENV, "GIT_COMMITTER_DATE": f"{int(time.time()) - 30 * 86400} +0000"}
    recent = sh("commit-tree", "-p", main, "-m", "task", f"{main}^{{tree}}", cwd=mirror)
    expired = sh("commit-tree", "-p", main, "-m", "old task", f"{main}^{{tree}}", cwd=mirror, env=old)
    lines = []
    for i in range(n):
        commit = (main, expired, recent, recent)[i % 4]
        lines.append(f"create refs/heads/agentcom/t{i:06d} {commit}\n")
    sh("update-ref", "--stdin", cwd=mirror, stdin="".join(lines))
    if packed:
        sh("pack-refs", "--all", cwd=mirror)
    return mirror, GitSettings(branch_prune_batch=max(n, 1))


async def timed(mirror: Path, settings: GitSettings) -> tuple[float, int]:
    started = time.perf_counter()
    result = await sweep(mirror, settings)
    assert result.error is None, result.error
    return (time.perf_counter() - started) * 1000, result.pruned


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--branches", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--packed", action="store_true", help="pack the refs before sweeping")
    args = parser.parse_args()
    print(f"{'branches':>8} {'pruned':>7} {'sweep ms':>9} {'again ms':>9} {'batch 500: pruned':>18} {'ms':>7}")
    for n in args.branches:
        with tempfile.TemporaryDirectory() as tmp:
            mirror, settings = await mirror_with_branches(Path(tmp), n, args.packed)
            first_ms, pruned = await timed(mirror, settings)
            again_ms, _ = await timed(mirror, settings)
        with tempfile.TemporaryDirectory() as tmp:
            mirror, _ = await mirror_with_branches(Path(tmp), n, args.packed)
            batch_ms, batch_pruned = await timed(mirror, GitSettings())
        print(f"{n:>8} {pruned:>7} {first_ms:>9.1f} {again_ms:>9.1f} {batch_pruned:>18} {batch_ms:>7.1f}")


if __name__ == "__main__":
    asyncio.run(main())
