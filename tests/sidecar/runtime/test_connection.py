"""Hub connection: backoff table, retry classification, identify, heartbeat with pong timeout, reconnect.

Fault injection (a hub that stops answering pings, closes sockets, or is not there yet) uses a small local
websockets server that speaks the hub side of the protocol; the normal paths run against the real hub.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Iterator
from contextlib import aclosing

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus, InvalidURI
from websockets.http11 import Response

from shared.protocol import Identify, Ping, TaskAck, TaskComplete
from sidecar.runtime.connection import (
    HubLink,
    IdentifyRejected,
    backoff,
    connect_to_hub,
    is_retryable,
    run_session,
)
from sidecar.settings import LimitSettings

FAST = LimitSettings(
    heartbeat_interval_s=0.05,
    pong_timeout_s=1.0,
    connect_timeout_s=2,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    state_report_timeout_s=2,
)


def hello(agent_id: str = "agent-1", token: str = "tok") -> Identify:
    return Identify(type="identify", agent_id=agent_id, token=token, client_type="sidecar", sandbox_level="bwrap")


def no_delays() -> Iterator[float]:
    return itertools.repeat(0.0)


@pytest.mark.parametrize(
    ("rand", "expected"),
    [
        (0.0, [0.0, 1, 2, 4, 8, 16, 32, 60, 60, 60]),
        (1.0, [1.0, 0.7, 1.4, 2.8, 5.6, 11.2, 22.4, 42.0, 42.0, 42.0]),
        (0.5, [0.5, 0.85, 1.7, 3.4, 6.8, 13.6, 27.2, 51.0, 51.0, 51.0]),
    ],
)
def test_backoff_table(rand: float, expected: list[float]) -> None:
    """Random first delay, then doubling from 1 s, jittered down by up to 30 %, capped at 60 s."""
    delays = list(itertools.islice(backoff(1.0, 60.0, 2.0, 0.3, rand=lambda: rand), 10))
    assert delays == pytest.approx(expected)


def test_backoff_never_exceeds_cap_with_real_randomness() -> None:
    """With real jitter every delay stays within [0, cap] and late delays are at least 70 % of the cap."""
    delays = list(itertools.islice(backoff(1.0, 60.0), 50))
    assert all(0 <= d <= 60 for d in delays)
    assert all(d >= 42 for d in delays[10:])


def _status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers()))


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (ConnectionRefusedError(), True),
        (OSError("network unreachable"), True),
        (TimeoutError(), True),
        (EOFError(), True),
        (ConnectionClosedError(None, None), True),
        (_status(503), True),
        (_status(429), True),
        (_status(404), False),
        (_status(403), False),
        (InvalidURI("x", "bad"), False),
        (IdentifyRejected("invalid_token"), False),
        (IdentifyRejected("token_agent_mismatch"), False),
        (IdentifyRejected("unsupported_protocol_version"), False),
        (IdentifyRejected("already_identified"), True),
        (ValueError("bug"), False),
    ],
)
def test_is_retryable(exc: BaseException, retryable: bool) -> None:
    """Network trouble is retried; refused tokens, bad URLs, client errors and bugs are not."""
    assert is_retryable(exc) is retryable


class FakeHub:
    """The hub side of the protocol, with switches for misbehaviour."""

    def __init__(self, *, answer_pings: bool = True, close_after_identify: bool = False) -> None:
        self.answer_pings = answer_pings
        self.close_after_identify = close_after_identify
        self.connections = 0
        self.received: list[dict] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        identify = json.loads(await ws.recv())
        self.received.append(identify)
        await ws.send(json.dumps({"type": "identified", "agent_id": identify["agent_id"]}))
        if self.close_after_identify:
            await ws.close()
            return
        async for frame in ws:
            msg = json.loads(frame)
            self.received.append(msg)
            if msg["type"] == "ping" and self.answer_pings:
                await ws.send(json.dumps({"type": "pong", "timestamp": 1}))
            elif msg["type"] == "task_complete":
                await ws.send(json.dumps({"type": "task_ack", "task_id": msg["task_id"], "status": "complete"}))


async def start_fake(fake: FakeHub, port: int = 0):
    server = await serve(fake.handler, "127.0.0.1", port, compression=None)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"


async def test_identify_against_real_hub_and_heartbeat_gets_pongs(hub) -> None:
    """Against the real hub: identify succeeds and pings are answered, so the connection stays up."""
    token = await hub.mint_token("agent-1")
    async with aclosing(connect_to_hub(hub.ws_url, hello(token=token), FAST)) as conns:
        conn = await anext(conns)
        beat = asyncio.create_task(conn.heartbeat())
        serving = asyncio.create_task(conn.serve(_ignore))
        async with asyncio.timeout(10):  # several heartbeats, each answered
            while conn.frames_in < 3:
                assert not beat.done() and not serving.done(), "no pong timeout while the hub answers"
                await asyncio.sleep(0.02)
        assert not beat.done() and not serving.done(), "no pong timeout while the hub answers"
        beat.cancel()
        await conn.close()
        await serving
    agent = (await hub.http.get("/api/agents/agent-1")).json()
    assert agent["agent_id"] == "agent-1"


async def test_refused_token_is_fatal(hub) -> None:
    """A token the real hub does not know ends the loop with IdentifyRejected instead of retrying forever."""
    with pytest.raises(IdentifyRejected, match="invalid_token"):
        async with aclosing(connect_to_hub(hub.ws_url, hello(token="wrong"), FAST)) as conns:
            await anext(conns)


async def test_a_hub_of_another_protocol_version_is_fatal(hub) -> None:
    """A hub that does not speak the sidecar's protocol version ends the loop at once instead of retrying forever."""
    token = await hub.mint_token("agent-1")
    newer = hello(token=token).model_copy(update={"protocol_version": 2})
    with pytest.raises(IdentifyRejected, match="unsupported_protocol_version"):
        async with aclosing(connect_to_hub(hub.ws_url, newer, FAST)) as conns:
            await anext(conns)


async def test_compression_is_off(hub) -> None:
    """The client does not negotiate permessage-deflate (small frames: compression costs round trips)."""
    token = await hub.mint_token("agent-1")
    async with aclosing(connect_to_hub(hub.ws_url, hello(token=token), FAST)) as conns:
        conn = await anext(conns)
        assert not conn._ws.protocol.extensions
        await conn.close()


async def test_missing_pong_drops_and_reconnects() -> None:
    """A hub that stops answering pings is dropped after pong_timeout_s and connected to again."""
    fake = FakeHub(answer_pings=False)
    server, url = await start_fake(fake)
    async with server, aclosing(connect_to_hub(url, hello(), FAST, delays=no_delays)) as conns:
        first = await anext(conns)
        async with asyncio.timeout(5):
            await run_session(first, _ignore, _nothing)  # ends by itself: pong timeout aborts the socket
            await anext(conns)
        assert fake.connections == 2
        assert any(m["type"] == "ping" for m in fake.received)


async def test_reconnects_after_the_hub_closes() -> None:
    """When the hub closes the socket the loop yields a fresh identified connection."""
    fake = FakeHub(close_after_identify=True)
    server, url = await start_fake(fake)
    async with server, aclosing(connect_to_hub(url, hello(), FAST, delays=no_delays)) as conns:
        for _ in range(3):
            conn = await anext(conns)
            async with asyncio.timeout(5):
                await run_session(conn, _ignore, _nothing)
    assert fake.connections == 3
    assert all(m["type"] == "identify" for m in fake.received)


async def test_retries_until_the_hub_appears() -> None:
    """Connection refused is retried with the backoff delays until the hub starts listening."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeHub()
    attempts: list[float] = []
    started: list = []

    def delays() -> Iterator[float]:
        while True:
            attempts.append(0.01)
            if len(attempts) == 3 and not started:
                started.append(asyncio.ensure_future(serve(fake.handler, "127.0.0.1", port)))
            yield 0.01

    async with aclosing(connect_to_hub(f"ws://127.0.0.1:{port}/ws", hello(), FAST, delays=delays)) as conns:
        async with asyncio.timeout(10):
            conn = await anext(conns)
        await conn.close()
    assert len(attempts) >= 3
    server = await started[0]
    server.close()
    await server.wait_closed()


async def test_identify_frame_carries_sandbox_level_and_client_type() -> None:
    """The identify frame says client_type sidecar and the probed sandbox level."""
    fake = FakeHub()
    server, url = await start_fake(fake)
    async with server, aclosing(connect_to_hub(url, hello(), FAST)) as conns:
        conn = await anext(conns)
        await conn.close()
    first = fake.received[0]
    assert first["client_type"] == "sidecar" and first["sandbox_level"] == "bwrap"
    assert first["protocol_version"] == 1


async def test_link_sends_only_while_connected() -> None:
    """HubLink drops (and counts) messages while detached and delivers them when attached."""
    link = HubLink()
    assert await link.send(Ping(type="ping")) is False
    fake = FakeHub()
    server, url = await start_fake(fake)
    async with server, aclosing(connect_to_hub(url, hello(), FAST)) as conns:
        conn = await anext(conns)
        link.attach(conn)
        msg = TaskComplete(type="task_complete", task_id="t", generation=1, result={"status": "success"})
        acks: list = []

        async def collect(m) -> None:
            acks.append(m)
            await conn.close()

        assert await link.send(msg) is True
        async with asyncio.timeout(5):
            await conn.serve(collect)
        link.detach(conn)
    assert link.dropped == 1 and not link.connected
    assert isinstance(acks[0], TaskAck) and acks[0].status == "complete"


async def _ignore(message) -> None:
    pass


async def _nothing(conn) -> None:
    pass
