"""What the goal tests share: the fake model servers answering the hub's decomposition and verification prompts,
a real git repository to decompose against, and waits on the backlog's own change notifications."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.goals.model import Goal
from shared.fakes.anthropic_server import FakeAnthropicServer
from shared.fakes.ollama_server import FakeOllamaServer
from shared.fakes.script import Script, ScriptedServer, Turn
from tests.conftest import SCALE, HubHandle

MODEL = "fake-coder:latest"
DOWN = "<http 500>"
"""A verify reply standing for the model failing (HTTP 500) on that call."""
REPO_FILES = {"README.md": "# demo\n", "src/app.py": "print('app')\n", "tests/test_app.py": "def test(): pass\n"}


def plan(*tasks: dict[str, Any]) -> str:
    return json.dumps({"tasks": list(tasks)})


def task(description: str, depends_on: list[int] | None = None, files: list[str] | None = None) -> dict[str, Any]:
    return {"description": description, "depends_on": depends_on or [], "files": files or [], "verification": ["ok"]}


def verdict(complete: bool, reason: str = "checked", gaps: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"complete": complete, "reason": reason, "gaps": gaps or []})


class GoalReplies:
    """Replies by purpose: decomposition turns by the conversation's position (a re-prompt gets the next one),
    verdicts in order of asking (the last one repeats)."""

    def __init__(self, decompose: list[str], verify: list[str] | None = None) -> None:
        self.decompose = Script(name="decompose", turns=[Turn(content=c) for c in decompose])
        self.verify = list(verify or [verdict(True, "the goal is met")])
        self.n_verify = 0

    def pick(self, server: ScriptedServer, marker_texts: list[str], n_assistant: int) -> Turn:
        if marker_texts[0].startswith("You verify"):
            reply = self.verify[min(self.n_verify, len(self.verify) - 1)]
            self.n_verify += 1
            return Turn(failure="http_500", failures=10**6) if reply == DOWN else Turn(content=reply)
        return self.decompose.turn(n_assistant)


class GoalOllama(FakeOllamaServer):
    def __init__(self, replies: GoalReplies) -> None:
        super().__init__(replies.decompose, model=MODEL)
        self.replies = replies

    def pick_turn(self, marker_texts: list[str], n_assistant: int, default: Script | None = None) -> Turn:
        return self.replies.pick(self, marker_texts, n_assistant)


class GoalAnthropic(FakeAnthropicServer):
    def __init__(self, replies: GoalReplies, api_key: str) -> None:
        super().__init__(replies.decompose, api_key=api_key)
        self.replies = replies

    def pick_turn(self, marker_texts: list[str], n_assistant: int) -> Turn:
        return self.replies.pick(self, marker_texts, n_assistant)


def closed_url() -> str:
    """The URL of a port nothing listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def git_repo(path: Path, files: dict[str, str] = REPO_FILES) -> Path:
    """A real repository with ``files`` committed on its default branch."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, timeout=30, capture_output=True)
    return path


async def wait_goal(handle: HubHandle, goal_id: str, until: Callable[[Goal], bool], timeout_s: float = 30) -> Goal:
    """Wait until the goal satisfies ``until``, woken by the backlog's change notifications (no polling)."""
    backlog = handle.hub.goals.backlog
    async with asyncio.timeout(timeout_s * SCALE), backlog.changed:
        while not until(goal := backlog.get(goal_id)):
            await backlog.changed.wait()
    return goal


async def wait_status(handle: HubHandle, goal_id: str, *statuses: str, timeout_s: float = 30) -> Goal:
    return await wait_goal(handle, goal_id, lambda g: str(g.status) in statuses, timeout_s)


async def submit_goal(handle: HubHandle, **body: Any) -> dict[str, Any]:
    """Submit a goal; a ``repo`` given as a path is registered first (under its folder's name) and named."""
    body.setdefault("description", "Add a util module and use it from the app.")
    if isinstance(body.get("repo"), str) and body["repo"].startswith("/"):
        name = Path(body["repo"]).name
        if (await handle.http.get(f"/api/repos/{name}")).status_code == 404:
            r = await handle.http.post("/api/repos", json={"name": name, "url": body["repo"]})
            assert r.status_code == 201, r.text
        body["repo"] = name
    r = await handle.http.post("/api/goals", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]
