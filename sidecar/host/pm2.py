"""pm2, which keeps onboarded sidecars running: their process file, and the pm2 commands ``agentcom onboard`` and
``agentcom offboard`` run (jlist, start, delete, save).

pm2 hands the CLI's whole environment to the processes it starts, so every pm2 command here runs without the admin
token (``AGENTCOM_ADMIN_TOKEN``) or any ``AGENTCOM_SIDECAR_*`` override.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

APP_PREFIX = "agentcom-"
ECOSYSTEM_NAME = "ecosystem.config.js"
EXIT_CONFIG = 78
"""The sidecar's exit code for a bad config or a refused token (``sidecar.main.EXIT_CONFIG``): pm2 stops there."""
PM2_TIMEOUT_S = 60.0
SIDECAR_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the ``sidecar`` package: the pm2 process's cwd, so ``-m sidecar`` always imports."""


class Pm2Error(Exception):
    """A pm2 command failed or printed nothing usable; the message says why."""


class Progress(Protocol):
    """Where progress lines go (``sidecar.host.onboarding.Report``)."""

    def ok(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def fail(self, text: str) -> None: ...


def app_name(name: str) -> str:
    """The pm2 process name of agent ``name``'s sidecar."""
    return APP_PREFIX + name


def pm2_env() -> dict[str, str]:
    """The environment for pm2 commands: this one without ``AGENTCOM_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    env["PM2_DISCRETE_MODE"] = "true"  # no banner on stdout when a fresh daemon starts
    return env


def pm2(*args: str, timeout: float = PM2_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``pm2 ARGS...``; its output is captured, its exit code left to the caller."""
    return subprocess.run(
        ["pm2", *args],
        env=pm2_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def pm2_processes() -> list[dict[str, Any]]:
    """``pm2 jlist``, parsed (its last line is the JSON array; earlier lines are noise)."""
    done = pm2("jlist")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise Pm2Error(f"pm2 jlist failed: {tail(done.stderr or done.stdout)}")
    try:
        procs = json.loads(lines[-1])
    except ValueError:
        raise Pm2Error(f"pm2 jlist printed no JSON: {tail(done.stdout)}") from None
    return procs if isinstance(procs, list) else []


def pm2_find(name: str) -> dict[str, Any] | None:
    """The pm2 process called ``name``, as ``pm2 jlist`` describes it; None if pm2 runs none."""
    return next((p for p in pm2_processes() if p.get("name") == name), None)


def tail(text: str, lines: int = 8) -> str:
    """The last ``lines`` lines of ``text``, indented to sit under a progress line."""
    return "\n        ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def ecosystem(name: str, config: Path, home: Path) -> dict[str, Any]:
    """The pm2 process file's content for one agent's sidecar."""
    app = app_name(name)
    return {
        "apps": [
            {
                "name": app,
                "script": sys.executable,
                "args": ["-m", "sidecar", "--config", str(config)],
                "interpreter": "none",
                "cwd": str(SIDECAR_ROOT),
                "autorestart": True,
                "max_restarts": 50,
                "min_uptime": "5s",
                "restart_delay": 2000,
                "max_memory_restart": "500M",
                "kill_timeout": 15000,
                "stop_exit_codes": [EXIT_CONFIG],
                "merge_logs": True,
                "out_file": str(home / "logs" / "sidecar.log"),
                "error_file": str(home / "logs" / "sidecar.log"),
                "env": {"PM2_PROCESS_NAME": app, "PYTHONUNBUFFERED": "1"},
            }
        ],
    }


def write_ecosystem(name: str, config: Path, home: Path) -> Path:
    """Write the process file into ``home``; ``pm2 start`` on it runs the sidecar."""
    path = home / ECOSYSTEM_NAME
    body = json.dumps(ecosystem(name, config, home), indent=2)
    path.write_text(
        f"// Written by `agentcom onboard` for agent {name}: `pm2 start {path}` runs its sidecar.\n"
        f"module.exports = {body};\n"
    )
    return path


def start(app: str, eco: Path, out: Progress) -> None:
    """Start the process file ``eco`` (replacing an old ``app``) and save pm2's list; Pm2Error if it fails."""
    if pm2_find(app) is not None:
        done = pm2("delete", app)
        if done.returncode != 0:
            raise Pm2Error(f"an old pm2 process {app} exists and could not be deleted: {tail(done.stderr)}")
        out.ok(f"deleted an old pm2 process {app}")
    done = pm2("start", str(eco))
    if done.returncode != 0:
        raise Pm2Error(f"pm2 start {eco} failed:\n        {tail(done.stderr or done.stdout)}")
    proc = pm2_find(app)
    if proc is None:
        raise Pm2Error(f"pm2 start returned but lists no process {app}")
    out.ok(
        f"pm2 runs {app} (pid {proc.get('pid')}, status {proc.get('pm2_env', {}).get('status')}); process file {eco}"
    )
    saved = pm2("save")
    if saved.returncode == 0:
        out.ok("pm2 save: the process list survives a pm2 restart (run `pm2 startup` once for reboots)")
    else:
        out.warn(f"pm2 save failed (not needed now): {tail(saved.stderr, 2)}")


def gave_up(app: str) -> tuple[bool, str | None]:
    """Whether pm2 stopped restarting ``app`` (errored, stopped, or exited with EXIT_CONFIG), and its status."""
    proc = pm2_find(app) or {}
    status = proc.get("pm2_env", {}).get("status")
    return status in ("errored", "stopped") or proc.get("pm2_env", {}).get("exit_code") == EXIT_CONFIG, status


def stop(app: str, out: Progress) -> None:
    """Delete ``app`` from pm2 and save pm2's list; a failure is reported to ``out``, not raised."""
    try:
        if pm2_find(app) is None:
            out.ok(f"no pm2 process {app} (nothing to stop)")
            return
        done = pm2("delete", app)
        if done.returncode == 0:
            out.ok(f"pm2 delete {app}")
            if pm2("save").returncode != 0:
                out.warn("pm2 save failed: the saved process list may still name it")
        else:
            out.fail(f"pm2 delete {app} failed: {tail(done.stderr or done.stdout)}")
    except (Pm2Error, OSError, subprocess.SubprocessError) as exc:
        out.fail(str(exc))
