"""``agentcom demo``: a hub, two sidecars and a model carry a goal of one sentence to a verified change, locally.

The default scenario (``--scenario merge``) creates a small git repository (a bare "remote" holding a calculator
whose test fails), registers it at ``/api/repos`` with auto-merge allowed and submits a goal naming it: the hub's
model decomposes the goal into a fix, a sidecar's agent makes it on ``agentcom/<task-id>``, verification runs the
repository's test command on the committed tree and the auto-merge tier fast-forwards main (scripts/demo_git.py).
``--scenario pr``: review required and a fake forge, so the fix becomes a pull request, and a second change holding
a token-shaped string is blocked by the secret scan. ``--scenario hello``: the goal without a repository;
``--tasks``: the hand-written batch of tasks instead of a goal.

Uses a real Ollama for the sidecars when ``OLLAMA_HOST`` answers (and for the hub's own model too), else the shipped
fake Ollama replaying a scripted trajectory (and says so), and for the hub a fake replaying the goal's decomposition
and verdict. Every process it starts is stopped on exit, on Ctrl-C and on SIGTERM; ``--keep`` leaves them running
(with the dashboard's and an admin link) until then.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from scripts import demo_git
from shared.fakes import calc_project

AGENTS = ("gcu-sleeper-service", "gcu-so-much-for-subtlety")
SHELL_TASKS = [  # (description, command, priority, checks run afterwards in the same sandbox)
    ("Count the lines of /etc/os-release", "wc -l < /etc/os-release", "urgent", []),
    (
        "Write the first 20 primes to primes.txt",
        'python3 -c "print(*[n for n in range(2, 72) if all(n % d for d in range(2, n))],'
        " file=open('primes.txt','w'))\"",
        "high",
        [{"type": "command_succeeds", "target": "test $(wc -w < primes.txt) -eq 20"}],
    ),
    (
        "Make a tarball of a generated file",
        "seq 1 1000 > numbers.txt && tar czf numbers.tgz numbers.txt",
        "normal",
        [
            {"type": "file_exists", "target": "numbers.tgz"},
            {"type": "command_succeeds", "target": "tar tzf numbers.tgz | grep -qx numbers.txt"},
        ],
    ),
    (
        "Checksum a generated file",
        "seq 1 5000 | sha256sum > sum.txt",
        "normal",
        [{"type": "command_succeeds", "target": "grep -Eq '^[0-9a-f]{64} ' sum.txt"}],
    ),
    ("Show the sandbox identity", "id && echo HOME=$HOME && ls -la", "low", []),
    (  # the hub itself, on this machine: inside the sandbox's own network namespace nothing answers
        "Try to reach the hub from the sandbox (it has no network)",
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', HUB_PORT), 2)\" && echo online"
        " || echo 'no network'",
        "low",
        [],
    ),
]
GOAL_ID = "goal-demo"
HELLO_TASK = "Create hello.py printing hello and a test for it (test_hello.py, runnable with python3)."


def log(msg: str) -> None:
    print(msg, flush=True)


class Demo:
    def __init__(self, root: Path, python: str) -> None:
        self.root = root
        self.python = python
        self.procs: list[tuple[str, subprocess.Popen[str]]] = []
        self.admin_token = os.urandom(16).hex()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        logf = open(self.root / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=logf,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def wait_line(self, proc: subprocess.Popen[str], marker: str, timeout_s: float = 30) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if marker in line:
                return line.strip()
            if not line and proc.poll() is not None:
                break
        raise RuntimeError(f"process did not print {marker!r}; see the logs in {self.root}")

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def start_hub(self, env: dict[str, str] | None = None) -> str:
        proc = self.spawn(
            "hub",
            [self.python, "-m", "hub", "--port", "0", "--data-dir", str(self.root / "hub")],
            env={"AGENTCOM_ADMIN_TOKEN": self.admin_token, **(env or {})},
        )
        return self.wait_line(proc, "agentcom hub ready").split("url=", 1)[1]

    def start_forge(self) -> str:
        """The fake forge (GitHub's pull request API) holding the demo repository; returns its URL."""
        argv = [self.python, "-m", "shared.fakes.forge_server", "--port", "0", "--token", demo_git.FORGE_TOKEN]
        proc = self.spawn("fake-forge", [*argv, "--repo", calc_project.FORGE_REPO])
        line = self.wait_line(proc, "http://")
        return line[line.index("http://") :].split()[0]

    def start_model(self, script: str = "hello_world", name: str = "fake-ollama") -> tuple[str, str, bool]:
        host = os.environ.get("OLLAMA_HOST")
        if host:
            url = host if host.startswith("http") else f"http://{host}"
            try:
                tags = httpx.get(f"{url}/api/tags", timeout=2).json()
                models = [m["name"] for m in tags.get("models", [])]
                if models:
                    return url, os.environ.get("AGENTCOM_DEMO_MODEL", models[0]), True
                log(f"  Ollama at {url} has no models; using the shipped fake instead")
            except (httpx.HTTPError, ValueError):
                log(f"  Ollama at {url} does not answer; using the shipped fake instead")
        proc = self.spawn(name, [self.python, "-m", "shared.fakes.ollama_server", "--port", "0", "--script", script])
        line = self.wait_line(proc, "http://")
        url = line[line.index("http://") :].split()[0]
        return url, "fake-coder:latest", False

    def start_sidecar(
        self, hub_url: str, agent_id: str, token: str, ollama_url: str, model: str, slot: int, git: dict[str, str]
    ) -> None:
        home = self.root / agent_id
        home.mkdir(parents=True, exist_ok=True)
        config = {
            "agent_id": agent_id,
            "token": token,
            "hub_url": hub_url,
            "capabilities": ["shell", "code"],
            "workspace_root": str(home / "workspaces"),
            "state_dir": str(home / "state"),
            "ollama_url": ollama_url,
            "models": [model],
            "git": git,
        }
        path = home / "sidecar.json"
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        self.spawn(
            agent_id,
            [self.python, "-m", "sidecar", "--config", str(path)],
            env={"AGENTCOM_SIDECAR_SANDBOX__UID_BASE": str(200_000 + 1000 * slot)},
        )


def summarise(tasks: list[dict[str, Any]]) -> tuple[str, bool]:
    rows = [("task", "agent", "status", "outcome", "tries", "secs")]
    ok = True
    for t in tasks:
        secs = ((t.get("completed_at") or t["updated_at"]) - t["created_at"]) / 1000
        rows.append(
            (
                t["description"][:46],
                t.get("assigned_to") or "-",
                t["status"],
                t.get("outcome") or "-",
                str(t["retry_count"] + (t["status"] != "dead_letter")),
                f"{secs:.1f}",
            )
        )
        ok = ok and t["status"] == "completed" and t.get("outcome") != "failed"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines), ok


GOAL = "Create hello.py printing hello, with a test for it that python3 can run."


def run_goal(http: httpx.Client, timeout_s: float) -> bool:
    """Submit the goal, follow it to a final status, print its phases (with durations) and its tasks."""
    goal = http.post("/api/goals", json={"description": GOAL, "checks": ["python3 test_hello.py prints PASS"]}).json()
    log(f"== submitted goal {goal['id']}: {GOAL}")
    goal = demo_git.follow_goal(http, goal["id"], timeout_s)
    demo_git.print_phases(goal)
    tasks = [http.get(f"/api/tasks/{t['task_id']}").json() for t in goal.get("tasks", [])]
    if tasks:
        table, _ = summarise(tasks)
        log("== tasks")
        log(table)
    return bool(goal["status"] == "complete")


def run_tasks(http: httpx.Client, model: str, timeout_s: float) -> bool:
    """Submit the hand-written batch of tasks (and one waiting for all of them), follow it, print a summary."""
    body: list[dict[str, Any]] = [
        {
            "description": d,
            "priority": p,
            "executor": "shell",
            "metadata": {"shell_command": c.replace("HUB_PORT", str(http.base_url.port))},
            "verification_steps": checks,
        }
        for d, c, p, checks in SHELL_TASKS
    ]
    body.append(
        {
            "description": HELLO_TASK,
            "priority": "high",
            "executor": "ollama",
            "complexity_tier": "standard",
            "max_verification_retries": 2,
            "metadata": {"model": model},
            "verification_steps": [
                {"type": "file_exists", "target": "hello.py"},
                {"type": "test_passes", "target": "python3 test_hello.py"},
            ],
        }
    )
    for task in body:
        task["goal_id"] = GOAL_ID
    ids = [t["task_id"] for t in http.post("/api/tasks/batch", json={"tasks": body}).json()["tasks"]]
    final = http.post(
        "/api/tasks",
        json={
            "description": "Sign off the batch once every other task is done",
            "goal_id": GOAL_ID,
            "executor": "shell",
            "metadata": {"shell_command": "echo all done > signed-off.txt"},
            "depends_on": ids,
            "verification_steps": [{"type": "file_exists", "target": "signed-off.txt"}],
        },
    ).json()
    ids.append(final["task_id"])
    log(
        f"== submitted {len(ids)} tasks for {GOAL_ID}: {len(SHELL_TASKS)} shell, 1 for the model, "
        "1 that waits for all of them"
    )
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        tasks = [http.get(f"/api/tasks/{i}").json() for i in ids]
        counts: dict[str, int] = {}
        for t in tasks:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        line = "  " + "  ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        if line != last:
            log(line)
            last = line
        if all(t["status"] in ("completed", "dead_letter", "cancelled") for t in tasks):
            break
        if time.monotonic() > deadline:
            log(f"  timed out after {timeout_s:.0f}s")
            break
        time.sleep(0.3)
    table, ok = summarise(tasks)
    log("== summary")
    log(table)
    hello = next(t for t in tasks if t["description"] == HELLO_TASK)
    steps = (hello.get("verification_report") or {}).get("checks", [])
    log(
        f"  model task: {hello.get('outcome')}; checks: "
        + (", ".join(f"{c['type']}={c['status']}" for c in steps) or "none ran")
    )
    trajectory = http.get(f"/api/tasks/{hello['id']}/trajectory").json()["events"]
    calls = [e["event"] for e in trajectory if e["kind"] == "tool_call"]
    log("  model task tool calls: " + (", ".join(c.get("tool_name", "?") for c in calls) or "none"))
    return ok


class Stopped(BaseException):
    """SIGTERM: the demo stops everything it started, as on Ctrl-C."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped


def _wait_for_stop() -> None:
    try:
        while True:
            signal.pause()
    except (KeyboardInterrupt, Stopped):
        log("== stopping")


def run_demo(args: argparse.Namespace) -> int:
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="agentcom-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    demo = Demo(root, sys.executable)
    scenario = None if args.tasks or args.scenario == "hello" else demo_git.SCENARIOS[args.scenario]
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        log(f"== AgentCom demo ({'tasks' if args.tasks else args.scenario})")
        hub_env: dict[str, str] = {}
        if not args.tasks:  # the hub's own model, to decompose and verify the goal
            script = scenario.hub_script if scenario else "goal_demo"
            hub_model_url, hub_model, _ = demo.start_model(script, "fake-ollama-hub")
            hub_env = {"AGENTCOM_HUB_MODEL_URL": hub_model_url, "AGENTCOM_HUB_MODEL": hub_model}
            log(f"  hub's model: {hub_model} at {hub_model_url}")
        forge_url, git_settings = None, {}
        if scenario is not None and scenario.forge:
            forge_url = demo.start_forge()
            git_settings = {"forge_url": forge_url, "forge_token": demo_git.FORGE_TOKEN}
            log(f"  forge: a fake GitHub at {forge_url} holding {calc_project.FORGE_REPO}")
        hub_url = demo.start_hub(hub_env)
        log(f"  hub: {hub_url}")
        http = httpx.Client(base_url=hub_url, headers={"Authorization": f"Bearer {demo.admin_token}"}, timeout=10)
        viewer = http.post("/admin/tokens", json={"agent_id": "demo-viewer", "role": "viewer"}).json()["token"]
        log(f"  dashboard: {hub_url}/dashboard#token={viewer}")
        ollama_url, model, real = demo.start_model("calc_fix" if scenario else "hello_world")
        log(
            f"  model: {model} at {ollama_url}"
            + ("" if real else "  (no Ollama reachable: the shipped fake Ollama replays a scripted trajectory)")
        )
        for slot, agent_id in enumerate(AGENTS):
            token = http.post("/admin/tokens", json={"agent_id": agent_id}).json()["token"]
            demo.start_sidecar(hub_url, agent_id, token, ollama_url, model, slot, git_settings)
        deadline = time.monotonic() + 60
        while len([a for a in http.get("/api/agents").json()["agents"] if a["status"] == "online"]) < len(AGENTS):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sidecars did not connect; see the logs in {root}")
            time.sleep(0.2)
        agents = http.get("/api/agents").json()["agents"]
        for a in agents:
            log(f"  agent {a['agent_id']}: online, sandbox {a.get('sandbox_level')}")
        if scenario is not None:
            bare = demo_git.make_repo(root / "repos")
            ok = demo_git.run_repo_goal(http, scenario, bare, args.timeout, forge_url)
        elif not args.tasks:
            ok = run_goal(http, args.timeout)
        else:
            ok = run_tasks(http, model, args.timeout)
        if args.data_dir or args.keep_files or args.keep_running:
            log(f"  logs and workspaces: {root}")
        if args.keep_running:
            log(f"== still running; open {hub_url}/dashboard#token={viewer} (Ctrl-C or SIGTERM to stop)")
            log(f"  admin: {hub_url}/dashboard#token={demo.admin_token}")
            _wait_for_stop()
        return 0 if ok else 1
    except (RuntimeError, httpx.HTTPError, subprocess.SubprocessError) as exc:
        log(f"demo failed: {exc}")
        return 1
    except (KeyboardInterrupt, Stopped):
        log("== interrupted: stopping everything the demo started")
        return 130
    finally:
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the cleanup runs to its end
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if not args.data_dir and not args.keep_files:
            shutil.rmtree(root, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="keep everything here (default: a temp dir removed at the end)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the work (default 180)")
    parser.add_argument(
        "--keep",
        "--keep-running",
        dest="keep_running",
        action="store_true",
        help="leave the fleet up for the dashboard",
    )
    parser.add_argument("--keep-files", action="store_true", help="do not delete the temp dir at the end")
    parser.add_argument("--tasks", action="store_true", help="submit the hand-written batch of tasks, not a goal")
    parser.add_argument(
        "--scenario",
        choices=["merge", "pr", "hello"],
        default="merge",
        help="merge: a goal fixes a failing test on a new git repository and merges it; pr: the same with review"
        " required (a pull request on a fake forge) and a change with a secret blocked; hello: the goal without a"
        " repository",
    )
