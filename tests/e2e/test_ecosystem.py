"""The root ``ecosystem.config.js`` under a real pm2: from a fresh checkout the hub comes up, and a sidecar with no
config stops with exit code 78 instead of restarting in a loop."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_onboard import ROOT, base_env, needs_pm2, pm2_home, pm2_proc, until

pytestmark = pytest.mark.slow
__all__ = ["pm2_home"]  # the fixture, imported to be used here


async def _pm2(*args: str, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        "pm2", *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await asyncio.wait_for(proc.wait(), 60)


@needs_pm2
@pytest.mark.timeout(150)
async def test_root_ecosystem_runs_the_hub_and_stops_a_sidecar_without_config(tmp_path: Path, pm2_home: Path) -> None:
    """pm2 start ecosystem.config.js: the hub answers /health; the config-less sidecar is stopped after one exit 78."""
    env = base_env(tmp_path, pm2_home)
    data_dir = tmp_path / "hub"
    env.update(
        AGENTCOM_PYTHON=sys.executable,
        AGENTCOM_DATA_DIR=str(data_dir),
        AGENTCOM_SIDECAR_CONFIG=str(tmp_path / "missing" / "sidecar.toml"),
        AGENTCOM_PORT="0",
    )
    try:
        await _pm2("start", str(ROOT / "ecosystem.config.js"), env=env)

        async def exited() -> object:
            proc = pm2_proc(pm2_home, "agentcom-sidecar")
            return proc if proc and proc["pm2_env"].get("exit_code") == 78 else None

        await until("the sidecar to exit with 78", exited, timeout_s=60)

        async def url() -> str | None:
            path = data_dir / "hub.url"
            return path.read_text().strip() if path.exists() else None

        hub_url = await until("the hub to write its URL", url, timeout_s=60)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{hub_url}/health")).json()["status"] == "ok"

        # A negative can only be seen over time: four restart delays (2 s each) in which pm2 would have restarted it.
        async def restarted() -> bool:
            proc = pm2_proc(pm2_home, "agentcom-sidecar")
            return bool(proc and (proc["pm2_env"]["restart_time"] > 0 or proc["pm2_env"]["status"] == "online"))

        with pytest.raises(AssertionError, match="timed out"):
            await until("a restart of the sidecar (there must be none)", restarted, timeout_s=8)
    finally:
        await _pm2("delete", "all", env=env)
