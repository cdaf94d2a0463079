"""``agentcom demo`` on a real git repository, run as a subprocess: the merge scenario lands a verified fix on the
bare repository's main, the pull-request scenario opens a pull request on the fake forge and blocks a change holding
a secret, and SIGTERM stops every process the demo started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.demo_git import GIT_ENV
from shared.fakes import calc_project as calc
from tests.conftest import SCALE
from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


def env() -> dict[str, str]:
    """The test's environment without a real Ollama or hub settings (the demo uses its fakes)."""
    return {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST" and not k.startswith("AGENTCOM_")}


def demo_argv(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "scripts.agentcom", "demo", "--data-dir", str(data_dir), "--timeout", "120", *args]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def passes_tests(bare: Path, ref: str, tmp: Path) -> bool:
    """The repository's test command on a clone of ``ref``, run here (outside the demo)."""
    tree = tmp / f"check-{ref.replace('/', '-')}"
    git("clone", "-q", str(bare), str(tree), cwd=tmp)
    git("checkout", "-q", ref, cwd=tree)
    run = subprocess.run(["python3", "test_calc.py"], cwd=tree, capture_output=True, text=True, timeout=60)
    return run.returncode == 0


def descendants(pid: int) -> set[tuple[int, str]]:
    """Every live process below ``pid``, as (pid, start time) so a reused pid is not mistaken for one of them."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def alive(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    left = set()
    for pid, started in procs:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == started and fields[0] != "Z":
            left.add((pid, started))
    return left


def drawer_text(url: str, task_id: str, screenshot: Path) -> str:
    """Open the dashboard, click the task, open its diff; returns the drawer's text (and saves a screenshot)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        row = page.locator(f'#tasks tr[data-task-id="{task_id}"]')
        expect(row).to_be_visible(timeout=15_000)
        row.click()
        expect(page.locator("#detail-body [data-change]")).to_contain_text("merged", timeout=15_000)
        page.locator("#detail-body details summary", has_text="Diff").click()
        expect(page.locator("#detail-body pre.diff")).to_be_visible()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        text = page.locator("#detail-body").inner_text()
        browser.close()
    return text


def read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> str:
    """The demo's output up to and including the first line holding ``marker`` (fails on exit or timeout)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s * SCALE
    for line in proc.stdout:
        lines.append(line)
        if marker in line or "demo failed" in line or time.monotonic() > deadline:
            break
    out = "".join(lines)
    assert marker in out, out
    return out


@pytest.mark.timeout(300)
def test_merge_scenario_lands_the_verified_fix_on_main_and_sigterm_stops_everything(tmp_path: Path) -> None:
    """The goal's fix is committed on agentcom/<id>, verified and fast-forwarded into the bare repo's main (whose
    tests now pass); with --keep the demo stays up until SIGTERM, which stops every process it started."""
    data = tmp_path / "demo"
    proc = subprocess.Popen(
        demo_argv(data, "--keep"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), cwd=ROOT
    )
    try:
        out = read_until(proc, "(Ctrl-C or SIGTERM to stop)", 240)
        out += read_until(proc, "admin: ", 10)
        started = descendants(proc.pid)
        assert len(started) >= 5, started  # hub, two sidecars, two fake models
        task_id = re.search(r"task (task-[0-9a-f]+): completed/verified", out).group(1)  # type: ignore[union-attr]
        if CHROMIUM.exists():  # the change as a person sees it: the drawer with branch, tier, merge and the diff
            url = re.search(r"dashboard: (http://\S+/dashboard#token=\w+)", out).group(1)  # type: ignore[union-attr]
            drawer = drawer_text(url, task_id, ARTIFACTS / "dashboard-demo-git.png")
            for text in (
                f"agentcom/{task_id}",
                "auto_merge",
                "merged",
                "calc.py",
                "-    return a - b",
                "+    return a + b",
            ):
                assert text in drawer, drawer
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60 * SCALE)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + rest
    assert "== merge scenario: ok" in out and "  complete: 1/1 tasks" in out, out
    assert re.search(r"admin: http://127\.0\.0\.1:\d+/dashboard#token=\w+", out)
    phases = out.split("== phases", 1)[1].split("== tasks", 1)[0]
    assert [line.split()[0] for line in phases.strip().splitlines()] == [
        "submitted", "decomposing", "executing", "verifying", "complete",
    ]  # fmt: skip
    assert "tier auto_merge" in out and "published merged" in out
    bare = data / "repos" / "calc.git"
    main = git("rev-parse", "refs/heads/main", cwd=bare)
    assert f"merged into main: {main}" in out
    assert git("rev-parse", f"refs/heads/agentcom/{task_id}", cwd=bare) == main
    initial = git("rev-list", "--max-parents=0", "main", cwd=bare)
    assert git("rev-parse", f"{main}^", cwd=bare) == initial  # one commit, fast-forward: no merge commit
    assert f"Task: {task_id}" in git("log", "-1", "--format=%B", main, cwd=bare)
    assert git("show", f"{main}:calc.py", cwd=bare) + "\n" == calc.CALC_FIXED_PY
    assert git("diff", "--name-only", initial, main, cwd=bare).split() == ["calc.py"]
    assert passes_tests(bare, main, tmp_path) and not passes_tests(bare, initial, tmp_path)
    assert alive(started) == set(), "processes left running after SIGTERM"


@pytest.mark.timeout(300)
def test_pr_scenario_opens_a_pull_request_and_blocks_the_secret(tmp_path: Path) -> None:
    """With auto-merge off the fix becomes a pull request on the fake forge; the change holding a token-shaped string
    is blocked by the scan and never pushed; main does not move and the goal needs a person."""
    data = tmp_path / "demo"
    run = subprocess.run(
        demo_argv(data, "--scenario", "pr"),
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=240 * SCALE,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "== pr scenario: ok" in out and "needs_human_review: 2/2 tasks" in out, out
    fix_id = re.search(r"task (task-[0-9a-f]+): completed/verified .*Fix add\(\)", out).group(1)  # type: ignore[union-attr]
    secret_id = re.search(r"task (task-[0-9a-f]+): completed/verified .*deploy\.cfg", out).group(1)  # type: ignore[union-attr]
    assert re.search(rf"#1 agentcom/{fix_id} -> main \(open\): http://127\.0\.0\.1:\d+/acme/calc/pull/1", out), out
    assert "blocked by the secret scan: github_token in deploy.cfg:3" in out
    assert calc.FAKE_TOKEN not in out and calc.FAKE_TOKEN[4:20] not in out  # masked everywhere
    bare = data / "repos" / "calc.git"
    assert git("rev-list", "--count", "main", cwd=bare) == "1"
    branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=bare).split()
    assert sorted(branches) == sorted(["main", f"agentcom/{fix_id}"]) and f"agentcom/{secret_id}" not in branches
    assert passes_tests(bare, f"agentcom/{fix_id}", tmp_path)
    for log in data.glob("*.log"):
        assert calc.FAKE_TOKEN not in log.read_text(errors="replace"), log.name


@pytest.mark.timeout(200)
def test_sigterm_while_the_goal_runs_stops_everything_the_demo_started(tmp_path: Path) -> None:
    """SIGTERM in the middle of the run stops the hub, sidecars and fakes the demo started, and says so."""
    proc = subprocess.Popen(
        demo_argv(tmp_path / "demo"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), cwd=ROOT
    )
    try:
        out = read_until(proc, "registered as calc", 120)
        started = descendants(proc.pid)
        assert len(started) >= 5, started
        proc.send_signal(signal.SIGTERM)
        out += proc.communicate(timeout=60 * SCALE)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted: stopping everything the demo started" in out, out
    assert alive(started) == set(), "processes left running after SIGTERM"
