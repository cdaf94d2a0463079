"""Resource reports: CPU and RAM from psutil, VRAM from ``nvidia-smi`` or a local Ollama's ``/api/ps``.

Sent to the hub as ``resource_report`` every ``resource_report_interval_s`` while connected (the first one as soon
as the first connection is up).
"""

from __future__ import annotations

import asyncio
import logging
import shutil

import httpx
import psutil

from shared.protocol import ResourceReport
from sidecar.runtime.connection import HubLink
from sidecar.runtime.executor import now_ms

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
PROBE_TIMEOUT_S = 5.0


async def nvidia_vram_bytes(timeout_s: float = PROBE_TIMEOUT_S) -> tuple[int, int] | None:
    """(used, total) VRAM over all GPUs from ``nvidia-smi``, or ``None`` when there is no usable nvidia-smi."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--query-gpu=memory.used,memory.total",
            "--format=csv,noheader,nounits",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return parse_nvidia_smi(out.decode(errors="replace")) if proc.returncode == 0 else None


def parse_nvidia_smi(text: str) -> tuple[int, int] | None:
    """Sum ``used, total`` MiB lines of ``nvidia-smi --format=csv,noheader,nounits`` into bytes."""
    used = total = 0
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            continue
        used += int(parts[0]) * MIB
        total += int(parts[1]) * MIB
    return (used, total) if total else None


async def ollama_vram_bytes(ollama_url: str, timeout_s: float = PROBE_TIMEOUT_S) -> int | None:
    """VRAM held by the models a local Ollama has loaded (``/api/ps``), or ``None`` if it does not answer."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(ollama_url.rstrip("/") + "/api/ps")
            response.raise_for_status()
            models = response.json().get("models") or []
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return sum(int(model.get("size_vram") or 0) for model in models if isinstance(model, dict))


async def sample_resources(ollama_url: str | None = None) -> ResourceReport:
    """One resource report of this machine (VRAM fields only when something could tell)."""
    memory = psutil.virtual_memory()
    vram_used = vram_total = None
    if (gpu := await nvidia_vram_bytes()) is not None:
        vram_used, vram_total = gpu
    elif ollama_url:
        vram_used = await ollama_vram_bytes(ollama_url)
    return ResourceReport(
        type="resource_report",
        cpu_percent=psutil.cpu_percent(interval=None),
        ram_used_bytes=memory.total - memory.available,
        ram_total_bytes=memory.total,
        vram_used_bytes=vram_used,
        vram_total_bytes=vram_total,
        timestamp=now_ms(),
    )


async def report_resources(link: HubLink, interval_s: float, ollama_url: str | None = None) -> None:
    """Send a resource report whenever connected, every ``interval_s``; runs until cancelled."""
    psutil.cpu_percent(interval=None)  # the first reading is meaningless: start the measurement window
    while True:
        await link.wait_connected()
        report = await sample_resources(ollama_url)
        await link.send(report)
        await asyncio.sleep(interval_s)
