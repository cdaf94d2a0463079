"""Serve the hub with uvicorn in the running event loop, and report the bound URL."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from hub import server_protocols
from hub.app import Hub, create_app
from hub.clock import Clock
from hub.settings import HubSettings

logger = logging.getLogger(__name__)


class HubServer:
    """One hub: ``await start()`` returns its URL once it accepts connections; ``await stop()`` shuts it down."""

    def __init__(self, settings: HubSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, clock)
        self.hub: Hub = self.app.state.hub
        config = uvicorn.Config(
            self.app, host=settings.host, port=settings.port,
            ws_per_message_deflate=False, ws_max_size=settings.max_frame_bytes,
            ws_ping_interval=settings.ws_ping_interval_s, ws_ping_timeout=settings.ws_ping_interval_s,
            log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5,
            # httptools and websockets-sansio, with header, connection and close bounds (hub/server_protocols.py).
            **server_protocols.uvicorn_options(settings),
            timeout_keep_alive=settings.keep_alive_timeout_s, backlog=min(2048, settings.max_connections),
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.hub.on_fatal = self._fatal
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    def _fatal(self) -> None:
        self.server.should_exit = True

    async def start(self) -> str:
        self._task = asyncio.create_task(self.server.serve(), name="uvicorn")
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("hub failed to start")
            await asyncio.sleep(0.005)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
