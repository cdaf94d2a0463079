"""The sidecar's connection to the hub: connect, identify, heartbeat, reconnect.

``connect_to_hub`` yields one identified :class:`HubConnection` after another, sleeping between attempts by the
:func:`backoff` delays; :func:`is_retryable` alone decides whether a failure means "try again" or "stop". A
session runs the receive loop and the heartbeat side by side; a missing ``pong`` aborts the socket, which ends the
session, and the loop reconnects. :class:`HubLink` is how the rest of the sidecar sends: through whichever
connection is current, or not at all while there is none (durable results wait in the outbox instead).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidProxy, InvalidStatus, InvalidURI

from shared.protocol import (
    MAX_FRAME_BYTES,
    ErrorReply,
    HubMessage,
    Identified,
    Identify,
    Message,
    Ping,
    Pong,
    decode_hub,
    encode,
)
from sidecar.settings import LimitSettings

logger = logging.getLogger(__name__)

FATAL_IDENTIFY_ERRORS = frozenset(
    {"invalid_token", "token_agent_mismatch", "validation_failed", "unsupported_protocol_version"}
)
"""Refusals that retrying cannot change: a wrong token, a malformed identify, a hub that speaks another protocol
version (upgrade the sidecar or the hub)."""
RETRYABLE_HTTP_STATUSES = frozenset({408, 425, 429})

MessageHandler = Callable[[HubMessage], Awaitable[None]]
ConnectedHook = Callable[["HubConnection"], Awaitable[None]]


class IdentifyRejected(Exception):
    """The hub answered ``identify`` with an error (``invalid_token``, ``token_agent_mismatch``, ...)."""

    def __init__(self, error: str) -> None:
        super().__init__(f"hub refused identify: {error}")
        self.error = error


def backoff(
    initial_s: float = 1.0,
    max_s: float = 60.0,
    factor: float = 2.0,
    jitter: float = 0.3,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Reconnect delays: a random first delay, then geometric growth up to a cap, each shortened by some jitter.

    The random first delay spreads a fleet that lost the hub at the same instant; the jitter (a fraction of each
    delay, taken off so the cap stays a cap) keeps them spread.

    Args:
        initial_s: Upper bound of the first delay and base of the growth.
        max_s: No delay is longer than this.
        factor: Growth per attempt.
        jitter: Largest fraction cut from a delay.
        rand: Source of numbers in [0, 1); tests pass a constant.

    Yields:
        Delays in seconds, forever.
    """
    yield initial_s * rand()
    delay = initial_s
    while True:
        yield min(delay, max_s) * (1.0 - jitter * rand())
        delay = min(delay * factor, max_s)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failure to connect (or a lost connection) should be retried rather than end the sidecar.

    Network trouble, timeouts, closed sockets and server-side HTTP errors are retryable; a refused token, a bad
    URL or a client-side HTTP error (404: wrong path) are not, and retrying would only hide them.
    """
    if isinstance(exc, IdentifyRejected):
        return exc.error not in FATAL_IDENTIFY_ERRORS
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return status >= 500 or status in RETRYABLE_HTTP_STATUSES
    if isinstance(exc, InvalidURI | InvalidProxy):
        return False
    return isinstance(exc, OSError | TimeoutError | EOFError | ConnectionClosed | InvalidHandshake)


class HubConnection:
    """One identified socket to the hub."""

    def __init__(self, ws: ClientConnection, limits: LimitSettings) -> None:
        self._ws = ws
        self._limits = limits
        self._pong = asyncio.Event()
        self.frames_in = 0
        self.frames_out = 0

    def __repr__(self) -> str:
        return f"<HubConnection in={self.frames_in} out={self.frames_out} state={self._ws.state.name}>"

    async def send(self, message: Message) -> None:
        """Send one message; raises ``ConnectionClosed`` if the socket is gone."""
        await self._ws.send(encode(message))
        self.frames_out += 1

    async def serve(self, handler: MessageHandler) -> None:
        """Receive frames and pass each decoded message to ``handler`` until the socket closes."""
        try:
            async for frame in self._ws:
                self.frames_in += 1
                try:
                    message = decode_hub(frame)
                except ValueError as exc:
                    logger.warning("ignoring an undecodable frame from the hub: %s", str(exc)[:300])
                    continue
                if isinstance(message, Pong):
                    self._pong.set()
                else:
                    await handler(message)
        except ConnectionClosed as exc:
            logger.warning("hub connection lost: %s", exc)
        else:
            logger.info("hub connection closed: %s", self._ws.close_reason or self._ws.close_code)

    async def heartbeat(self) -> None:
        """Ping every ``heartbeat_interval_s``; without a pong in ``pong_timeout_s``, abort the socket."""
        while True:
            await asyncio.sleep(self._limits.heartbeat_interval_s)
            self._pong.clear()
            try:
                await self.send(Ping(type="ping"))
                async with asyncio.timeout(self._limits.pong_timeout_s):
                    await self._pong.wait()
            except ConnectionClosed:
                return
            except TimeoutError:
                logger.warning("no pong within %.1f s; dropping the hub connection", self._limits.pong_timeout_s)
                self.abort()
                return

    def abort(self) -> None:
        """Drop the TCP connection at once (no closing handshake); ``serve`` then returns."""
        self._ws.transport.abort()

    async def close(self) -> None:
        """Close the socket cleanly."""
        await self._ws.close()


class HubLink:
    """The current hub connection, if any. Everything that talks to the hub sends through it."""

    def __init__(self) -> None:
        self._conn: HubConnection | None = None
        self._up = asyncio.Event()
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<HubLink connected={self.connected} dropped={self.dropped}>"

    @property
    def connected(self) -> bool:
        """Whether a connection is attached."""
        return self._conn is not None

    def attach(self, conn: HubConnection) -> None:
        """Make ``conn`` the current connection."""
        self._conn = conn
        self._up.set()

    def detach(self, conn: HubConnection) -> None:
        """Forget ``conn`` if it is the current connection."""
        if self._conn is conn:
            self._conn = None
            self._up.clear()

    async def wait_connected(self) -> None:
        """Return once a connection is attached."""
        await self._up.wait()

    async def send(self, message: Message) -> bool:
        """Send ``message`` if connected; returns whether it went out (a lost message is counted, not raised)."""
        conn = self._conn
        if conn is None:
            self.dropped += 1
            return False
        try:
            await conn.send(message)
        except ConnectionClosed:
            self.dropped += 1
            return False
        return True


async def identify(ws: ClientConnection, hello: Identify, timeout_s: float) -> None:
    """Send ``identify`` and wait for ``identified``.

    Raises:
        IdentifyRejected: the hub answered with an error.
        TimeoutError: no answer in ``timeout_s``.
    """
    await ws.send(encode(hello))
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                reply = decode_hub(await ws.recv())
            except ValueError:
                continue
            if isinstance(reply, Identified):
                return
            if isinstance(reply, ErrorReply):
                raise IdentifyRejected(reply.error)


async def connect_to_hub(
    ws_url: str,
    hello: Identify,
    limits: LimitSettings,
    delays: Callable[[], Iterator[float]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncGenerator[HubConnection, None]:
    """Yield identified connections forever, reconnecting with backoff after each one ends or fails.

    Args:
        ws_url: The hub's agent socket, ``ws://host:port/ws``.
        hello: The ``identify`` message (it holds the token: never log it).
        limits: Timeouts and backoff parameters.
        delays: Factory of delay generators; the default is :func:`backoff` over ``limits``.
        ssl_context: For a ``wss://`` hub with its own CA (``hub_ca_file``); None trusts the system's CAs.

    Raises:
        Exception: the first failure that :func:`is_retryable` calls fatal.
    """
    new_delays = delays or (
        lambda: backoff(limits.backoff_initial_s, limits.backoff_max_s, jitter=limits.backoff_jitter)
    )
    pending = new_delays()
    while True:
        try:
            ws = await connect(
                ws_url,
                compression=None,  # small JSON frames: compression costs more than it saves
                ping_interval=None,  # liveness is the protocol's own ping/pong
                proxy=None,
                open_timeout=limits.connect_timeout_s,
                max_size=MAX_FRAME_BYTES,
                close_timeout=2,
                ssl=ssl_context if ssl_context is not None else ws_url.startswith("wss://") or None,
            )
        except Exception as exc:
            await _pause_or_raise(exc, pending, "connect")
            continue
        try:
            await identify(ws, hello, limits.connect_timeout_s)
        except Exception as exc:
            await ws.close()
            await _pause_or_raise(exc, pending, "identify")
            continue
        logger.info("identified to the hub at %s as %s", ws_url, hello.agent_id)
        pending = new_delays()
        conn = HubConnection(ws, limits)
        try:
            yield conn
        finally:
            await conn.close()
        await asyncio.sleep(next(pending))


async def _pause_or_raise(exc: Exception, delays: Iterator[float], step: str) -> None:
    if not is_retryable(exc):
        logger.error("hub %s failed for good: %s", step, exc)
        raise exc
    delay = next(delays)
    logger.warning("hub %s failed (%s: %s); retrying in %.1f s", step, type(exc).__name__, exc, delay)
    await asyncio.sleep(delay)


async def run_session(conn: HubConnection, handler: MessageHandler, on_connected: ConnectedHook) -> None:
    """Serve one connection: receive loop, heartbeat and the after-identify hook, until the socket closes."""
    async with asyncio.TaskGroup() as tg:
        beat = tg.create_task(conn.heartbeat(), name="heartbeat")
        hello = tg.create_task(_until_closed(on_connected(conn)), name="on-connected")
        await conn.serve(handler)
        beat.cancel()
        hello.cancel()


async def serve_hub(
    ws_url: str,
    hello: Identify,
    limits: LimitSettings,
    link: HubLink,
    handler: MessageHandler,
    on_connected: ConnectedHook,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Keep a connection to the hub for as long as this runs: the sidecar's connection loop."""
    async with aclosing(connect_to_hub(ws_url, hello, limits, ssl_context=ssl_context)) as connections:
        async for conn in connections:
            link.attach(conn)
            try:
                await run_session(conn, handler, on_connected)
            finally:
                link.detach(conn)


async def _until_closed(work: Awaitable[None]) -> None:
    try:
        await work
    except ConnectionClosed:
        pass
