"""Serve the hub with uvicorn in the running event loop, and report the bound URL.

Starting takes the data dir's lock, binds the port and opens the hub (store, tokens, tasks) before uvicorn runs, so
every expected failure is an exception raised by :meth:`HubServer.start` with nothing left behind: no lock, no
listening socket, no open database or WAL sync helper, no file the start created.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

import uvicorn

from hub import server_protocols
from hub.app import create_app
from hub.clock import Clock
from hub.data_lock import LOCK_NAME, DataDirError, DataLock
from hub.hub import Hub
from hub.settings import HubSettings
from hub.store import StoreError

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """The hub could not start; the message names the cause and the fix (shown as is, without a traceback)."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it), or StartupError naming the cause."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}). Pass --host (or AGENTCOM_HOST) "
            f"naming an address of this machine, e.g. 127.0.0.1."
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use by another process. Stop that process, or "
                f"start the hub with another --port (or AGENTCOM_PORT; 0 picks a free one)."
            ) from None
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}). Pass another --host or --port "
            f"(ports below 1024 need privileges)."
        ) from None
    return sock


class HubServer:
    """One hub: ``await start()`` returns its URL once it accepts connections; ``await stop()`` shuts it down."""

    def __init__(self, settings: HubSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, clock)
        self.hub: Hub = self.app.state.hub
        config = uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.port,
            ws_per_message_deflate=False,
            ws_max_size=settings.max_frame_bytes,
            ws_ping_interval=settings.ws_ping_interval_s,
            ws_ping_timeout=settings.ws_ping_interval_s,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            # httptools and websockets-sansio, with header, connection and close bounds (hub/server_protocols.py).
            **server_protocols.uvicorn_options(settings),
            timeout_keep_alive=settings.keep_alive_timeout_s,
            backlog=min(2048, settings.max_connections),
            ssl_certfile=settings.tls_certfile,
            ssl_keyfile=settings.tls_keyfile,
        )
        self.server = uvicorn.Server(config)
        self.hub.on_fatal = self._fatal
        self._task: asyncio.Task[None] | None = None
        self._lock: DataLock | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    def _fatal(self) -> None:
        self.server.should_exit = True

    async def start(self) -> str:
        """Lock the data dir, bind the port, open the hub and serve; return the URL once it accepts connections.

        Any failure (or cancellation) undoes all of it first; the expected causes raise StartupError."""
        try:
            self._lock = DataLock.acquire(self.settings.data_dir)
            self._sock = bind(self.settings.host, self.settings.port)
            host, port = self._sock.getsockname()[:2]
            scheme = "https" if self.settings.tls_certfile else "http"
            local = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)  # a wildcard bind: this machine's own
            self.url = f"{scheme}://{local}:{port}"
            self._lock.record(self.url)
            await self.hub.open()
            self._task = asyncio.create_task(self.server.serve(sockets=[self._sock]), name="uvicorn")
            while not self.server.started:
                if self._task.done():
                    try:
                        self._task.result()
                    except SystemExit:  # uvicorn's answer to a failed lifespan startup
                        pass
                    raise StartupError("the HTTP server stopped while starting; the log above says why.")
                await asyncio.sleep(0.005)
            self._advertise()
        except BaseException as exc:
            await self._undo_start()
            if isinstance(exc, DataDirError | StoreError):
                raise StartupError(str(exc)) from exc
            raise
        return self.url

    def _advertise(self) -> None:
        """Write the URL to DATA_DIR/hub.url, where the ``agentcom`` client commands on this machine find it."""
        path = self.settings.data_dir / "hub.url"
        try:
            path.write_text(self.url + "\n")
        except OSError as exc:  # a full disk: the hub serves all the same (degraded), and prints its URL
            logger.warning("could not write %s: %s", path, exc)

    async def _undo_start(self) -> None:
        served = self.server.started  # then someone may have been answered: what the start created stays
        if self._task is not None and not self._task.done():
            self.server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
        await self.hub.close()
        if not served:
            for path in self.hub.created:
                path.unlink(missing_ok=True)
        if self._sock is not None:
            self._sock.close()
        if self._lock is not None:
            for created in reversed(self._lock.created):  # a directory this start made holds nothing to keep
                (created / LOCK_NAME).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    created.rmdir()
            self._lock.release()

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/ws"  # https -> wss

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            if self._task is not None:
                await self._task
        finally:
            await self.hub.close()  # already closed by the lifespan, unless uvicorn never ran it
            if self._sock is not None:
                self._sock.close()
            if self._lock is not None:
                self._lock.release()
