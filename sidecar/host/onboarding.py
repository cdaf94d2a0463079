"""Onboarding and offboarding an agent host: what ``agentcom onboard`` and ``agentcom offboard`` do.

``onboard`` checks the machine and the hub (every problem is listed before it gives up), picks a free Culture ship
name unless given one, mints the agent's token, writes the sidecar config (0600) under the agent's home, starts the
sidecar under pm2 (:mod:`sidecar.host.pm2`) and proves it with an urgent shell task. ``offboard``
(:mod:`sidecar.host.offboarding`) undoes all of it.

The agent's token is written to the config file only; it is never printed or logged (at most its first 8
characters). The admin token is only ever sent to the hub.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from sidecar.host import pm2
from sidecar.host.culture_names import NamesExhausted, pick_name
from sidecar.host.pm2 import SIDECAR_ROOT, Pm2Error, app_name, tail, write_ecosystem
from sidecar.settings import SidecarSettings, describe_errors

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
CONFIG_NAME = "sidecar.json"
ONBOARD_UID_BASE = 400_000
"""Onboarded sidecars get disjoint 1000-uid ranges from here, clear of the default ranges (100000-163999)."""
UID_RANGE = 1000
HTTP_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 5.0
ONLINE_TIMEOUT_S = 30.0
PROOF_TIMEOUT_S = 60.0


class UsageError(Exception):
    """Bad or missing arguments (exit 2)."""


class StepFailed(Exception):
    """A step failed; the message says why and what to do."""


# ---------------------------------------------------------------- output


@dataclass
class Report:
    """Step-by-step progress on stdout; counts failures."""

    failures: int = 0
    current: str = ""
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def step(self, n: int, total: int, title: str) -> None:
        self.current = f"step {n} ({title})"
        self.say(f"[{n}/{total}] {title}")

    def ok(self, text: str) -> None:
        self.say(f"  ok    {text}")

    def warn(self, text: str) -> None:
        self.say(f"  warn  {text}")

    def skip(self, text: str) -> None:
        self.say(f"  --    {text}")

    def fail(self, text: str) -> None:
        self.failures += 1
        self.say(f"  FAIL  {text}")


def token_hint(token: str) -> str:
    """What may be shown of a token: its first 8 characters."""
    return token[:8] + "…"


def agents_base() -> Path:
    """Where agent homes go by default: ``~/.agentcom``."""
    return Path.home() / ".agentcom"


# ---------------------------------------------------------------- files


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600 from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def uid_bases_in_use(base: Path, exclude: Path) -> set[int]:
    """``sandbox.uid_base`` of every other agent home under ``base`` (this host's onboarded sidecars)."""
    used: set[int] = set()
    for cfg in base.glob(f"*/{CONFIG_NAME}"):
        if cfg.parent.resolve() == exclude.resolve():
            continue
        try:
            value = json.loads(cfg.read_text()).get("sandbox", {}).get("uid_base")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int):
            used.add(value)
    return used


def pick_uid_base(used: set[int]) -> int:
    """The lowest ``ONBOARD_UID_BASE + 1000*k`` whose range overlaps none in ``used``."""
    k = 0
    while any(abs(ONBOARD_UID_BASE + UID_RANGE * k - u) < UID_RANGE for u in used):
        k += 1
    return ONBOARD_UID_BASE + UID_RANGE * k


def is_free_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def sidecar_config(
    name: str, token: str, hub: str, home: Path, args: argparse.Namespace, uid_base: int
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "agent_id": name,
        "token": token,
        "hub_url": hub,
        "capabilities": args.capabilities,
        "state_dir": str(home / "state"),
        "workspace_root": str(home / "workspaces"),
        "sandbox": {"uid_base": uid_base},
    }
    if args.ollama_url:
        config["ollama_url"] = args.ollama_url
    if args.models:
        config["models"] = args.models
    return config


class _FileOnlySettings(SidecarSettings):
    """The sidecar's settings from the config alone: pm2 starts it without ``AGENTCOM_*`` variables."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def check_config(args: argparse.Namespace, hub: str, name: str | None, home: Path | None) -> None:
    """Raise UsageError if the sidecar would refuse the config these arguments give (before anything is registered)."""
    config = sidecar_config(name or "probe", "x", hub, home or agents_base(), args, args.uid_base or ONBOARD_UID_BASE)
    try:
        _FileOnlySettings(**config)
    except ValidationError as exc:
        raise UsageError(describe_errors(exc)) from None


# ---------------------------------------------------------------- onboard


@dataclass
class Onboard:
    args: argparse.Namespace
    hub: str
    http: httpx.Client
    out: Report
    name: str | None
    home: Path | None
    tokens: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    def preflight(self) -> bool:
        out, args = self.out, self.args
        try:
            health = httpx.get(f"{self.hub}/health", timeout=HEALTH_TIMEOUT_S)
            health.raise_for_status()
            n = health.json().get("agents_connected", "?")
            out.ok(f"hub {self.hub} answers /health ({n} agents connected)")
            hub_ok = True
        except (httpx.HTTPError, ValueError) as exc:
            out.fail(f"hub {self.hub} does not answer /health ({why(exc)}): is the hub running and the URL right?")
            hub_ok = False
        if hub_ok:
            try:
                r = self.http.get("/admin/tokens")
                if r.status_code == 200:
                    self.tokens = r.json().get("tokens", [])
                    out.ok("the hub accepts the admin token")
                else:
                    out.fail(f"the hub refuses the admin token (HTTP {r.status_code}): check --admin-token-file")
            except (httpx.HTTPError, ValueError) as exc:
                out.fail(f"could not check the admin token: {why(exc)}")
        else:
            out.skip("admin token not checked (the hub does not answer)")
        if shutil.which("bwrap"):
            out.ok("bwrap found: commands run in a bubblewrap sandbox")
        else:
            out.warn("bwrap not found: the sandbox will degrade to landlock/rlimits; install bubblewrap")
        if args.no_pm2:
            out.skip("pm2 not needed (--no-pm2)")
        elif pm2_path := shutil.which("pm2"):
            out.ok(f"pm2 found ({pm2_path})")
        else:
            out.fail("pm2 not found: install it (npm install -g pm2) or pass --no-pm2 and run the sidecar yourself")
        if self.home is not None:
            if is_free_dir(self.home):
                out.ok(f"home {self.home} is free")
            elif args.rejoin:
                out.ok(f"home {self.home} exists and is reused (--rejoin)")
            else:
                out.fail(
                    f"home {self.home} already exists: offboard that agent first, choose another --name/--home, "
                    "or pass --rejoin to re-register it"
                )
        else:
            out.ok(f"agent homes go under {agents_base()} (the name is picked next)")
        return out.failures == 0

    def register(self) -> str:
        out, args = self.out, self.args
        agents = self.http.get("/api/agents")
        agents.raise_for_status()
        known = agents.json()["agents"]  # {agents: [...]}: the original's check expected a bare list
        if self.name is None:
            taken = {a["agent_id"] for a in known} | {t["agent_id"] for t in self.tokens}
            base = agents_base()
            if base.is_dir():
                taken |= {p.name for p in base.iterdir() if not is_free_dir(p)}
            try:
                self.name = pick_name(taken)
            except NamesExhausted as exc:
                raise StepFailed(str(exc)) from None
            self.home = self.home or base / self.name
            out.ok(f"name {self.name} (a free Culture ship name); home {self.home}")
        else:
            out.ok(f"name {self.name} (given)")
        name = self.name
        mine = [t for t in self.tokens if t["agent_id"] == name]
        online = any(a["agent_id"] == name and a.get("status") == "online" for a in known)
        if (mine or online) and not args.rejoin:
            what = f"already has {len(mine)} token(s) on the hub" if mine else "is online on the hub right now"
            raise StepFailed(
                f"agent name {name} {what}. If this is that agent's machine coming back, re-run with --rejoin "
                f"(its old token is revoked and a new one minted); to free the name: agentcom offboard --name {name} "
                f"--hub {self.hub} --admin-token-file FILE; or choose another --name"
            )
        if args.rejoin:
            r = self.http.delete(f"/admin/tokens/{name}")
            if r.status_code == 200:
                out.ok(f"--rejoin: revoked {r.json().get('revoked', '?')} old token(s) of {name}")
            elif r.status_code != 404:
                raise StepFailed(f"could not revoke the old token of {name}: HTTP {r.status_code}")
            if online:
                out.warn(
                    f"{name} is online now: its pm2 process here is replaced; a sidecar elsewhere still using the "
                    "old token is refused when it reconnects"
                )
        r = self.http.post("/admin/tokens", json={"agent_id": name})
        if r.status_code != 201:
            raise StepFailed(f"the hub did not mint a token for {name}: HTTP {r.status_code} {r.text[:200]}")
        token = r.json()["token"]
        out.ok(f"token minted (starts {token_hint(token)}; written only to the config file)")
        return token

    def write_config(self, token: str) -> Path:
        assert self.name is not None and self.home is not None
        home = self.home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("state", "workspaces", "logs"):
            (home / sub).mkdir(exist_ok=True)
        uid_base = self.args.uid_base or pick_uid_base(uid_bases_in_use(home.parent, home))
        config = sidecar_config(self.name, token, self.hub, home, self.args, uid_base)
        path = home / CONFIG_NAME
        write_private(path, json.dumps(config, indent=2) + "\n")
        self.out.ok(f"{path} (mode 0600; sandbox uid_base {uid_base}; state and workspaces under {home})")
        return path

    def start(self, config: Path) -> bool:
        """Start under pm2; False with --no-pm2 (the command to run is printed instead)."""
        assert self.name is not None and self.home is not None
        out = self.out
        eco = write_ecosystem(self.name, config, self.home)
        if self.args.no_pm2:
            out.skip("not started (--no-pm2); run it yourself, in a supervisor of your choice:")
            out.say(f"        cd {SIDECAR_ROOT} && {sys.executable} -m sidecar --config {config}")
            out.say(f"        (or under pm2: pm2 start {eco})")
            return False
        pm2.start(app_name(self.name), eco, out)
        return True

    def prove(self) -> str:
        """Wait for the agent, run the test task on it; returns a one-line result or raises StepFailed."""
        assert self.name is not None and self.home is not None
        name, out = self.name, self.out
        deadline = time.monotonic() + ONLINE_TIMEOUT_S
        last_pm2 = 0.0
        while True:
            r = self.http.get(f"/api/agents/{name}")
            if r.status_code == 200 and r.json().get("status") == "online":
                view = r.json()
                break
            if time.monotonic() - last_pm2 > 2:
                last_pm2 = time.monotonic()
                stopped, status = pm2.gave_up(app_name(name))
                if stopped:
                    raise StepFailed(
                        f"the sidecar stopped (pm2 status {status}); its log:\n        "
                        + tail(_read(self.home / "logs" / "sidecar.log"))
                    )
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{name} did not come online within {ONLINE_TIMEOUT_S:.0f} s; its log:\n        "
                    + tail(_read(self.home / "logs" / "sidecar.log"))
                )
            time.sleep(0.3)
        level = view.get("sandbox_level")
        (out.ok if level == "bwrap" else out.warn)(f"{name} is online (sandbox {level})")
        line = f"Agent {name} online"
        body = {
            "description": f"Onboarding test: echo '{line}'",
            "priority": "urgent",
            "executor": "shell",
            "assign_to": name,
            "max_retries": 1,
            "metadata": {"shell_command": f'echo "{line}"', "onboarding_test": True},
            "verification_steps": [
                {
                    "type": "command_succeeds",
                    "target": "test -d . && test -w .",
                    "description": "the task's workspace exists and is writable",
                }
            ],
        }
        r = self.http.post("/api/tasks", json=body)
        if r.status_code != 201:
            raise StepFailed(f"the hub refused the test task: HTTP {r.status_code} {r.text[:200]}")
        task_id = r.json()["task_id"]
        out.ok(f'submitted urgent test task {task_id}: echo "{line}"')
        t0, deadline = time.monotonic(), time.monotonic() + PROOF_TIMEOUT_S
        while True:
            task = self.http.get(f"/api/tasks/{task_id}").json()
            status = task["status"]
            if status == "completed":
                break
            if status in ("dead_letter", "cancelled", "failed"):
                raise StepFailed(f"test task {task_id} ended {status}: {task.get('last_error') or task.get('result')}")
            if time.monotonic() > deadline:
                raise StepFailed(f"test task {task_id} not completed within {PROOF_TIMEOUT_S:.0f} s (status {status})")
            time.sleep(0.3)
        output = str((task.get("result") or {}).get("output", ""))
        outcome = task.get("outcome")
        if outcome != "verified" or line not in output:
            raise StepFailed(f"test task {task_id} completed but outcome={outcome}, output={output.strip()[:120]!r}")
        took = time.monotonic() - t0
        out.ok(f"test task completed in {took:.1f} s: outcome verified, output {line!r}")
        return f"agent {name} is online and completed its test task"


def why(exc: Exception) -> str:
    """A short reason for a failed hub call (no token, no body)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def onboard(args: argparse.Namespace, hub: str, admin_token: str, name: str | None, home: Path | None) -> int:
    """``agentcom onboard`` with checked arguments; 0 when the agent proved itself, 1 on a failure."""
    out = Report()
    total = 5
    out.say(f"== agentcom onboard: hub {hub}")
    with httpx.Client(base_url=hub, headers={"Authorization": f"Bearer {admin_token}"}, timeout=HTTP_TIMEOUT_S) as http:
        job = Onboard(args, hub, http, out, name, home)
        out.step(1, total, "pre-flight checks")
        if not job.preflight():
            out.say(f"== FAIL: pre-flight found {out.failures} problem(s) above; nothing was changed")
            return EXIT_FAIL
        registered = False
        try:
            out.step(2, total, "register the agent")
            token = job.register()
            registered = True
            out.step(3, total, "write the sidecar config")
            config = job.write_config(token)
            del token
            out.step(4, total, "start the sidecar under pm2")
            started = job.start(config)
            out.step(5, total, "prove it with a test task")
            if not started:
                out.skip("skipped: the sidecar is not running yet (--no-pm2)")
                verdict = f"agent {job.name} is registered; start its sidecar with the command above"
            elif args.no_test:
                out.skip("skipped (--no-test)")
                verdict = f"agent {job.name} is registered and its sidecar started (not tested: --no-test)"
            else:
                verdict = job.prove()
        except (StepFailed, Pm2Error, httpx.HTTPError, OSError, subprocess.SubprocessError) as exc:
            out.fail(str(exc) if isinstance(exc, (StepFailed, Pm2Error)) else why(exc))
            out.say(f"== FAIL: onboarding {job.name or 'the agent'} stopped at {out.current}")
            if registered:
                out.say(
                    f"  it is registered and its files are in {job.home}; fix the cause, then re-run with "
                    f"--name {job.name} --rejoin, or remove it:"
                )
                out.say(
                    f"  agentcom offboard --name {job.name} --hub {hub} --admin-token-file FILE"
                    + (f" --home {job.home}" if args.home else "")
                )
            return EXIT_FAIL
    assert job.name is not None
    out.say(f"== PASS: {verdict} ({time.monotonic() - job.started_at:.1f} s)")
    out.say("next steps:")
    out.say(f"  dashboard:  {hub}/dashboard (sign in with a viewer or admin token)")
    if not args.no_pm2:
        out.say(f"  logs:       pm2 logs {app_name(job.name)}   (file: {job.home}/logs/sidecar.log)")
        out.say(f"  restart:    pm2 restart {app_name(job.name)}")
    out.say(f"  give work:  POST {hub}/api/tasks with an admin or agent token (or the dashboard)")
    out.say(
        f"  remove:     agentcom offboard --name {job.name} --hub {hub} --admin-token-file FILE"
        + (f" --home {job.home}" if args.home else "")
    )
    return EXIT_OK
