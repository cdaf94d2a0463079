"""repo_registry → repo_reach through the sidecar's own wiring, and the credentials a probe hands to git."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection, serve

from shared.protocol import RegistryRepo
from sidecar.git.credentials import credential_env
from sidecar.git.reach import probe
from sidecar.main import run_sidecar
from sidecar.sandbox.probe import probe_sandbox
from sidecar.settings import GitSettings, load_settings
from tests.sidecar.git.gitrepo import make_remote

TOKEN = "ghp_REACHSECRET0123456789abcdefghij"


class RegistryHub:
    """Identifies the sidecar, sends one repo_registry and keeps the frames it gets back."""

    def __init__(self, repos: list[dict]) -> None:
        self.repos = repos
        self.frames: list[str] = []
        self.reach: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    async def handler(self, ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        self.frames.append(json.dumps(hello))
        await ws.send(json.dumps({"type": "identified", "agent_id": hello["agent_id"]}))
        await ws.send(json.dumps({"type": "repo_registry", "repos": self.repos}))
        async for frame in ws:
            self.frames.append(str(frame))
            message = json.loads(frame)
            if message["type"] == "repo_reach" and not self.reach.done():
                self.reach.set_result(message)


@asynccontextmanager
async def http_server(respond: bool) -> AsyncIterator[tuple[str, list[str]]]:
    """A git smart-HTTP remote that wants Basic auth and records the Authorization headers (or never answers)."""
    seen: list[str] = []
    done = asyncio.Event()
    handlers: list[asyncio.Task[None] | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        if not respond:
            await done.wait()
            writer.close()
            return
        auth = [
            line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("authorization:")
        ]
        seen.extend(auth)
        status = "404 Not Found" if auth else '401 Unauthorized\r\nWWW-Authenticate: Basic realm="git"'
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/team/calc.git", seen
    finally:
        done.set()
        server.close()
        await asyncio.gather(*(task for task in handlers if task is not None), return_exceptions=True)


async def test_repo_registry_is_answered_with_reachable_and_unreachable_repos(tmp_path: Path) -> None:
    """The sidecar answers repo_registry with repo_reach: a local remote is reachable, a missing one is not, with
    git's reason; the configured token appears in no frame."""
    remote, _ = make_remote(tmp_path)
    repos = [{"name": "calc", "url": str(remote)}, {"name": "gone", "url": str(tmp_path / "gone.git")}]
    hub = RegistryHub(repos)
    async with serve(hub.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        settings = load_settings(
            None,
            agent_id="reach-test",
            token="t",
            hub_url=f"ws://127.0.0.1:{port}/ws",
            state_dir=tmp_path / "s",
            workspace_root=tmp_path / "w",
            git={"https_token": TOKEN},
        )
        sandbox = await probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000))
        async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
            run = tg.create_task(run_sidecar(settings, sandbox))
            reach = await hub.reach
            run.cancel()
    assert reach["reachable"] == ["calc"]
    assert [u["name"] for u in reach["unreachable"]] == ["gone"] and "gone.git" in reach["unreachable"][0]["reason"]
    assert not [frame for frame in hub.frames if TOKEN in frame]


async def test_an_https_token_reaches_the_remote_through_askpass(tmp_path: Path) -> None:
    """A probe of an https remote that asks for credentials sends the configured user and token (Basic auth)."""
    settings = GitSettings(https_token=SecretStr(TOKEN))
    async with http_server(respond=True) as (url, seen):
        reason = await probe(RegistryRepo(name="calc", url=url), settings, credential_env(settings, tmp_path))
    assert seen and base64.b64decode(seen[-1].split()[1]).decode() == f"x-access-token:{TOKEN}"
    assert reason is not None and TOKEN not in reason  # the fake answers 404 after the credentials


async def test_without_credentials_git_never_prompts(tmp_path: Path) -> None:
    """Without a token the probe fails at once (no terminal prompt) and sends no Authorization header."""
    async with http_server(respond=True) as (url, seen):
        reason = await probe(RegistryRepo(name="calc", url=url), GitSettings(), {})
    assert reason is not None and seen == []


async def test_a_remote_that_never_answers_is_unreachable_after_the_timeout(tmp_path: Path) -> None:
    """A remote that accepts the connection and never answers is reported unreachable at reach_timeout_s."""
    settings = GitSettings(reach_timeout_s=0.5)
    async with http_server(respond=False) as (url, _):
        async with asyncio.timeout(10):
            reason = await probe(RegistryRepo(name="calc", url=url), settings, {})
    assert reason == "no answer within 0.5 s"
