"""``agentcom onboard`` / ``offboard`` against a real hub process and a real pm2 daemon.

pm2 runs with its own short PM2_HOME under /tmp (socket paths are limited to ~108 bytes), so these tests never
touch the user's pm2 daemon; that daemon is killed at the end. ``HOME`` points into the test's directory, so the
default agent home (``~/.agentcom/<name>``) lands there too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.agentcom import main as agentcom_main
from sidecar.host.culture_names import CULTURE_NAMES
from tests.conftest import SCALE
from tests.e2e.conftest import ROOT, Fleet, free_port

pytestmark = pytest.mark.slow
needs_pm2 = pytest.mark.skipif(shutil.which("pm2") is None, reason="pm2 is not installed (npm install -g pm2)")


def base_env(home: Path, pm2_home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTCOM_", "PM2_"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", PM2_DISCRETE_MODE="true")
    if pm2_home is not None:
        env["PM2_HOME"] = str(pm2_home)
    return env


def agentcom(*args: str, env: dict[str, str], timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.agentcom", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout * SCALE,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def pm2_home() -> Iterator[Path]:
    """A private, short PM2_HOME; its daemon is killed (by pid if ``pm2 kill`` hangs) and the directory removed."""
    home = Path(tempfile.mkdtemp(prefix="pm2.", dir="/tmp"))
    try:
        yield home
    finally:
        env = {**os.environ, "PM2_HOME": str(home), "PM2_DISCRETE_MODE": "true"}
        if (home / "pm2.pid").exists():
            try:
                subprocess.run(["pm2", "kill"], env=env, capture_output=True, timeout=30, check=False)
            except subprocess.TimeoutExpired:
                pass
            pid_file = home / "pm2.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
                except (ValueError, ProcessLookupError):
                    pass
        shutil.rmtree(home, ignore_errors=True)


def pm2_list(pm2_home: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["pm2", "jlist"],
        env={**os.environ, "PM2_HOME": str(pm2_home), "PM2_DISCRETE_MODE": "true"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def pm2_proc(pm2_home: Path, name: str) -> dict[str, Any] | None:
    return next((p for p in pm2_list(pm2_home) if p["name"] == name), None)


async def until(what: str, probe: Any, timeout_s: float = 30) -> Any:
    """Poll ``probe()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s * SCALE
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@needs_pm2
@pytest.mark.timeout(150)
async def test_onboard_runs_an_agent_under_pm2_and_offboard_removes_it(fleet: Fleet, tmp_path: Path, pm2_home: Path):
    """Onboard picks a Culture name, starts the sidecar under pm2 and proves it; pm2 revives it after SIGKILL;
    offboard removes the process, the token and the files."""
    hub = await fleet.start_hub()
    assert fleet.http is not None
    http = fleet.http
    admin_file = tmp_path / "admin.token"
    admin_file.write_text(fleet.admin_token + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home, pm2_home)
    env["AGENTCOM_ADMIN_TOKEN"] = fleet.admin_token  # must not reach the sidecar's environment via pm2

    done = agentcom("onboard", "--hub", hub.url, "--admin-token-file", str(admin_file), env=env)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert "== PASS" in done.stdout

    agents = (await http.get("/api/agents")).json()["agents"]
    assert len(agents) == 1, agents
    agent = agents[0]
    name = agent["agent_id"]
    assert agent["status"] == "online"
    assert name.startswith("gcu-") and name.removeprefix("gcu-") in CULTURE_NAMES
    assert f"name {name} (a free Culture ship name)" in done.stdout

    task_id = re.search(r"test task (task-[0-9a-f]+)", done.stdout)
    assert task_id, done.stdout
    task = (await http.get(f"/api/tasks/{task_id.group(1)}")).json()
    assert (task["status"], task["outcome"], task["assigned_to"]) == ("completed", "verified", name)
    assert f"Agent {name} online" in task["result"]["output"]

    agent_home = home / ".agentcom" / name
    config_path = agent_home / "sidecar.json"
    assert config_path.stat().st_mode & 0o777 == 0o600
    config = json.loads(config_path.read_text())
    token = config["token"]
    assert config["agent_id"] == name and config["sandbox"]["uid_base"] >= 400_000
    assert config["state_dir"] == str(agent_home / "state")
    assert token not in printed and fleet.admin_token not in printed
    assert token not in (agent_home / "ecosystem.config.js").read_text()
    assert token not in (agent_home / "logs" / "sidecar.log").read_text()

    app = f"agentcom-{name}"
    proc = pm2_proc(pm2_home, app)
    assert proc is not None and proc["pm2_env"]["status"] == "online" and proc["pid"] > 0
    assert proc["pm2_env"]["PM2_PROCESS_NAME"] == app
    assert not [k for k in proc["pm2_env"] if k.startswith("AGENTCOM_")]
    assert fleet.admin_token not in json.dumps(proc)

    # Someone else wants the same name: refused with a clear way out, nothing created.
    other = tmp_path / "other"
    clash = agentcom(
        "onboard",
        "--hub",
        hub.url,
        "--admin-token-file",
        str(admin_file),
        "--name",
        name,
        "--home",
        str(other),
        "--no-pm2",
        env=env,
    )
    assert clash.returncode == 1, clash.stdout + clash.stderr
    assert f"agent name {name} already has 1 token(s)" in clash.stdout and "--rejoin" in clash.stdout
    assert not other.exists()

    # SIGKILL the sidecar: pm2 starts a new one, which reconnects.
    before = (await http.get(f"/api/agents/{name}")).json()["connected_at"]
    os.kill(proc["pid"], signal.SIGKILL)

    async def restarted() -> dict[str, Any] | None:
        p = pm2_proc(pm2_home, app)
        ok = p and p["pid"] > 0 and p["pid"] != proc["pid"] and p["pm2_env"]["status"] == "online"
        return p if ok else None

    revived = await until("pm2 to restart the sidecar", restarted, 20)
    assert revived["pm2_env"]["restart_time"] >= 1

    async def back_online() -> bool:
        view = (await http.get(f"/api/agents/{name}")).json()
        return view.get("status") == "online" and (view.get("connected_at") or 0) > before

    await until("the agent to reconnect", back_online, 20)

    done = agentcom("offboard", "--name", name, "--hub", hub.url, "--admin-token-file", str(admin_file), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pm2 delete {app}" in done.stdout and "revoked 1 token(s)" in done.stdout
    assert pm2_proc(pm2_home, app) is None
    tokens = (await http.get("/admin/tokens")).json()["tokens"]
    assert name not in {t["agent_id"] for t in tokens}
    assert not agent_home.exists()

    async def gone() -> bool:
        view = (await http.get(f"/api/agents/{name}")).json()
        return view.get("status") == "offline"

    await until("the agent to go offline", gone, 10)


def test_onboard_fails_fast_when_the_hub_does_not_answer(tmp_path: Path):
    """Against a port where no hub listens, onboard exits 1 within seconds, says why, and changes nothing."""
    home = tmp_path / "home"
    home.mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    done = agentcom(
        "onboard", "--hub", url, "--admin-token", "not-a-real-token", "--no-pm2", env=base_env(home), timeout=30
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - t0 < 15 * SCALE
    assert f"FAIL  hub {url} does not answer /health" in done.stdout
    assert "admin token not checked" in done.stdout  # the other checks are still listed
    assert "bwrap" in done.stdout
    assert "pre-flight found 1 problem(s) above; nothing was changed" in done.stdout
    assert "not-a-real-token" not in done.stdout + done.stderr
    assert not (home / ".agentcom").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hub", "http://127.0.0.1:9"], "no admin token"),
        (["--hub", "ftp://x", "--admin-token", "t"], "--hub must look like http://host:port"),
        (["--hub", "http://127.0.0.1:9", "--admin-token", "t", "--name", "bad name!"], "--name 'bad name!'"),
        (["--hub", "http://127.0.0.1:9", "--admin-token", "t", "--rejoin"], "--rejoin needs --name"),
    ],
)
def test_onboard_bad_arguments_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Bad or missing arguments exit 2 with a message naming the problem, before any check runs."""
    monkeypatch.delenv("AGENTCOM_ADMIN_TOKEN", raising=False)
    assert agentcom_main(["onboard", *args]) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert out == ""
