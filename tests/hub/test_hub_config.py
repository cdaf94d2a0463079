"""Running the hub as an operator does: a TOML config file under flags and environment, ``--print-config`` with
secrets redacted, JSON log lines that never carry a token, and TLS with a sidecar connecting over wss://."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.protocol import Identify
from sidecar.runtime.connection import connect_to_hub
from sidecar.settings import LimitSettings

ROOT = Path(__file__).resolve().parents[2]
needs_openssl = pytest.mark.skipif(
    subprocess.run(["which", "openssl"], capture_output=True).returncode != 0, reason="openssl is not installed"
)


def hub_cmd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], cwd=ROOT, env={**clean, **(env or {})},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_print_config_follows_flags_over_env_over_file_and_redacts(tmp_path: Path) -> None:
    """A file sets two values, the environment overrides one, a flag overrides another; secrets are redacted."""
    config = tmp_path / "hub.toml"
    config.write_text('port = 4100\nmax_history = 77\nsweep_interval_s = 2.5\nadmin_token = "s3cret-admin-token"\n')
    done = hub_cmd("--config", str(config), "--port", "4200", "--print-config", env={"AGENTCOM_MAX_HISTORY": "88"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "port = 4200" in out and "max_history = 88" in out and "sweep_interval_s = 2.5" in out
    assert "s3cret-admin-token" not in out and 'admin_token = "<redacted>"' in out
    assert "# Address the hub binds" in out  # every setting carries its description


def test_config_errors_exit_78_naming_the_problem(tmp_path: Path) -> None:
    """An unknown setting, invalid TOML, a bad value and half a TLS pair each exit 78 with one line saying why."""
    cases = {
        "prot = 1\n": "unknown settings: prot",
        "port = [\n": "not valid TOML",
        'port = "many"\n': "port",
        f'tls_certfile = "{tmp_path}"\n': "tls_certfile and tls_keyfile go together",
    }
    for text, expected in cases.items():
        config = tmp_path / "hub.toml"
        config.write_text(text)
        done = hub_cmd("--config", str(config), "--print-config")
        assert done.returncode == 78, (text, done.stdout)
        assert expected in done.stderr and "Traceback" not in done.stderr


def test_json_logs_are_one_object_per_line_without_secrets(tmp_path: Path) -> None:
    """--log-format json: every stderr line is a JSON object with ts, level, logger and msg; a task's state changes
    are lines with its id and the event as keys; the generated admin token is in none of them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "--port", "0", "--data-dir", str(tmp_path / "d"), "--log-format", "json"],
        cwd=ROOT, env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert "ready" in ready, ready
        token = (tmp_path / "d" / "admin.token").read_text().strip()
        url = ready.split("url=")[1].split()[0]
        httpx.get(f"{url}/api/tasks", headers={"Authorization": f"Bearer {token}x"})  # an auth failure is logged
        made = httpx.post(
            f"{url}/api/tasks", json={"description": "log me"}, headers={"Authorization": f"Bearer {token}"}
        )
        task_id = made.json()["task_id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "the hub logged nothing"
    records = [json.loads(line) for line in lines]
    for line, record in zip(lines, records, strict=True):
        assert {"ts", "level", "logger", "msg"} <= set(record)
        assert token not in line
    lifecycle = [r for r in records if r["logger"] == "hub.tasks" and r.get("task_id") == task_id]
    assert [r["event"] for r in lifecycle][:1] == ["task_submitted"], records  # one line per state change
    assert proc.returncode == 0


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), made by openssl."""
    cert, key = folder / "hub.pem", folder / "hub.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=agentcom-test",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@needs_openssl
async def test_a_sidecar_connects_over_wss_to_a_hub_with_tls(make_hub: Any, tmp_path: Path) -> None:
    """The hub serves https:// and wss:// with its certificate; a sidecar trusting that CA identifies over wss; a
    client that does not trust it is refused at the handshake."""
    cert, key = make_cert(tmp_path)
    hub = await make_hub(tls_certfile=cert, tls_keyfile=key)
    assert hub.url.startswith("https://") and hub.ws_url.startswith("wss://")
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as client:
        assert (await client.get(f"{hub.url}/health")).json()["status"] == "ok"
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"{hub.url}/health")
    token = await _mint(hub.url, hub.admin_token, cert)
    hello = Identify(type="identify", agent_id="gcu-over-tls", token=token, executors=["shell"])
    limits = LimitSettings(connect_timeout_s=10)
    context = ssl.create_default_context(cafile=str(cert))
    connections = connect_to_hub(hub.ws_url, hello, limits, ssl_context=context)
    conn = await asyncio.wait_for(anext(connections), 30)
    try:
        agents = (await _get(hub.url, hub.admin_token, cert, "/api/agents"))["agents"]
        assert [a["agent_id"] for a in agents if a["status"] == "online"] == ["gcu-over-tls"]
    finally:
        await conn.close()
        await connections.aclose()


async def _mint(url: str, admin: str, cert: Path) -> str:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as client:
        r = await client.post(f"{url}/admin/tokens", json={"agent_id": "gcu-over-tls"},
                              headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
        return str(r.json()["token"])


async def _get(url: str, admin: str, cert: Path, path: str) -> Any:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as client:
        return (await client.get(f"{url}{path}", headers={"Authorization": f"Bearer {admin}"})).json()


async def test_a_hub_bound_to_every_address_advertises_one_this_machine_reaches(tmp_path: Path) -> None:
    """Bound to 0.0.0.0, the hub's URL (printed, and in DATA_DIR/hub.url for the CLI and the doctor) is loopback."""
    from hub.server import HubServer
    from hub.settings import HubSettings

    server = HubServer(HubSettings(host="0.0.0.0", port=0, data_dir=tmp_path / "hub"))
    url = await server.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert (tmp_path / "hub" / "hub.url").read_text().strip() == url
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{url}/ready")).status_code == 200
    finally:
        await server.stop()
