"""Real git repositories in tmp_path (a bare repository as the remote) and agents that answer ``repo_registry``."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.agent_sim import AgentSim

GIT_ENV = {
    **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


class Remote:
    """A bare repository with one commit on ``main``, and a work tree to push more from."""

    def __init__(self, root: Path, name: str) -> None:
        self.bare = root / f"{name}.git"
        self.work = root / f"{name}-work"
        self.bare.mkdir(parents=True)
        git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=root)
        git("clone", "-q", str(self.bare), str(self.work), cwd=root)
        git("checkout", "-q", "-b", "main", cwd=self.work)
        self.commit("README.md", "hello\n")

    @property
    def url(self) -> str:
        return str(self.bare)

    def commit(self, path: str, text: str) -> str:
        (self.work / path).write_text(text)
        git("add", path, cwd=self.work)
        git("commit", "-q", "-m", f"change {path}", cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return self.head()

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def make_remote(tmp_path: Path) -> Callable[[str], Remote]:
    return lambda name: Remote(tmp_path / "remotes", name)


async def answer_registry(
    sim: AgentSim, n: int = 1, reach: Callable[[str], bool] = lambda name: True
) -> dict[str, Any]:
    """Wait for the ``n``-th ``repo_registry`` the sim got and answer it with ``repo_reach``; returns it."""
    msg = await registry_count(sim, n)
    names = [r["name"] for r in msg["repos"]]
    await sim.send(
        {
            "type": "repo_reach",
            "reachable": [x for x in names if reach(x)],
            "unreachable": [{"name": x, "reason": "test"} for x in names if not reach(x)],
        }
    )
    return msg


async def registry_count(sim: AgentSim, n: int) -> dict[str, Any]:
    """Wait until the sim has received ``n`` ``repo_registry`` messages; returns the last."""
    async with asyncio.timeout(10):
        await sim.wait_for(lambda m: sum(1 for x in sim.inbox if x.get("type") == "repo_registry") >= n)
    return [m for m in sim.inbox if m.get("type") == "repo_registry"][-1]


AgentFactory = Callable[..., Awaitable[AgentSim]]
