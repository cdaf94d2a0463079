"""The demo on a real git repository: a goal of one sentence carried to a verified merge (or a pull request).

:func:`make_repo` creates a bare repository (the demo's "remote") holding the calc project of
:mod:`shared.fakes.calc_project`, whose test fails; :func:`run_repo_goal` registers it at ``/api/repos`` with the
scenario's review policy, submits a goal naming it, follows the goal through its states and prints each phase, the
tasks with their change (branch, commit, tier, publication, git time), the costs, the repository's main before and
after (with the test command run on it) and, in the ``pr`` scenario, the pull requests on the fake forge. It returns
whether the scenario ended as it should. git runs as argument lists with a timeout and an environment of its own.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.fakes import calc_project as calc

GIT_TIMEOUT_S = 60
GOAL_FINAL = ("complete", "failed", "needs_human_review")
FORGE_TOKEN = "demo-forge-token"
GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "AgentCom demo",
    "GIT_AUTHOR_EMAIL": "demo@agentcom.invalid",
    "GIT_COMMITTER_NAME": "AgentCom demo",
    "GIT_COMMITTER_EMAIL": "demo@agentcom.invalid",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    hub_script: str
    """The script the hub's fake model replays (decomposition and verdict)."""
    goal: str
    auto_merge: bool
    forge: bool
    """Whether pull requests go to the fake forge (``forge_repo`` :data:`calc.FORGE_REPO`)."""
    expected: str
    """The goal's final status when the scenario went as it should."""


SCENARIOS = {
    "merge": Scenario("merge", "goal_calc", calc.GOAL, auto_merge=True, forge=False, expected="complete"),
    "pr": Scenario("pr", "goal_calc_pr", calc.GOAL_PR, auto_merge=False, forge=True, expected="needs_human_review"),
}


def log(msg: str) -> None:
    print(msg, flush=True)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
    ).stdout.strip()


def make_repo(root: Path, name: str = "calc") -> Path:
    """A bare repository ``root/<name>.git`` whose ``main`` holds the calc project (its test fails)."""
    root.mkdir(parents=True, exist_ok=True)
    seed, bare = root / f"{name}-seed", root / f"{name}.git"
    seed.mkdir()
    git("init", "-q", "-b", "main", cwd=seed)
    for path, text in calc.FILES.items():
        (seed / path).write_text(text)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "calc: a tiny calculator and its tests", cwd=seed)
    git("clone", "-q", "--bare", str(seed), str(bare), cwd=root)
    shutil.rmtree(seed)
    return bare


def run_tests(bare: Path, ref: str = "main") -> tuple[bool, str]:
    """The test command on a fresh clone of ``ref``: whether it passed, and its last line of output."""
    with tempfile.TemporaryDirectory(prefix="agentcom-demo-check-") as tmp:
        tree = Path(tmp) / "tree"
        git("clone", "-q", "--branch", ref, str(bare), str(tree), cwd=Path(tmp))
        env = {"PATH": GIT_ENV["PATH"], "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            shlex.split(calc.TEST_COMMAND), cwd=tree, env=env, capture_output=True, text=True, timeout=60
        )
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, (lines[-1] if lines else f"exit {done.returncode}")


def register(http: httpx.Client, scenario: Scenario, bare: Path, name: str = "calc") -> dict[str, Any]:
    """Register the repository with the scenario's review policy (auto-merge allowed or not)."""
    body: dict[str, Any] = {
        "name": name,
        "url": str(bare),
        "test_command": calc.TEST_COMMAND,
        "review": {"auto_merge": scenario.auto_merge},
        "publish": "pull_request",
    }
    if scenario.forge:
        body.update(forge="github", forge_repo=calc.FORGE_REPO)
    r = http.post("/api/repos", json=body)
    if r.status_code != 201:
        raise RuntimeError(f"registering the repository failed: {r.status_code} {r.text[:300]}")
    return dict(r.json())


def follow_goal(http: httpx.Client, goal_id: str, timeout_s: float) -> dict[str, Any]:
    """Poll the goal until it is final (or the time is up), printing each change of state and progress."""
    deadline, last = time.monotonic() + timeout_s, ""
    while True:
        goal: dict[str, Any] = http.get(f"/api/goals/{goal_id}").json()
        progress = goal.get("progress", {})
        line = f"  {goal['status']}: {progress.get('completed', 0)}/{progress.get('total', 0)} tasks"
        if line != last:
            log(line)
            last = line
        if goal["status"] in GOAL_FINAL:
            return goal
        if time.monotonic() > deadline:
            log(f"  timed out after {timeout_s:.0f}s")
            return goal
        time.sleep(0.3)


def print_phases(goal: dict[str, Any]) -> None:
    """The goal's states with the time spent in each (the last, final one has none)."""
    log("== phases")
    history = goal.get("history", [])
    for entry, after in zip(history, [*history[1:], None], strict=True):
        secs = f"{(after['at'] - entry['at']) / 1000:.1f}s" if after else ""
        log(f"  {entry['status']:<20} {secs:>7}  {entry['reason'][:100]}")


def print_task(task: dict[str, Any]) -> dict[str, Any] | None:
    """One task and its change; returns the change (None when the task reported none)."""
    secs = ((task.get("completed_at") or task["updated_at"]) - task["created_at"]) / 1000
    log(
        f"  task {task['id']}: {task['status']}/{task.get('outcome') or '-'} on {task.get('assigned_to') or '-'}"
        f" in {secs:.1f}s  {task['description'][:70]}"
    )
    checks = (task.get("verification_report") or {}).get("checks", [])
    for check in checks:
        said = [line for line in str(check.get("output") or "").splitlines() if line and not line.startswith("[")]
        log(
            f"    check {check.get('target', check['type'])!r}: {check['status']}"
            + (f" ({said[-1][:80]})" if said else "")
        )
    change = (task.get("result") or {}).get("change")
    if not isinstance(change, dict):
        log("    no change reported")
        return None
    files = ", ".join(f"{f['path']} +{f['added']} -{f['removed']}" for f in change.get("files", []))
    log(f"    branch {change['branch']}  commit {change.get('commit')}  files: {files or 'none'}")
    reasons = "; ".join(change.get("tier_reasons", []))
    log(f"    tier {change.get('tier')} ({reasons[:160]})  published {change.get('published')}")
    if change.get("merged_commit"):
        log(f"    merged into main: {change['merged_commit']}")
    if change.get("pr_url"):
        log(f"    pull request: {change['pr_url']}")
    for finding in change.get("scan", []):
        log(f"    blocked by the secret scan: {finding['kind']} in {finding['path']}:{finding['line']}")
    if change.get("publish_error"):
        log(f"    publication: {change['publish_error'][:200]}")
    log(f"    git: {change.get('git_ms')} ms")
    return dict(change)


def print_costs(http: httpx.Client, goal_id: str, task_ids: list[str]) -> None:
    """The goal's and its tasks' model calls, tokens and cost from the ledger."""
    log("== cost")
    for dimension, keys in (("goal", [goal_id]), ("task", task_ids), ("hub_state", None)):
        rows = http.get("/api/costs", params={"group_by": dimension}).json().get("groups", [])
        for row in rows:
            if keys is None or row["key"] in keys:
                log(
                    f"  {dimension} {row['key']}: {row['calls']} calls, {row['tokens_in']} tokens in,"
                    f" {row['tokens_out']} out, ${row['usd']:.4f}"
                )


def pull_requests(forge_url: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{forge_url}/repos/{calc.FORGE_REPO}/pulls",
        params={"state": "all"},
        headers={"Authorization": f"Bearer {FORGE_TOKEN}"},
        timeout=10,
    )
    r.raise_for_status()
    return list(r.json())


def run_repo_goal(
    http: httpx.Client, scenario: Scenario, bare: Path, timeout_s: float, forge_url: str | None = None
) -> bool:
    """Register the repository, submit the goal, follow it, print what happened; whether it went as it should."""
    before = git("rev-parse", "main", cwd=bare)
    passed_before, line = run_tests(bare)
    log(f"== repository {bare}: main at {before[:12]}; {calc.TEST_COMMAND}: {'pass' if passed_before else 'FAIL'}")
    log(f"  {line}")
    spec = register(http, scenario, bare)
    log(f"  registered as {spec['name']}: review auto_merge={scenario.auto_merge}, forge={spec['forge']}")
    started = time.monotonic()
    body = {"description": scenario.goal, "repo": spec["name"], "checks": [f"{calc.TEST_COMMAND} passes on main"]}
    goal = http.post("/api/goals", json=body).json()
    log(f"== goal {goal['id']}: {scenario.goal}")
    goal = follow_goal(http, goal["id"], timeout_s)
    print_phases(goal)
    log("== tasks")
    ids = [t["task_id"] for t in goal.get("tasks", [])]
    changes = [print_task(http.get(f"/api/tasks/{t}").json()) for t in ids]
    print_costs(http, goal["id"], ids)
    after = git("rev-parse", "main", cwd=bare)
    passed_after, line = run_tests(bare)
    log(f"== main {before[:12]} -> {after[:12]}; {calc.TEST_COMMAND}: {'pass' if passed_after else 'FAIL'}")
    log(f"  {line}")
    for entry in git("log", "--format=%h %s", "-3", "main", cwd=bare).splitlines():
        log(f"  {entry}")
    problems = [] if goal["status"] == scenario.expected else [f"the goal is {goal['status']}"]
    if scenario.name == "merge":
        merged = [c for c in changes if c and c.get("published") == "merged" and c.get("merged_commit") == after]
        if not merged or not passed_after:
            problems.append("main did not advance to a verified commit whose tests pass")
    else:
        prs = pull_requests(forge_url) if forge_url else []
        log("== pull requests on the forge")
        for pr in prs:
            log(f"  #{pr['number']} {pr['head']['ref']} -> {pr['base']['ref']} ({pr['state']}): {pr['html_url']}")
        if after != before:
            problems.append("main moved without review")
        if not any(c and c.get("published") == "pull_request" for c in changes) or not prs:
            problems.append("no pull request was opened")
        if not any(c and c.get("published") == "blocked" and c.get("scan") for c in changes):
            problems.append("the change with a secret was not blocked")
    log(f"== {scenario.name} scenario: {'ok' if not problems else 'FAILED: ' + '; '.join(problems)}")
    log(f"  {time.monotonic() - started:.1f}s from goal to result")
    return not problems
