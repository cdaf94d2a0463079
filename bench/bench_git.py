"""Time per task spent making a task's tree from a repository's mirror: clone vs worktree, with 1 and 10 tasks.

Builds a repository (``--files`` files of ``--kb`` KiB each, ``--commits`` commits) as a local bare remote, mirrors
it with :class:`sidecar.git.mirror.Mirrors`, then makes ``N`` task trees from the mirror, one after the other and
``N`` at once, by each method:

- ``clone-hardlink``: ``git clone --local --no-checkout`` + checkout of the base on the task's branch (what the
  sidecar does: :func:`sidecar.git.worktree.fresh_tree`);
- ``clone-copy``: the same with ``--no-hardlinks`` (objects copied);
- ``clone-shared``: ``git clone --shared`` (objects through alternates: the mirror must be readable in the sandbox);
- ``worktree``: ``git worktree add`` from the mirror (the mirror must be writable from the sandbox).

Also the first mirror (``init`` + fetch) and a no-op re-fetch. Run: ``python -m bench.bench_git`` (``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from shared.repos import RepoCheckout
from sidecar.git.mirror import Mirrors, resolve_base
from sidecar.git.run import git
from sidecar.git.worktree import fresh_tree
from sidecar.settings import GitSettings

ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "b",
       "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip


def build_remote(root: Path, files: int, kb: int, commits: int) -> Path:
    work, remote = root / "src", root / "remote.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=ENV)
    for c in range(commits):
        for f in range(files):
            if c == 0 or f % 10 == c % 10:
                path = work / f"pkg{f % 20}" / f"mod{f}.py"
                path.parent.mkdir(exist_ok=True)
                path.write_text(f"# {c}\n{os.urandom(kb * 512).hex()}\n")  # kb KiB of text that does not compress
        subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=ENV)
        subprocess.run(["git", "commit", "-q", "-m", f"c{c}"], cwd=work, check=True, env=ENV)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(remote)], check=True, env=ENV)
    return remote


async def clone(mirror: Path, tree: Path, base: str, branch: str, mode: str) -> None:
    if mode == "clone-hardlink":
        await fresh_tree(mirror, tree, branch, base, hardlinks=True)
    elif mode == "clone-copy":
        await fresh_tree(mirror, tree, branch, base, hardlinks=False)
    elif mode == "clone-shared":
        await git(["clone", "-q", "--shared", "--no-checkout", "--", str(mirror), str(tree)])
        await git(["checkout", "-q", "-B", branch, base], cwd=tree)
    else:
        await git(["worktree", "add", "-q", "-B", branch, str(tree), base], cwd=mirror)


async def timed(n: int, parallel: bool, make: Callable[[int], Awaitable[None]]) -> float:
    started = time.perf_counter()
    if parallel:
        await asyncio.gather(*(make(i) for i in range(n)))
    else:
        for i in range(n):
            await make(i)
    return (time.perf_counter() - started) * 1000


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-git-"))
    try:
        remote = build_remote(root, args.files, args.kb, args.commits)
        size = sum(p.stat().st_size for p in remote.rglob("*") if p.is_file()) / 1e6
        mirrors = Mirrors(root / "mirrors", GitSettings())
        co = RepoCheckout(name="bench", url=str(remote), branch="agentcom/x")
        t0 = time.perf_counter()
        mirror = await mirrors.sync(co)
        first = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        await mirrors.sync(co)
        refetch = (time.perf_counter() - t0) * 1000
        base = await resolve_base(mirror, co)
        await clone(mirror, root / "warm-up", base, "agentcom/warm-up", "clone-copy")  # the page cache, once
        print(f"repository: {args.files} files x {args.kb} KiB, {args.commits} commits, {size:.1f} MB packed")
        print(f"mirror: first fetch {first:.0f} ms, no-op re-fetch {refetch:.0f} ms\n")
        print(f"{'method':<16}{'tasks':>6}{'run':>12}{'total ms':>10}{'ms/task':>9}{'p50':>8}{'max':>8}")
        for mode in ("clone-hardlink", "clone-copy", "clone-shared", "worktree"):
            for n in (1, 10):
                for parallel in (False, True) if n > 1 else (False,):
                    per: list[float] = []
                    tag = f"{mode}-{n}-{parallel}"

                    async def make(i: int, tag: str = tag, per: list[float] = per, mode: str = mode) -> None:
                        t = time.perf_counter()
                        await clone(mirror, root / "trees" / tag / str(i), base, f"agentcom/{tag}-{i}", mode)
                        per.append((time.perf_counter() - t) * 1000)

                    total = await timed(n, parallel, make)
                    run = "at once" if parallel else "in turn"
                    print(f"{mode:<16}{n:>6}{run:>12}{total:>10.0f}{total / n:>9.0f}"
                          f"{statistics.median(per):>8.0f}{max(per):>8.0f}")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="files in the repository")
    parser.add_argument("--kb", type=int, default=4, help="KiB per file")
    parser.add_argument("--commits", type=int, default=20, help="commits (each rewrites a tenth of the files)")
    asyncio.run(main(parser.parse_args()))
