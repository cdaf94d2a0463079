"""``agentcom doctor --hub``: what an operator wants to know about a hub's data dir and process, as one report.

Checks, each reported whatever the others found: the data dir (exists, writable); the database (SQLite's
quick check on a read-only connection, safe while the hub runs); the newest backup's age against
``backup_interval_s``; free disk space under the data dir; whether a hub holds the data dir (the pid in
``hub.lock``) and, if so, that it answers ``/ready`` and what its model endpoints' health is (``GET /api/endpoints``
with the admin token from the data dir); if none runs, whether its port is free to bind. Failing checks say what to
do. Exit status: 0 when every required check passed, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hub.data_lock import LOCK_NAME
from hub.settings import HubSettings
from hub.store.backup import DIR_NAME, backups, check
from shared.doctor_report import Check, DoctorReport

DB_NAME = "agentcom.db"
DISK_FAIL_BYTES = 100 * 2**20
DISK_WARN_BYTES = 1 * 2**30
HTTP_TIMEOUT_S = 5.0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_data_dir(data_dir: Path) -> Check:
    if not data_dir.is_dir():
        return Check(
            "data dir", False, f"{data_dir} does not exist (a hub started with --data-dir {data_dir} makes it)"
        )
    if not os.access(data_dir, os.W_OK | os.X_OK):
        return Check("data dir", False, f"{data_dir} is not writable by uid {os.getuid()}")
    return Check("data dir", True, str(data_dir))


def check_database(data_dir: Path) -> Check:
    db = data_dir / DB_NAME
    if not db.exists():
        return Check("database", True, f"{db} does not exist yet (a first start creates it)")
    problem = check(db, "quick_check")
    if problem is not None:
        found = backups(data_dir)
        fix = (
            f"stop the hub and run: agentcom hub restore --data-dir {data_dir}"
            if found
            else "there is no backup; move the file aside to start empty"
        )
        return Check("database", False, f"{db} is damaged ({problem[:200]}); {fix}")
    return Check("database", True, f"{db} passes quick_check ({_size(db.stat().st_size)})")


def check_backups(data_dir: Path, interval_s: float, now_s: float) -> Check:
    found = backups(data_dir)
    if not found:
        if interval_s <= 0:
            return Check("backups", False, "none, and scheduled backups are off (backup_interval_s = 0)", False)
        return Check("backups", False, f"none yet in {data_dir / DIR_NAME} (make one: agentcom hub backup)", False)
    newest = found[-1]
    age = max(0.0, now_s - newest.stat().st_mtime)
    detail = f"{len(found)}, newest {newest.name}, {_age(age)} old"
    if interval_s > 0 and age > 2 * interval_s + 600:
        return Check("backups", False, f"{detail}: older than twice the interval ({_age(interval_s)})", False)
    return Check("backups", True, detail)


def check_disk(data_dir: Path) -> Check:
    where = data_dir if data_dir.exists() else next((p for p in data_dir.parents if p.exists()), Path("/"))
    free = shutil.disk_usage(where).free
    detail = f"{_size(free)} free under {where}"
    if free < DISK_FAIL_BYTES:
        return Check("disk", False, f"{detail}: writes will be refused (507); free some space")
    if free < DISK_WARN_BYTES:
        return Check("disk", False, f"{detail}: low", False)
    return Check("disk", True, detail)


def _locked(path: Path) -> bool:
    """Whether a process holds the flock on ``path``: read from /proc/locks (a look that takes no lock, so a hub
    starting at that instant is never refused); elsewhere, by trying a shared lock and letting it go at once."""
    try:
        st = path.stat()
    except OSError:
        return False
    locks = Path("/proc/locks")
    if locks.exists():
        suffix = f":{st.st_ino}"
        for entry in locks.read_text().splitlines():
            fields = entry.split()
            if "FLOCK" in fields and any(f.endswith(suffix) and f.count(":") == 2 for f in fields):
                dev = next(f for f in fields if f.endswith(suffix))
                major, minor, _ = dev.split(":")
                if (int(major, 16), int(minor, 16)) == (os.major(st.st_dev), os.minor(st.st_dev)):
                    return True
        return False
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def holder(data_dir: Path) -> dict[str, Any] | None:
    """The hub holding the data dir's lock (its pid and url, from ``hub.lock``), or None when no hub holds it."""
    path = data_dir / LOCK_NAME
    if not _locked(path):
        return None
    try:
        record = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        record = {}
    return dict(record) if isinstance(record, dict) else {}


def check_port(host: str, port: int) -> Check:
    if port == 0:
        return Check("port", True, "0: the hub picks a free port at start")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Check("port", False, f"{host}:{port} cannot be bound ({exc.strerror}): another process uses it; "
                         f"stop it or start the hub with --port")  # fmt: skip
    return Check("port", True, f"{host}:{port} is free")


def _admin_token(settings: HubSettings) -> str | None:
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    try:
        return (settings.data_dir / "admin.token").read_text().strip() or None
    except OSError:
        return None


def check_running(url: str, token: str | None, verify: Any = True) -> list[Check]:
    """``/ready`` of the running hub, and its endpoints' health (with the admin token)."""
    checks = []
    try:
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S, verify=verify) as client:
            ready = client.get("/ready")
            is_json = ready.headers.get("content-type", "").startswith("application/json")
            reason = ready.json().get("reason") if is_json else None
            checks.append(Check("ready", ready.status_code == 200, f"{url}/ready: HTTP {ready.status_code}"
                                + (f" ({reason})" if reason else "")))  # fmt: skip
            if token is None:
                checks.append(Check("endpoints", False, "no admin token in the data dir: not checked", False))
                return checks
            answer = client.get("/api/endpoints", headers={"Authorization": f"Bearer {token}"})
    except (httpx.HTTPError, ValueError) as exc:
        return [*checks, Check("ready", False, f"{url} does not answer: {type(exc).__name__}: {exc}")]
    if answer.status_code != 200:
        return [*checks, Check("endpoints", False, f"GET /api/endpoints: HTTP {answer.status_code}", False)]
    endpoints = answer.json().get("endpoints", [])
    if not endpoints:
        return [*checks, Check("endpoints", True, "none registered")]
    for ep in endpoints:
        health = ep.get("health", "unknown")
        name = ep.get("name") or ep.get("id")
        detail = f"{ep.get('url')} {health}" + (f": {ep['last_error']}" if ep.get("last_error") else "")
        checks.append(Check(f"endpoint {name}", health != "unhealthy", detail, False))
    return checks


def diagnose(settings: HubSettings, *, now: Callable[[], float] = time.time) -> DoctorReport:
    """Every check of the module docstring for the hub configured by ``settings``."""
    data_dir = settings.data_dir
    report = DoctorReport([check_data_dir(data_dir)])
    if data_dir.is_dir():
        report.checks += [check_database(data_dir), check_backups(data_dir, settings.backup_interval_s, now())]
    report.checks.append(check_disk(data_dir))
    running = holder(data_dir) if data_dir.is_dir() else None
    if running is None:
        report.checks.append(Check("hub", True, "no hub holds this data dir", False))
        report.checks.append(check_port(settings.host, settings.port))
        return report
    url = str(running.get("url") or f"http://{settings.host}:{settings.port}")
    report.checks.append(Check("hub", True, f"running, pid {running.get('pid', 'unknown')}, {url}"))
    cert = settings.tls_certfile  # a self-signed certificate is its own CA
    verify: Any = str(cert) if cert is not None and url.startswith("https://") else True
    report.checks += check_running(url, _admin_token(settings), verify)
    return report


def run(settings: HubSettings, out: Callable[[str], object] = print) -> int:
    """Print the report; 0 when every required check passed, else 1."""
    report = diagnose(settings)
    out(report.render())
    return 0 if report.ok else 1
