"""Verification checks against the real sandbox in real temporary workspaces."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from shared.payloads import VerificationReport
from sidecar.runtime.verification import VerificationStep, corrective_prompt, run_verification, timed_out_report
from tests.sidecar.conftest import searchable

PASSING_TEST = "import unittest\n\nclass T(unittest.TestCase):\n    def test_ok(self):\n        self.assertTrue(True)\n"
FAILING_TEST = PASSING_TEST.replace("True)", "False, 'deliberately broken')")
TAIL = "\n\nif __name__ == '__main__':\n    unittest.main()\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    searchable(tmp_path)
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("print('app')\n")
    return ws


def git(ws: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=ws, check=True, capture_output=True
    )


def committed(ws: Path) -> Path:
    git(ws, "init", "-q")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "init")
    return ws


async def verify(steps: list, ws: Path, sandbox, **kwargs) -> dict:
    """The report as it goes on the wire (JSON), for the table assertions."""
    report = await run_verification(steps, ws, sandbox, **kwargs)
    assert isinstance(report, VerificationReport)
    return report.model_dump(mode="json")


# (step, workspace preparation, expected check status)
CHECK_CASES = [
    ({"type": "file_exists", "target": "src/app.py"}, None, "pass"),
    ({"type": "file_exists", "target": "src/missing.py"}, None, "fail"),
    ({"type": "file_exists", "target": "../../etc/passwd"}, None, "error"),
    ({"type": "command_succeeds", "target": "test -f src/app.py && echo yes"}, None, "pass"),
    ({"type": "command_succeeds", "target": "grep -q absent src/app.py"}, None, "fail"),
    ({"type": "test_passes", "target": "python3 src/app.py"}, None, "pass"),
    ({"type": "test_passes", "target": "python3 -c 'raise SystemExit(1)'"}, None, "fail"),
    ({"type": "test_passes", "target": "auto"}, {"test_app.py": PASSING_TEST}, "pass"),
    ({"type": "test_passes", "target": "auto"}, {"test_app.py": FAILING_TEST}, "fail"),
    ({"type": "test_passes", "target": "auto"}, {"tests/test_deep.py": PASSING_TEST + TAIL}, "pass"),
    ({"type": "test_passes", "target": "auto"}, {"tests/test_deep.py": FAILING_TEST + TAIL}, "fail"),
    ({"type": "test_passes", "target": "auto"}, None, "fail"),
    ({"type": "git_clean", "target": ""}, "commit", "pass"),
    ({"type": "git_clean", "target": "."}, "dirty", "fail"),
    ({"type": "git_clean", "target": ""}, None, "error"),
    ({"type": "deploy_to_prod", "target": "now"}, None, "error"),
]


@pytest.mark.parametrize(("step", "prepare", "expected"), CHECK_CASES)
async def test_check_table(workspace: Path, sandbox, step: dict, prepare, expected: str) -> None:
    """Each check type passes and fails as the table says, and the report reflects the one check."""
    if isinstance(prepare, dict):
        for rel, text in prepare.items():
            (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
            (workspace / rel).write_text(text)
    elif prepare in ("commit", "dirty"):
        committed(workspace)
        if prepare == "dirty":
            (workspace / "src" / "app.py").write_text("print('changed')\n")
    report = await verify([step], workspace, sandbox)
    [check] = report["checks"]
    assert check["status"] == expected, check
    assert (check["type"], check["target"]) == (step["type"], step["target"])
    assert report["status"] == {"pass": "pass", "fail": "fail", "error": "error"}[expected]
    assert report["summary"]["total"] == 1
    assert isinstance(check["output"], str) and len(check["output"]) <= 2000


async def test_failing_auto_tests_show_why(workspace: Path, sandbox) -> None:
    """A failing auto test run names the runner and includes the test's failure message."""
    (workspace / "test_app.py").write_text(FAILING_TEST)
    report = await verify([{"type": "test_passes", "target": "auto"}], workspace, sandbox)
    output = report["checks"][0]["output"]
    assert output.startswith("$ python3 -m ")
    assert "deliberately broken" in output


@pytest.mark.parametrize(
    ("test_file", "runner"),
    [("test_app.py", "$ python3 -m unittest\n"), ("tests/test_deep.py", "$ python3 <each of 1 test files>\n")],
)
@pytest.mark.parametrize(("body", "expected"), [(PASSING_TEST, "pass"), (FAILING_TEST, "fail")])
async def test_auto_without_pytest(workspace: Path, sandbox, test_file: str, runner: str, body: str, expected: str):
    """Without pytest, auto runs unittest discovery, and runs test files directly when discovery finds none."""
    (workspace / "pytest.py").write_text("raise ImportError('pytest hidden by this workspace')\n")
    (workspace / test_file).parent.mkdir(exist_ok=True)
    (workspace / test_file).write_text(body + TAIL)
    report = await verify([{"type": "test_passes", "target": "auto"}], workspace, sandbox)
    assert report["checks"][0]["status"] == expected, report
    assert report["checks"][0]["output"].startswith(runner)


async def test_auto_tests_leave_tree_clean(workspace: Path, sandbox) -> None:
    """Running the auto test check leaves no caches behind, so a following git_clean still passes."""
    (workspace / "test_app.py").write_text(PASSING_TEST)
    committed(workspace)
    steps = [{"type": "test_passes", "target": "auto"}, {"type": "git_clean", "target": ""}]
    report = await verify(steps, workspace, sandbox)
    assert [c["status"] for c in report["checks"]] == ["pass", "pass"], report


async def test_hung_check_times_out_and_others_still_run(workspace: Path, sandbox) -> None:
    """A hung check is killed at its own timeout_s while the checks around it still run."""
    steps = [
        {"type": "file_exists", "target": "src/app.py", "description": "before"},
        {"type": "command_succeeds", "target": "echo waiting; sleep 60", "timeout_s": 1},
        {"type": "command_succeeds", "target": "true", "description": "after"},
    ]
    started = time.monotonic()
    report = await verify(steps, workspace, sandbox)
    assert time.monotonic() - started < 15
    assert [c["status"] for c in report["checks"]] == ["pass", "timeout", "pass"]
    assert report["checks"][1]["duration_ms"] < 10_000
    assert "timed out after 1 s" in report["checks"][1]["output"]
    assert report["status"] == "fail"
    assert report["summary"] == {"total": 3, "passed": 2, "failed": 0, "errors": 0, "timed_out": 1}


async def test_default_timeout_applies_per_check(workspace: Path, sandbox) -> None:
    """Without timeout_s a check uses the run's default_timeout_s."""
    steps = [{"type": "test_passes", "target": "sleep 60"}]
    report = await verify(steps, workspace, sandbox, default_timeout_s=1)
    assert report["checks"][0]["status"] == "timeout"


async def test_run_all_and_error_outranks_fail(workspace: Path, sandbox) -> None:
    """All steps run without fail-fast; an error anywhere makes the overall status error."""
    steps = [
        {"type": "command_succeeds", "target": "false"},
        {"type": "no_such_check", "target": "x"},
        {"type": "file_exists", "target": "src/app.py"},
    ]
    report = await verify(steps, workspace, sandbox, run_number=3)
    assert [c["status"] for c in report["checks"]] == ["fail", "error", "pass"]
    assert "unknown check type 'no_such_check'" in report["checks"][1]["output"]
    assert report["status"] == "error" and report["run_number"] == 3
    assert report["summary"] == {"total": 3, "passed": 1, "failed": 1, "errors": 1, "timed_out": 0}
    assert report["started_at"] > 1_600_000_000_000 and report["duration_ms"] >= 0


async def test_invalid_step_is_an_error_check(workspace: Path, sandbox) -> None:
    """A step missing its target becomes an error check naming the problem; the next step still runs."""
    report = await verify([{"type": "file_exists"}, {"type": "file_exists", "target": "src"}], workspace, sandbox)
    assert [c["status"] for c in report["checks"]] == ["error", "pass"]
    assert report["checks"][0]["output"] == "verification step 1: missing 'target'"


async def test_no_steps_is_unverified(workspace: Path, sandbox) -> None:
    """A task without verification steps gets an empty report whose outcome is unverified (no check ran)."""
    report = await verify([], workspace, sandbox)
    assert (report["outcome"], report["status"], report["checks"], report["skipped"]) == ("unverified", None, [], False)
    assert report["summary"] == {"total": 0, "passed": 0, "failed": 0, "errors": 0, "timed_out": 0}


async def test_skip_runs_nothing_and_is_unverified(workspace: Path, sandbox) -> None:
    """skip=True runs not even a failing step; the report says skipped, its outcome unverified."""
    report = await verify([{"type": "command_succeeds", "target": "false"}], workspace, sandbox, skip=True)
    assert (report["outcome"], report["checks"], report["skipped"]) == ("unverified", [], True)


OUTCOME_CASES = [
    ("every check passes", [{"type": "file_exists", "target": "src/app.py"},
                            {"type": "command_succeeds", "target": "true"}], "verified", "pass"),
    ("some pass", [{"type": "file_exists", "target": "src/app.py"},
                   {"type": "file_exists", "target": "src/missing.py"}], "partial_pass", "fail"),
    ("some pass, one errors", [{"type": "deploy_to_prod", "target": "x"},
                               {"type": "file_exists", "target": "src"}], "partial_pass", "error"),
    ("none passes", [{"type": "file_exists", "target": "src/missing.py"},
                     {"type": "command_succeeds", "target": "exit 3"}], "failed", "fail"),
    ("none can run", [{"type": "deploy_to_prod", "target": "x"}], "failed", "error"),
    ("no steps", [], "unverified", None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "steps", "outcome", "status"), OUTCOME_CASES, ids=[c[0] for c in OUTCOME_CASES])
async def test_the_report_decides_the_outcome(
    workspace: Path, sandbox, case: str, steps: list, outcome: str, status: str | None
) -> None:
    """The report's outcome is what its checks show: verified, partial_pass, failed, or unverified with none."""
    report = await run_verification(steps, workspace, sandbox)
    assert (report.outcome, report.status, report.verdict()) == (outcome, status, outcome), report
    assert [c.name for c in report.checks] == [f"{s['type']} {s['target']}" for s in steps]


def test_a_run_stopped_at_its_limit_is_failed() -> None:
    """A verification run stopped at its time limit reports one timed-out check: its outcome is failed."""
    report = timed_out_report(2, 7.5)
    assert (report.outcome, report.verdict(), report.status, report.run_number) == ("failed", "failed", "fail", 2)
    assert [(c.name, c.status) for c in report.checks] == [("verification", "timeout")]
    assert "7.5 s" in report.checks[0].output and report.timeout_ms == 7500


async def test_long_output_is_capped(workspace: Path, sandbox) -> None:
    """Check output is capped at 2000 characters, keeping the tail where test summaries are."""
    report = await verify([{"type": "command_succeeds", "target": "seq 1 20000; exit 1"}], workspace, sandbox)
    output = report["checks"][0]["output"]
    assert len(output) <= 2000 and output.rstrip().endswith("20000") and "truncated" in output


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"target": "x"}, "verification step 4: missing 'type'"),
        ({"type": "file_exists"}, "verification step 4: missing 'target'"),
        ({"type": "", "target": "x"}, "verification step 4: 'type': String should have at least 1 character"),
        ({"type": "git_clean", "target": "", "timeout_s": -1}, "verification step 4: 'timeout_s': Input should be"),
    ],
)
def test_step_validation_messages(raw: dict, message: str) -> None:
    """VerificationStep.parse explains exactly what is wrong with a step, naming its position."""
    with pytest.raises(ValueError) as info:
        VerificationStep.parse(raw, 4)
    assert str(info.value).startswith(message)


def test_step_accepts_original_shape() -> None:
    """Steps in the original shape parse, with a null description read as empty and extra keys ignored."""
    step = VerificationStep.parse({"type": "test_passes", "target": "auto", "description": None, "weight": 2})
    assert (step.type, step.target, step.description, step.timeout_s) == ("test_passes", "auto", "", None)


async def test_corrective_prompt(workspace: Path, sandbox) -> None:
    """The retry prompt is headed with the attempt, lists failures with capped output and passing checks to keep."""
    steps = [
        {"type": "command_succeeds", "target": "seq 1 5000; exit 1", "description": "lint"},
        {"type": "file_exists", "target": "src/app.py"},
    ]
    report = await run_verification(steps, workspace, sandbox)
    prompt = corrective_prompt(report, "Add a CLI to app.py", 2, 3, "I added it. " + "done " * 1000)
    assert "(status: partial_pass, 1 of 2 checks passed)" in prompt
    assert prompt.startswith("VERIFICATION RETRY 2/3\n")
    failed_part = prompt.split("Checks that did not pass")[1].split("Checks that passed")[0]
    assert "- command_succeeds `seq 1 5000; exit 1` (lint): FAIL" in failed_part
    assert 500 <= len(failed_part) < 650
    assert "- file_exists `src/app.py`" in prompt.split("Checks that passed (keep these passing):")[1]
    assert "Add a CLI to app.py" in prompt
    assert "I added it." in prompt and prompt.count("done") < 250
    assert prompt.rstrip().endswith("fix only what is broken.")
