"""The demo's repository and scripted changes, without a fleet: the project's test fails as created and passes with
the scripted fix; the scripted deploy.cfg is what the secret scan blocks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scripts.demo_git import GIT_ENV, make_repo, run_tests
from shared.fakes import calc_project as calc
from shared.fakes.script import get_script
from shared.secret_scan import scan_diff


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def written(script: str) -> dict[str, str]:
    """The files a scripted trajectory writes, by path."""
    calls = [c for t in get_script(script).turns for c in t.tool_calls if c.name == "write_file"]
    return {c.arguments["path"]: c.arguments["content"] for c in calls}


def test_the_demo_repository_fails_its_test_and_the_scripted_fix_passes_it(tmp_path: Path) -> None:
    """make_repo gives a bare repo whose main fails the test command; main with calc_fix's calc.py passes it."""
    bare = make_repo(tmp_path / "repos")
    assert git("rev-parse", "--is-bare-repository", cwd=bare) == "true"
    assert git("ls-tree", "--name-only", "main", cwd=bare).split() == sorted(calc.FILES)
    passed, line = run_tests(bare)
    assert not passed and "add(2, 3) == -1" in line
    work = tmp_path / "work"
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    for path, content in written("calc_fix").items():
        (work / path).write_text(content)
    git("commit", "-qam", "fix", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    passed, line = run_tests(bare)
    assert passed and line == "ok: 2 tests passed"


def test_the_scripted_deploy_settings_are_blocked_by_the_secret_scan() -> None:
    """The deploy.cfg that calc_secret writes holds a github_token finding (not taken for a placeholder), and the
    plain fix holds none."""
    files = written("calc_secret")
    assert set(files) == {"calc.py", "deploy.cfg"}

    def diff(path: str, text: str) -> str:
        body = "".join(f"+{line}\n" for line in text.splitlines())
        return (
            f"diff --git a/{path} b/{path}\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(text.splitlines())} @@\n{body}"
        )

    [finding] = scan_diff(diff("deploy.cfg", files["deploy.cfg"]))
    assert (finding.kind, finding.path, finding.line) == ("github_token", "deploy.cfg", 3)
    assert calc.FAKE_TOKEN not in finding.excerpt
    assert scan_diff(diff("calc.py", written("calc_fix")["calc.py"])) == []
