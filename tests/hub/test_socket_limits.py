"""Socket stalls and exhaustion: peers that never read, never identify, trickle headers or open too many sockets,
and agents that vanish without a close frame. Real hub on port 0, raw TCP and WebSocket frames."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import websockets
from websockets.frames import Frame, Opcode

from hub.connection import Connection
from hub.dashboard_socket import dashboard_for
from shared.agent_sim import AgentSim
from shared.protocol import PROTOCOL_VERSION
from tests.conftest import SCALE, HubHandle, wait_tasks

BLOB = "x" * 600_000
"""Metadata that makes every ``task_assign`` about 600 KB, so a few of them fill any socket buffer."""


async def wait_until(handle: HubHandle, predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    """Wait until ``predicate`` holds, re-checking on every event the hub publishes (no polling)."""
    with handle.hub.bus.subscribe() as events:
        async with asyncio.timeout(timeout_s * SCALE):
            while not predicate():
                await events.get()


class RawPeer:
    """A client over a plain TCP socket with a 4 KiB receive buffer that sends and never reads until told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, handle: HubHandle, head: bytes | None = None) -> RawPeer:
        loop = asyncio.get_running_loop()
        url = urlsplit(handle.url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, (url.hostname, url.port))
        peer = cls(sock)
        if head is not None:
            await loop.sock_sendall(sock, head)
        return peer

    @classmethod
    async def websocket(cls, handle: HubHandle, path: str) -> RawPeer:
        """Open a WebSocket: read the 101 answer (byte by byte, so nothing after it), then never read again."""
        key = base64.b64encode(os.urandom(16)).decode()
        head = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        peer = await cls.open(handle, head.encode())
        answer = b""
        async with asyncio.timeout(10 * SCALE):
            while not answer.endswith(b"\r\n\r\n"):
                byte = await asyncio.get_running_loop().sock_recv(peer.sock, 1)
                assert byte, answer
                answer += byte
        assert answer.startswith(b"HTTP/1.1 101 "), answer
        return peer

    async def send_json(self, message: dict[str, Any]) -> None:
        frame = Frame(Opcode.TEXT, json.dumps(message).encode()).serialize(mask=True, extensions=[])
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    async def read_to_end(self, timeout_s: float = 15) -> bytes:
        """Everything until the hub closes (EOF) or resets the connection."""
        loop = asyncio.get_running_loop()
        data = bytearray()
        async with asyncio.timeout(timeout_s * SCALE):
            while True:
                try:
                    chunk = await loop.sock_recv(self.sock, 65536)
                except ConnectionResetError:
                    return bytes(data)
                if not chunk:
                    return bytes(data)
                data += chunk

    def close(self) -> None:
        self.sock.close()


async def raw_agent(handle: HubHandle, agent_id: str) -> RawPeer:
    """An agent that identifies over a raw socket and never reads a byte of what the hub sends."""
    token = await handle.mint_token(agent_id)
    peer = await RawPeer.websocket(handle, "/ws")
    await peer.send_json(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": "identify",
            "agent_id": agent_id,
            "token": token,
            "capabilities": [],
        }
    )
    await wait_until(handle, lambda: handle.hub.agents.get(agent_id) is not None)
    return peer


def connection_of(handle: HubHandle, agent_id: str) -> Connection:
    agent = handle.hub.agents.get(agent_id)
    assert agent is not None and isinstance(agent.sender, Connection)
    return agent.sender


async def push_big_assign(handle: HubHandle, agent_id: str) -> str:
    """Hand ``agent_id`` a 600 KB task_assign, then cancel it (a task_cancelled follows); returns the task id."""
    tid = await handle.submit(description="big", assign_to=agent_id, metadata={"blob": BLOB}, max_retries=1)
    task = handle.hub.queue.tasks[tid]
    await wait_until(handle, lambda: task.status != "queued" or handle.hub.agents.get(agent_id) is None)
    r = await handle.http.post(f"/api/tasks/{tid}/cancel")  # reaches the stalled agent: must not wait on it
    assert r.status_code == 200, r.text
    return tid


async def stall(handle: HubHandle, agent_id: str) -> Connection:
    """Push big frames at a non-reading agent until its writer is stuck (a whole frame still queued after a cycle)."""
    conn = connection_of(handle, agent_id)
    for _ in range(30):
        await push_big_assign(handle, agent_id)
        if conn.queued_bytes >= len(BLOB):
            return conn
    raise AssertionError("the agent's socket never filled up")


async def connect_sim(handle: HubHandle, agent_id: str, token: str | None = None, **kwargs: Any) -> AgentSim:
    return await AgentSim(handle.ws_url, agent_id, token or await handle.mint_token(agent_id), **kwargs).connect()


# --- a peer that never reads --------------------------------------------------------------------------------------


async def test_non_reading_agent_never_delays_others_and_is_dropped_over_its_budget(make_hub):
    """An agent that stops reading holds up no one (deliveries, cancels, sweeps) and is dropped past its byte budget."""
    hub = await make_hub(
        send_buffer_bytes=2 * 1024 * 1024, send_timeout_s=60, acceptance_timeout_s=1, sweep_interval_s=0.05
    )
    slow = await raw_agent(hub, "slow")
    conn = await stall(hub, "slow")

    healthy = await connect_sim(hub, "healthy")
    deaf = await connect_sim(hub, "deaf", behaviour="ignore")
    tids = [await hub.submit(description=f"work {n}", assign_to="healthy") for n in range(3)]
    probe = await hub.submit(description="never accepted", assign_to="deaf", max_retries=5)
    await wait_tasks(hub, tids, {"completed"}, timeout_s=10)
    await wait_until(hub, lambda: hub.hub.queue.tasks[probe].retry_count >= 1, 10)
    assert healthy.completed_count == 3
    assert hub.hub.agents.get("slow") is not None and not conn.closing  # all of that while it was stuck

    for _ in range(10):
        if hub.hub.agents.get("slow") is None:
            break
        await push_big_assign(hub, "slow")
    await wait_until(hub, lambda: hub.hub.agents.get("slow") is None, 10)
    assert conn.dropped == "send buffer full"
    assert hub.hub.fleet.socket_counters.n_dropped_full == 1
    await slow.read_to_end()  # the hub let go of the TCP connection
    slow.close()
    for sim in (healthy, deaf):
        await sim.close()


async def test_agent_whose_writes_stall_is_dropped_at_the_send_deadline(make_hub):
    """A write the peer does not take within send_timeout_s drops the socket, and its task is reclaimed as usual."""
    hub = await make_hub(
        send_timeout_s=0.5, send_buffer_bytes=64 * 1024 * 1024, reconnect_grace_s=0, sweep_interval_s=0.05
    )
    slow = await raw_agent(hub, "stalled")
    conn = connection_of(hub, "stalled")
    for _ in range(30):
        if hub.hub.agents.get("stalled") is None:
            break
        await push_big_assign(hub, "stalled")
    await wait_until(hub, lambda: hub.hub.agents.get("stalled") is None, 10)
    assert conn.dropped == "send timeout" and hub.hub.fleet.socket_counters.n_dropped_slow == 1
    await slow.read_to_end()
    slow.close()


async def test_dashboard_viewer_that_never_reads_is_dropped_and_fanout_continues(make_hub):
    """A page that asks for big replies and never reads is dropped; other pages keep getting their event batches."""
    hub = await make_hub(send_timeout_s=1, dashboard_outbox_bytes=32 * 1024 * 1024, subscribe_page_bytes=256 * 1024)
    tid = await big_trajectory(hub, "writer", 20)
    viewer = await hub.mint_token("screen", role="viewer")
    dash = dashboard_for(hub.hub)
    async with websockets.connect(hub.ws_url + f"/dashboard?token={viewer}", max_size=2**24) as page:
        await recv(page, "snapshot")
        (healthy_page,) = dash.clients
        slow = await RawPeer.websocket(hub, f"/ws/dashboard?token={viewer}")
        for _ in range(60):  # about 15 MB of replies asked for; none read
            await slow.send_json({"type": "subscribe_task", "task_id": tid})
        (slow_page,) = dash.clients - {healthy_page}
        await asyncio.wait_for(slow_page.conn.closed.wait(), 20 * SCALE)
        assert slow_page.conn.dropped == "send timeout" and hub.hub.fleet.socket_counters.n_dropped_slow == 1
        await slow.read_to_end()  # the hub let go of the TCP connection
        sim = await connect_sim(hub, "after")
        done = await hub.submit(description="after the drop", assign_to="after")
        while True:
            batch = await recv(page, "events")
            if any(e["event"] == "task_completed" and e["task_id"] == done for e in batch["data"]):
                break
        await sim.close()
    slow.close()


async def recv(ws: Any, kind: str, timeout_s: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s * SCALE):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == kind:
                return msg


async def big_trajectory(hub: HubHandle, agent_id: str, n_events: int) -> str:
    """A task whose stored trajectory holds ``n_events`` events of about 50 KB each (as the page shows them)."""
    sim = await connect_sim(hub, agent_id, behaviour="ignore")
    tid = await hub.submit(description="chatty", assign_to=agent_id)
    rec = await sim.wait_for(lambda m: m.get("type") == "task_assign")
    await sim.send({"type": "task_accepted", "task_id": tid, "generation": rec["generation"]})
    for n in range(n_events):
        event = {"event_type": "tool_call", **{f"k{i}": f"{n}-" + "y" * 990 for i in range(50)}}
        await sim.send(
            {"type": "task_progress", "task_id": tid, "generation": rec["generation"], "execution_event": event}
        )
    await wait_until(hub, lambda: hub.hub.trajectory._next_seq.get(tid, 1) > n_events)
    await sim.close()
    return tid


async def test_subscribe_task_is_paged_and_byte_bounded(make_hub):
    """subscribe_task answers one page (events after after_seq, within the byte bound) and where the next starts."""
    page_bytes = 128 * 1024
    hub = await make_hub(subscribe_page_bytes=page_bytes, subscribe_page_events=1000)
    tid = await big_trajectory(hub, "chatty", 12)
    viewer = await hub.mint_token("reader", role="viewer")
    seen: list[int] = []
    async with websockets.connect(hub.ws_url + f"/dashboard?token={viewer}", max_size=2**24) as page:
        await recv(page, "snapshot")
        after = 0
        for _ in range(12):
            await page.send(json.dumps({"type": "subscribe_task", "task_id": tid, "after_seq": after}))
            detail = (await recv(page, "task_detail"))["data"]  # event batches may come in between
            timeline = json.dumps(detail["timeline"], separators=(",", ":"))
            assert len(timeline) <= page_bytes and detail["after_seq"] == after
            seen += [e["seq"] for e in detail["timeline"]]
            after = detail["next_after_seq"]
            if not detail["truncated"]:
                break
        assert seen == list(range(1, 13))  # every event once, in order, over several pages
        for bad in (-1, "3", 2**60, 1.5, True):
            await page.send(json.dumps({"type": "subscribe_task", "task_id": tid, "after_seq": bad}))
            assert (await recv(page, "error"))["error"] == "invalid_after_seq"


# --- sockets that never identify, trickle headers or pile up ------------------------------------------------------


async def test_agent_socket_that_never_identifies_is_closed(make_hub):
    """A /ws connection with no identify within identify_timeout_s is closed with 4408 "identify timeout"."""
    hub = await make_hub(identify_timeout_s=0.3)
    async with websockets.connect(hub.ws_url) as ws:
        await ws.send(json.dumps({"protocol_version": PROTOCOL_VERSION, "type": "ping"}))  # frames do not extend it
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10 * SCALE):
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4408, "identify timeout")
    assert hub.hub.fleet.socket_counters.n_identify_timeouts == 1


async def test_request_head_that_never_completes_gets_408(make_hub):
    """A request whose headers are not complete within header_timeout_s (or never start) is answered 408 and closed."""
    hub = await make_hub(header_timeout_s=0.3)
    trickle = await RawPeer.open(hub, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    silent = await RawPeer.open(hub)
    for peer in (trickle, silent):
        answer = await peer.read_to_end()
        assert answer.startswith(b"HTTP/1.1 408 ") and answer.endswith(b'{"error": "header_timeout"}')
        peer.close()
    assert (await hub.http.get("/health")).status_code == 200


async def test_oversized_request_head_gets_431(make_hub):
    """Headers beyond max_header_bytes are answered 431 before they are held, and the connection is closed."""
    hub = await make_hub(max_header_bytes=16 * 1024)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    peer = await RawPeer.open(hub, head)
    answer = await peer.read_to_end()
    assert answer.startswith(b"HTTP/1.1 431 ") and b'"headers_too_large"' in answer
    peer.close()
    assert (await hub.http.get("/health", headers={"X-Fine": "a" * 8000})).status_code == 200


async def test_connections_past_the_limit_are_refused_with_503(make_hub):
    """Past max_connections a new TCP connection is answered 503 and closed; one is accepted again once some close."""
    hub = await make_hub(max_connections=4)
    await hub.http.get("/health")  # the test client's own keep-alive connection counts too
    peers = [await RawPeer.open(hub) for _ in range(4)]
    answers = [await peer.read_to_end() for peer in peers[3:]]
    assert answers[0].startswith(b"HTTP/1.1 503 ") and b'"too_many_connections"' in answers[0]
    for peer in peers[:3]:
        peer.sock.shutdown(socket.SHUT_WR)
        assert await peer.read_to_end() == b""  # the hub saw the end of the stream and let the socket go
    for peer in peers:
        peer.close()
    assert (await hub.http.get("/health")).status_code == 200


# --- the reconnect bug: stuck tasks never wait on a socket --------------------------------------------------------


async def test_agent_lost_without_close_frame_twice_reaches_dead_letter(make_hub):
    """Accept, lose TCP without a close frame, reconnect without a report: reclaimed as an attempt; twice -> dead."""
    hub = await make_hub(state_report_timeout_s=0.5, reconnect_grace_s=30, sweep_interval_s=0.05)
    token = await hub.mint_token("amnesiac")
    tid = await hub.submit(description="forgotten", max_retries=2)
    sim = await connect_sim(hub, "amnesiac", token, behaviour="ignore")
    sims = [sim]
    for attempt in (1, 2):
        rec = await sim.wait_for(lambda m: m.get("type") == "task_assign" and m.get("task_id") == tid)
        await sim.send({"type": "task_accepted", "task_id": tid, "generation": rec["generation"]})
        await sim.wait_for(lambda m: m.get("type") == "task_ack" and m.get("status") == "accepted")
        await sim.kill_connection()
        sim = await connect_sim(hub, "amnesiac", token, behaviour="ignore")  # says nothing of the task
        sims.append(sim)
        await wait_until(hub, lambda n=attempt: hub.hub.queue.tasks[tid].retry_count == n, 10)
    task = await hub.task(tid)
    assert (task["status"], task["dead_letter_reason"], task["retry_count"]) == ("dead_letter", "agent_lost", 2)
    for sim in sims:
        await sim.close()


async def test_reconnect_replacing_a_stalled_socket_never_waits_on_it(make_hub):
    """An agent reconnecting while its old socket is stuck (peer not reading) is identified at once, and the task
    the old socket held is reclaimed on the state-report timeout."""
    hub = await make_hub(send_timeout_s=60, state_report_timeout_s=0.5, close_timeout_s=0.5, sweep_interval_s=0.05)
    old = await raw_agent(hub, "phoenix")
    old_conn = await stall(hub, "phoenix")
    tid = await hub.submit(description="held", assign_to="phoenix", max_retries=3)
    task = hub.hub.queue.tasks[tid]
    await wait_until(hub, lambda: task.status == "assigned")
    await old.send_json(
        {"protocol_version": PROTOCOL_VERSION, "type": "task_accepted", "task_id": tid, "generation": task.generation}
    )
    await wait_until(hub, lambda: task.status == "working")

    token = await hub.mint_token("phoenix")
    new = await connect_sim(hub, "phoenix", token, behaviour="ignore")  # identify answers within 10 s
    await wait_until(hub, lambda: task.retry_count == 1, 10)
    assert [h for h in task.history if h["event"] == "retried"][-1]["details"]["reason"] == "agent_lost"
    await asyncio.wait_for(old_conn.closed.wait(), 10 * SCALE)  # the old socket is let go, bounded
    await old.read_to_end()
    old.close()
    await new.close()
