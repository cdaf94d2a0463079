"""A simulated agent: speaks the wire protocol over a real WebSocket, for tests and benchmarks.

Behaviours on ``task_assign``: ``complete`` (accept, then complete at once), ``fail`` (accept, then fail),
``ignore`` (do nothing), ``delay`` (accept, complete after ``delay_s``), ``reject`` (send task_rejected).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import websockets
from websockets.asyncio.client import ClientConnection

from shared.protocol import PROTOCOL_VERSION

Behaviour = Literal["complete", "fail", "ignore", "delay", "reject"]


@dataclass
class Received:
    task_id: str
    generation: int
    received_ns: int
    message: dict[str, Any]


@dataclass
class AgentSim:
    ws_url: str
    agent_id: str
    token: str
    capabilities: list[str] = field(default_factory=list)
    behaviour: Behaviour = "complete"
    delay_s: float = 0.0
    result: dict[str, Any] = field(
        default_factory=lambda: {"status": "success", "outcome": "unverified", "output": "smoke-test-result"}
    )
    """The ``result`` of every task_complete (``shared.payloads.TaskResult``'s fields; no checks ran: unverified)."""
    usage: dict[str, Any] | None = None
    """Sent as the ``usage`` of every task_complete when set (``shared.payloads.Usage``'s fields)."""
    on_assign: Callable[[Received], None] | None = None
    reach_repos: bool = False
    """Answer every ``repo_registry`` with ``repo_reach`` naming all its repositories reachable (a sidecar that can
    fetch them all); off, the sim leaves the registry unanswered (as an older sidecar does)."""

    def __post_init__(self) -> None:
        self.ws: ClientConnection | None = None
        self.received: list[Received] = []
        self.acks: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.inbox: list[dict[str, Any]] = []
        self.completed_count = 0
        self.n_reports = 0
        self.n_acked_reports = 0
        self.identified = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._delayed: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def connect(self, identify: bool = True) -> AgentSim:
        self.ws = await websockets.connect(self.ws_url, compression=None, max_size=2**22)
        self._reader = asyncio.create_task(self._read(), name=f"sim-{self.agent_id}")
        if identify:
            await self.send(
                {
                    "type": "identify",
                    "agent_id": self.agent_id,
                    "token": self.token,
                    "name": f"smoke-{self.agent_id}",
                    "status": "idle",
                    "capabilities": self.capabilities,
                    "client_type": "smoke_test",
                }
            )
            await asyncio.wait_for(self.identified.wait(), 10)
        return self

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps({"protocol_version": PROTOCOL_VERSION, **message}))

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send(text)

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                msg = json.loads(frame)
                await self._on_message(msg)
                async with self._changed:
                    self.inbox.append(msg)
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "identified":
            self.identified.set()
        elif kind == "task_ack":
            self.acks.append(msg)
            if msg.get("status") == "complete":
                self.completed_count += 1
            if msg.get("status") != "accepted":
                self.n_acked_reports += 1
        elif kind == "error":
            self.errors.append(msg)
            if msg.get("task_id"):
                self.n_acked_reports += 1
        elif kind == "repo_registry" and self.reach_repos:
            names = [r.get("name") for r in msg.get("repos", []) if isinstance(r, dict)]
            await self.send({"type": "repo_reach", "reachable": names})
        elif kind == "task_assign":
            rec = Received(msg["task_id"], msg["generation"], time.perf_counter_ns(), msg)
            self.received.append(rec)
            if self.on_assign:
                self.on_assign(rec)
            await self._act(rec)

    async def _act(self, rec: Received) -> None:
        if self.behaviour == "ignore":
            return
        if self.behaviour == "reject":
            await self.send(
                {"type": "task_rejected", "task_id": rec.task_id, "generation": rec.generation, "reason": "busy"}
            )
            return
        await self.send({"type": "task_accepted", "task_id": rec.task_id, "generation": rec.generation})
        if self.behaviour == "delay":
            task = asyncio.create_task(self._finish_later(rec))
            self._delayed.add(task)
            task.add_done_callback(self._delayed.discard)
        else:
            await self.finish(rec)

    async def _finish_later(self, rec: Received) -> None:
        await asyncio.sleep(self.delay_s)
        try:
            await self.finish(rec)
        except websockets.ConnectionClosed:
            pass

    async def finish(self, rec: Received) -> None:
        self.n_reports += 1
        if self.behaviour == "fail":
            await self.send(
                {
                    "type": "task_failed",
                    "task_id": rec.task_id,
                    "generation": rec.generation,
                    "error": "smoke-test-failure",
                }
            )
        else:
            usage = {} if self.usage is None else {"usage": self.usage}
            await self.send(
                {
                    "type": "task_complete",
                    "task_id": rec.task_id,
                    "generation": rec.generation,
                    "result": self.result,
                    "tokens_used": 0,
                    **usage,
                }
            )

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10) -> dict[str, Any]:
        """Wait for (and return) the first received message matching ``predicate``."""
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                for msg in self.inbox:
                    if predicate(msg):
                        return msg
                if self.ws is None or self._reader is None or self._reader.done():
                    raise ConnectionError("socket closed while waiting")
                await self._changed.wait()

    async def settled(self, timeout_s: float = 10) -> None:
        """Wait until every result this agent reported has been answered by the hub."""
        async with asyncio.timeout(timeout_s), self._changed:
            while self.n_acked_reports < self.n_reports:
                if self._reader is None or self._reader.done():
                    return
                await self._changed.wait()

    async def kill_connection(self) -> None:
        """Drop the TCP connection abruptly, without a close frame."""
        for task in list(self._delayed):
            task.cancel()
        if self.ws is not None:
            self.ws.transport.abort()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._delayed):
            task.cancel()
        await asyncio.gather(*self._delayed, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
