"""The sidecar process wiring: restart_sidecar and SIGTERM end it with the right exit code after a goodbye."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

from sidecar.main import EXIT_RESTART, run_sidecar
from sidecar.sandbox.probe import probe_sandbox
from sidecar.settings import load_settings


class GoodbyeHub:
    """Identifies the sidecar, optionally tells it to restart, and records what it says."""

    def __init__(self, send_restart: bool) -> None:
        self.send_restart = send_restart
        self.received: list[dict] = []
        self.identified = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "identified", "agent_id": hello["agent_id"]}))
        self.identified.set()
        if self.send_restart:
            await ws.send(json.dumps({"type": "restart_sidecar", "reason": "upgrade"}))
        async for frame in ws:
            self.received.append(json.loads(frame))


async def run_against(hub: GoodbyeHub, tmp_path: Path, poke=None) -> int:
    async with serve(hub.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        settings = load_settings(
            None,
            agent_id="main-test",
            token="t",
            hub_url=f"ws://127.0.0.1:{port}/ws",
            state_dir=tmp_path / "s",
            workspace_root=tmp_path / "w",
        )
        sandbox = await probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000))
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(run_sidecar(settings, sandbox))
            if poke is not None:
                await hub.identified.wait()
                poke()
        return run.result()


async def test_restart_sidecar_says_goodbye_and_exits_for_a_restart(tmp_path: Path) -> None:
    """restart_sidecar from the hub: agent_restarting is sent and the process exits with EXIT_RESTART."""
    hub = GoodbyeHub(send_restart=True)
    async with asyncio.timeout(20):
        code = await run_against(hub, tmp_path)
    assert code == EXIT_RESTART
    assert {"type": "agent_restarting", "reason": "restart_sidecar: upgrade", "protocol_version": 1} in hub.received


async def test_sigterm_says_goodbye_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM: agent_restarting is sent and run_sidecar returns 0."""
    hub = GoodbyeHub(send_restart=False)
    async with asyncio.timeout(20):
        code = await run_against(hub, tmp_path, poke=lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert code == 0
    assert any(m["type"] == "agent_restarting" and m["reason"] == "sigterm" for m in hub.received)
