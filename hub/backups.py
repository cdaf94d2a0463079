"""Scheduled backups of the hub's database (:mod:`hub.store.backup` makes them), one of the hub's owned loops."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from hub.store import StoreError
from hub.store.backup import BackupInfo, backup

if TYPE_CHECKING:
    from hub.hub import Hub

logger = logging.getLogger(__name__)


async def back_up_now(hub: Hub) -> BackupInfo:
    """One backup now, logged; StoreError if it failed (the earlier backups are kept)."""
    info = await backup(hub.db_path, hub.settings.data_dir, hub.settings.backup_keep)
    hub.last_backup = info
    logger.info("backup written: %s (%d bytes, %d ms)", info.path, info.bytes, info.took_ms)
    return info


async def run_backups(hub: Hub) -> None:
    """Back up every ``backup_interval_s`` (the first one an interval after the start)."""
    interval = hub.settings.backup_interval_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await back_up_now(hub)
        except StoreError as exc:
            logger.error("scheduled backup failed: %s", exc)
