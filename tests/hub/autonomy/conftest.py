"""A real hub with a manual clock for the autonomy tests, and helpers to drive and read its state machine."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.autonomy.loop import Autonomy
from hub.clock import ManualClock
from hub.server import HubServer
from hub.settings import HubSettings
from shared.agent_sim import AgentSim
from tests.conftest import SCALE, HubHandle

QUIET = {
    "autonomy_tick_s": 3600.0,  # only events and explicit ticks drive the machine
    "presence_ttl_s": 10.0**6,  # the manual clock jumps: keep the other sweeps out of the way
    "acceptance_timeout_s": 10.0**6,
    "stuck_after_s": 10.0**6,
    "stuck_working_after_s": 10.0**6,
}
WAIT_S = 20 * SCALE


def auto_of(handle: HubHandle) -> Autonomy:
    auto: Autonomy = handle.hub.autonomy
    return auto


def transitions(handle: HubHandle) -> list[tuple[str | None, str]]:
    return [(h["from"], h["to"]) for h in auto_of(handle).fsm.history]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def start(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Callable[..., Awaitable[HubHandle]]]:
    """Factory: a real hub on 127.0.0.1 port 0 driven by ``clock``; ``data_dir`` reuses a hub's data (a restart)."""
    handles: list[HubHandle] = []

    async def run(data_dir: Path | None = None, **overrides: Any) -> HubHandle:
        data_dir = data_dir or tmp_path / f"hub-{len(handles)}"
        settings = HubSettings(host="127.0.0.1", port=0, data_dir=data_dir, **{**QUIET, **overrides})
        server = HubServer(settings, clock)
        await server.start()
        handle = HubHandle(server, data_dir)
        handles.append(handle)
        return handle

    yield run
    for handle in handles:
        await stop(handle)


async def stop(handle: HubHandle) -> None:
    if not handle.http.is_closed:
        await handle.http.aclose()
        await handle.server.stop()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org",
            "HOME": str(repo),
            "PATH": "/usr/bin:/bin",
        },
    )
    return done.stdout


def make_repo(path: Path, files: dict[str, str]) -> Path:
    """A git repository at ``path`` with ``files`` committed on main."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    commit(path, files, "initial")
    return path


def commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


async def holder(handle: HubHandle) -> AgentSim:
    """A connected agent that takes tasks and never reports: work submitted stays runnable and in flight (with no
    agent it would be stranded, which the machine does not count as work)."""
    agent_id = f"holder-{uuid.uuid4().hex[:6]}"
    sim = AgentSim(handle.ws_url, agent_id, await handle.mint_token(agent_id), behaviour="ignore")
    return await sim.connect()
