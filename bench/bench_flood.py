"""Slow-reader and unidentified-socket flood against a real hub process (127.0.0.1 only, bounded in count and time).

For ``--seconds`` (60 by default), in waves: agents that identify and never read while the hub pushes them 300 KB
``task_assign`` frames (submitted and cancelled in a loop), dashboard pages that ask for big trajectory pages and never
read, and sockets that open ``/ws`` and never identify (reopened when the hub closes them). Meanwhile one healthy
agent completes tasks and its dispatch latency (submit -> ``task_assign`` received) is sampled. Prints hub RSS before,
at its peak and after, the sockets the hub dropped or closed (from its log), and the healthy agent's latency.

Run: ``python -m bench.bench_flood`` (``--seconds 20`` to shorten).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
from websockets.frames import Frame, Opcode

from shared.agent_sim import AgentSim
from shared.protocol import PROTOCOL_VERSION

ADMIN = "bench-flood-admin-token"
BLOB = "x" * 300_000


class HubProcess:
    """``python -m hub`` on port 0 with INFO logs, whose drop and timeout lines are counted as they arrive."""

    def __init__(self, data_dir: Path) -> None:
        # The 300 KB tasks pushed at slow agents end cancelled: pruned at once, so "after" shows what sockets left.
        env = {
            **os.environ,
            "AGENTCOM_ADMIN_TOKEN": ADMIN,
            "AGENTCOM_RETENTION_CANCELLED_MAX": "0",
            "AGENTCOM_RETENTION_INTERVAL_S": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "--port", "0", "--data-dir", str(data_dir), "--log-level", "INFO"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if "url=" not in line:
            raise RuntimeError(f"hub did not start: {line!r}")
        self.url = line.split("url=", 1)[1].strip()
        self.counts = {"send buffer full": 0, "send timeout": 0, "no identify": 0}
        self._stderr = threading.Thread(target=self._count, args=(self.proc.stderr,), daemon=True)
        self._stderr.start()

    def _count(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            if "dropping socket" in line:
                for reason in ("send buffer full", "send timeout"):
                    self.counts[reason] += reason in line
            elif "no identify within" in line:
                self.counts["no identify"] += 1

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def raw_ws(url: str, path: str) -> socket.socket:
    """A WebSocket over a plain socket with a 4 KiB receive buffer; the 101 answer is read, nothing after it."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (parts.hostname, parts.port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        byte = await loop.sock_recv(sock, 1)
        if not byte:
            raise ConnectionError("closed during the handshake")
        answer += byte
    return sock


async def send_json(sock: socket.socket, message: dict) -> None:
    frame = Frame(Opcode.TEXT, json.dumps(message).encode()).serialize(mask=True, extensions=[])
    await asyncio.get_running_loop().sock_sendall(sock, frame)


class Flood:
    def __init__(self, hub: HubProcess, seconds: float, slow_agents: int, slow_pages: int, unidentified: int) -> None:
        self.hub = hub
        self.http = httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        self.ws_url = hub.url.replace("http://", "ws://") + "/ws"
        self.seconds = seconds
        self.n_slow_agents = slow_agents
        self.n_slow_pages = slow_pages
        self.n_unidentified = unidentified
        self.sockets: list[socket.socket] = []
        self.n_opened = {"slow agents": 0, "slow pages": 0, "unidentified": 0}
        self.latencies_ms: dict[str, list[float]] = {"before": [], "during": []}
        self.peak_mb = 0.0
        self.n_big = 0

    async def token(self, agent_id: str, role: str = "agent") -> str:
        r = await self.http.post("/admin/tokens", json={"agent_id": agent_id, "role": role})
        r.raise_for_status()
        return r.json()["token"]

    async def submit(self, **body: object) -> str:
        r = await self.http.post("/api/tasks", json={"description": "flood", **body})
        r.raise_for_status()
        return r.json()["task_id"]

    async def healthy(self, sim: AgentSim, phase: str, until: float) -> None:
        """One task at a time to the healthy agent: submit -> task_assign received."""
        while time.monotonic() < until:
            seen = len(sim.received)
            start = time.perf_counter_ns()
            await self.submit(assign_to=sim.agent_id)
            await sim.wait_for(lambda m, n=seen: len(sim.received) > n, timeout_s=60)
            self.latencies_ms[phase].append((sim.received[seen].received_ns - start) / 1e6)
            await asyncio.sleep(0.05)

    async def slow_agent(self, n: int, until: float) -> None:
        agent_id = f"slow-{n}"
        sock = await raw_ws(self.hub.url, "/ws")
        self.sockets.append(sock)
        self.n_opened["slow agents"] += 1
        await send_json(
            sock,
            {
                "protocol_version": PROTOCOL_VERSION,
                "type": "identify",
                "agent_id": agent_id,
                "token": await self.token(agent_id),
            },
        )
        while time.monotonic() < until:  # big frames it never reads: assigned, then cancelled (and pushed again)
            tid = await self.submit(assign_to=agent_id, metadata={"blob": BLOB}, max_retries=1)
            self.n_big += 1
            await asyncio.sleep(0.5)
            r = await self.http.post(f"/api/tasks/{tid}/cancel")
            if r.json().get("previous_status") == "queued":
                return  # never handed out: the hub has dropped this agent

    async def slow_page(self, task_id: str, token: str, until: float) -> None:
        sock = await raw_ws(self.hub.url, f"/ws/dashboard?token={token}")
        self.sockets.append(sock)
        self.n_opened["slow pages"] += 1
        try:
            while time.monotonic() < until:
                await send_json(sock, {"type": "subscribe_task", "task_id": task_id})
                await asyncio.sleep(0.2)
        except OSError:
            pass  # dropped by the hub

    async def unidentified(self, until: float) -> None:
        """Keep a socket open that never identifies; when the hub closes it, open another."""
        loop = asyncio.get_running_loop()
        while time.monotonic() < until:
            sock = await raw_ws(self.hub.url, "/ws")
            self.n_opened["unidentified"] += 1
            try:
                async with asyncio.timeout(max(0.1, until - time.monotonic())):
                    while await loop.sock_recv(sock, 4096):
                        pass
            except (TimeoutError, OSError):
                pass
            sock.close()

    async def sample_rss(self, until: float) -> None:
        while time.monotonic() < until:
            self.peak_mb = max(self.peak_mb, self.hub.rss_mb())
            await asyncio.sleep(0.25)

    async def big_trajectory(self) -> str:
        sim = await AgentSim(self.ws_url, "chatty", await self.token("chatty"), behaviour="ignore").connect()
        tid = await self.submit(assign_to="chatty")
        rec = await sim.wait_for(lambda m: m.get("type") == "task_assign")
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": rec["generation"]})
        for n in range(40):
            event = {"event_type": "tool_call", **{f"k{i}": f"{n}-" + "y" * 990 for i in range(50)}}
            await sim.send(
                {"type": "task_progress", "task_id": tid, "generation": rec["generation"], "execution_event": event}
            )
        await sim.send({"type": "ping"})
        await sim.wait_for(lambda m: m.get("type") == "pong")
        return tid

    async def run(self) -> dict[str, object]:
        sim = await AgentSim(self.ws_url, "healthy", await self.token("healthy")).connect()
        chatty_task = await self.big_trajectory()
        viewer = await self.token("screen", role="viewer")
        await self.healthy(sim, "before", time.monotonic() + 3)
        rss_before = self.hub.rss_mb()
        start = time.monotonic()
        until = start + self.seconds
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.sample_rss(until))
            tg.create_task(self.healthy(sim, "during", until))
            for _ in range(self.n_unidentified):
                tg.create_task(self.unidentified(until))
            waves = max(1, int(self.seconds // 20))
            for wave in range(waves):  # a new wave every 20 s: the hub must drop the last one's sockets
                wave_at = start + wave * self.seconds / waves
                await asyncio.sleep(max(0.0, wave_at - time.monotonic()))
                for n in range(self.n_slow_agents):
                    tg.create_task(self.slow_agent(wave * 1000 + n, until))
                for _ in range(self.n_slow_pages):
                    tg.create_task(self.slow_page(chatty_task, viewer, until))
        for sock in self.sockets:
            sock.close()
        await sim.close()
        await self.http.aclose()
        await asyncio.sleep(5)  # let the hub let go of what it was still holding
        return {"rss_before": rss_before, "rss_peak": max(self.peak_mb, rss_before), "rss_after": self.hub.rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="flood duration (default 60)")
    parser.add_argument("--slow-agents", type=int, default=4, help="non-reading agents per wave (default 4)")
    parser.add_argument("--slow-pages", type=int, default=8, help="non-reading dashboard pages per wave (default 8)")
    parser.add_argument("--unidentified", type=int, default=200, help="sockets kept open unidentified (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentcom-flood-") as tmp:
        hub = HubProcess(Path(tmp))
        try:
            flood = Flood(hub, args.seconds, args.slow_agents, args.slow_pages, args.unidentified)
            rss = asyncio.run(flood.run())
        finally:
            hub.stop()
    before, during = flood.latencies_ms["before"], flood.latencies_ms["during"]
    rows = [
        ("flood", f"{args.seconds:.0f} s"),
        (
            "hub RSS before / peak / after (MiB)",
            f"{rss['rss_before']:.0f} / {rss['rss_peak']:.0f} / {rss['rss_after']:.0f}",
        ),
        ("sockets opened (slow agents, slow pages, unidentified)", ", ".join(str(v) for v in flood.n_opened.values())),
        (
            "dropped: send buffer full / send timeout",
            f"{hub.counts['send buffer full']} / {hub.counts['send timeout']}",
        ),
        (
            "300 KB tasks pushed (cancelled, then pruned by retention)",
            f"{flood.n_big} (~{flood.n_big * len(BLOB) / 2**20:.0f} MiB of metadata)",
        ),
        ("closed: no identify in time", str(hub.counts["no identify"])),
        ("healthy dispatch p50 / max before (ms)", f"{statistics.median(before):.1f} / {max(before):.1f}"),
        (
            "healthy dispatch p50 / max during (ms)",
            f"{statistics.median(during):.1f} / {max(during):.1f}  ({len(during)} tasks)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
