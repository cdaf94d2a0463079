"""The dashboard's WebSocket (``/ws/dashboard``): a snapshot on connect, then batched events."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import APIRouter

if TYPE_CHECKING:
    from hub.app import Hub

router = APIRouter()


async def run_fanout(hub: Hub) -> None:
    """Placeholder until the dashboard lands: keeps no state."""
    await asyncio.Event().wait()
