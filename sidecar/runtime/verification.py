"""Mechanical verification of a finished task: run its ``verification_steps`` in the workspace and report.

A step is ``{type, target, description?, timeout_s?}``; types are ``file_exists``, ``test_passes``, ``git_clean`` and
``command_succeeds``. Every step runs (no fail-fast) in the workspace through the sandbox, each with its own timeout,
so a hung check is killed and the remaining ones still run. Check statuses are pass, fail, error (the check could
not be evaluated: unknown type, invalid step, target outside the workspace) and timeout. The report (a
:class:`~shared.payloads.VerificationReport`) says the outcome its checks show, the one decision the task's outcome
comes from: ``verified`` when every check passed, ``partial_pass`` when some did, ``failed`` when none did, and
``unverified`` when no check ran (no steps, or ``skip=True``). Its ``status`` aggregates the checks: error if any
errored, else fail if any failed or timed out, else pass (absent when none ran). ``corrective_prompt`` turns a report
that did not pass into the next attempt's instructions.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import os
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.payloads import Check, CheckStatus, CheckSummary, VerificationReport, outcome_from_checks
from sidecar.sandbox.base import Completed, Sandbox, SandboxViolation, resolve_in_workspace
from sidecar.sandbox.output import cap_text, format_completed

logger = logging.getLogger(__name__)

CHECK_OUTPUT_CHARS = 2000
RETRY_CHECK_OUTPUT_CHARS = 500
RETRY_PREVIOUS_OUTPUT_CHARS = 1000
TIMEOUT_GRACE_S = 5.0
"""Extra time before the check itself is cancelled, should the sandbox fail to enforce its own timeout."""
TEST_FILE_PATTERNS = ("test_*.py", "*_test.py")
TEST_SEARCH_SKIP_DIRS = frozenset({"node_modules", "__pycache__", "venv", "site-packages"})
NO_BYTECODE = "PYTHONDONTWRITEBYTECODE=1"
"""Test runs must not leave ``__pycache__`` behind, or a later git_clean check would fail on them."""


class VerificationStep(BaseModel):
    """One mechanical check, as listed in a task's ``verification_steps``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(min_length=1)
    """file_exists | test_passes | git_clean | command_succeeds."""
    target: str
    """A path relative to the workspace, a shell command, or "auto" (test_passes); "" means the workspace root."""
    description: str = ""
    timeout_s: float | None = Field(default=None, gt=0, le=3600)
    """Overrides the run's default per-check timeout."""

    @field_validator("description", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | VerificationStep, number: int = 1) -> VerificationStep:
        """Validate one step; the ``ValueError`` names the step and each problem ("step 2: missing 'target'")."""
        if isinstance(raw, VerificationStep):
            return raw
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = []
            for err in exc.errors(include_url=False):
                field = ".".join(str(part) for part in err["loc"]) or "step"
                problems.append(f"missing '{field}'" if err["type"] == "missing" else f"'{field}': {err['msg']}")
            raise ValueError(f"verification step {number}: {'; '.join(problems)}") from None


class CheckTimedOut(Exception):
    def __init__(self, output: str = "") -> None:
        super().__init__("check timed out")
        self.output = output


class CheckContext:
    """What a check may use: the workspace, and the sandbox under a deadline shared by all its commands."""

    def __init__(self, workspace: Path, sandbox: Sandbox, timeout_s: float) -> None:
        self.workspace, self.sandbox = workspace, sandbox
        self.deadline = time.monotonic() + timeout_s

    async def run(self, argv: list[str], cwd: Path | None = None) -> Completed:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise CheckTimedOut()
        done = await self.sandbox.run(argv, self.workspace, cwd=cwd or self.workspace, timeout_s=remaining)
        if done.timed_out:
            raise CheckTimedOut(format_completed(done))
        return done

    async def sh(self, command: str) -> Completed:
        return await self.run(["/bin/sh", "-c", command])


CheckResult = tuple[CheckStatus, str]
"""(status, output)."""


async def check_file_exists(step: VerificationStep, ctx: CheckContext) -> CheckResult:
    if resolve_in_workspace(ctx.workspace, step.target).exists():
        return "pass", f"{step.target} exists"
    return "fail", f"{step.target} does not exist"


async def check_command_succeeds(step: VerificationStep, ctx: CheckContext) -> CheckResult:
    done = await ctx.sh(step.target)
    return ("pass" if done.returncode == 0 else "fail"), format_completed(done)


async def check_git_clean(step: VerificationStep, ctx: CheckContext) -> CheckResult:
    directory = resolve_in_workspace(ctx.workspace, step.target or ".")
    # The workspace may belong to another uid than the sandboxed git; the command line is trusted config.
    done = await ctx.run(["git", "-c", "safe.directory=*", "status", "--porcelain"], directory)
    if done.returncode != 0:
        return "error", format_completed(done)
    if done.stdout.strip():
        return "fail", f"uncommitted changes:\n{done.stdout.rstrip()}"
    return "pass", "working tree clean"


async def check_test_passes(step: VerificationStep, ctx: CheckContext) -> CheckResult:
    if step.target.strip() != "auto":
        done = await ctx.sh(step.target)
        return ("pass" if done.returncode == 0 else "fail"), f"$ {step.target}\n{format_completed(done)}"
    files = find_test_files(ctx.workspace)
    if not files:
        return "fail", f"no test files found (looked for {' and '.join(TEST_FILE_PATTERNS)})"
    if (await ctx.run(["python3", "-c", "import pytest"])).returncode == 0:
        command = "python3 -m pytest -q -p no:cacheprovider"
        done = await ctx.sh(f"{NO_BYTECODE} {command}")
    else:
        command = "python3 -m unittest"
        done = await ctx.sh(f"{NO_BYTECODE} {command}")
        if "Ran 0 tests" in done.stderr or "NO TESTS RAN" in done.stderr:
            command = f"python3 <each of {len(files)} test files>"
            quoted = " ".join(shlex.quote(f) for f in files)
            done = await ctx.sh(
                f'export {NO_BYTECODE}; rc=0; for f in {quoted}; do echo "== $f"; python3 "$f" || rc=1; done; exit $rc'
            )
    return ("pass" if done.returncode == 0 else "fail"), f"$ {command}\n{format_completed(done)}"


CHECKS: dict[str, Callable[[VerificationStep, CheckContext], Awaitable[CheckResult]]] = {
    "file_exists": check_file_exists,
    "test_passes": check_test_passes,
    "git_clean": check_git_clean,
    "command_succeeds": check_command_succeeds,
}


def find_test_files(workspace: Path, limit: int = 200) -> list[str]:
    """Python test files under ``workspace`` (relative paths), skipping hidden and vendored directories."""
    found: list[str] = []
    for directory, subdirs, files in os.walk(workspace):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in TEST_SEARCH_SKIP_DIRS)
        for name in sorted(files):
            if any(fnmatch.fnmatch(name, pattern) for pattern in TEST_FILE_PATTERNS):
                found.append(Path(directory, name).relative_to(workspace).as_posix())
        if len(found) >= limit:
            return found[:limit]
    return found


async def run_check(step: VerificationStep, workspace: Path, sandbox: Sandbox, timeout_s: float) -> CheckResult:
    """Run one check under its own timeout; never raises."""
    check = CHECKS.get(step.type)
    if check is None:
        return "error", f"unknown check type {step.type!r}; known types: {', '.join(CHECKS)}"
    try:
        async with asyncio.timeout(timeout_s + TIMEOUT_GRACE_S):
            return await check(step, CheckContext(workspace, sandbox, timeout_s))
    except CheckTimedOut as exc:
        return "timeout", f"check timed out after {timeout_s:g} s and was killed\n{exc.output}".rstrip()
    except TimeoutError:
        return "timeout", f"check timed out after {timeout_s:g} s and was cancelled"
    except SandboxViolation as exc:
        return "error", f"target is outside the workspace: {exc}"
    except Exception as exc:
        logger.exception("verification check %s crashed", step.type)
        return "error", f"{type(exc).__name__}: {exc}"


async def run_verification(
    steps: Sequence[Mapping[str, Any] | VerificationStep],
    workspace: Path,
    sandbox: Sandbox,
    *,
    run_number: int = 1,
    skip: bool = False,
    default_timeout_s: float = 60.0,
) -> VerificationReport:
    """Run every step in order and return the verification report (see the module docstring)."""
    workspace = Path(workspace).resolve()
    started_at, started = int(time.time() * 1000), time.monotonic()
    if skip or not steps:
        return report_of([], run_number=run_number, started_at=started_at, duration_ms=0, skipped=skip)
    checks = []
    for number, raw in enumerate(steps, start=1):
        check_started = time.monotonic()
        status: CheckStatus
        try:
            step = VerificationStep.parse(raw, number)
        except ValueError as exc:
            raw_fields = raw if isinstance(raw, Mapping) else {}
            step = VerificationStep.model_construct(
                type=str(raw_fields.get("type", "")), target=str(raw_fields.get("target", "")), description=""
            )
            status, output = "error", str(exc)
        else:
            status, output = await run_check(step, workspace, sandbox, step.timeout_s or default_timeout_s)
        checks.append(
            Check(
                name=step.description or f"{step.type} {step.target}".strip(),
                type=step.type,
                target=step.target,
                description=step.description,
                status=status,
                output=cap_text(output, CHECK_OUTPUT_CHARS),
                duration_ms=int((time.monotonic() - check_started) * 1000),
            )
        )
    duration_ms = int((time.monotonic() - started) * 1000)
    return report_of(checks, run_number=run_number, started_at=started_at, duration_ms=duration_ms)


def report_of(
    checks: list[Check],
    *,
    run_number: int,
    started_at: int | None = None,
    duration_ms: int = 0,
    skipped: bool = False,
    timeout_ms: int | None = None,
) -> VerificationReport:
    """The report on ``checks``: the outcome they show, their aggregate status and counts."""

    def count(name: str) -> int:
        return sum(check.status == name for check in checks)

    statuses = {check.status for check in checks}
    status = (
        None
        if not checks
        else "error"
        if "error" in statuses
        else ("fail" if statuses & {"fail", "timeout"} else "pass")
    )
    summary = CheckSummary(
        total=len(checks), passed=count("pass"), failed=count("fail"), errors=count("error"), timed_out=count("timeout")
    )
    return VerificationReport(
        outcome=outcome_from_checks(check.status for check in checks),
        status=status,
        checks=checks,
        skipped=skipped,
        summary=summary,
        run_number=run_number,
        started_at=started_at,
        duration_ms=duration_ms,
        timeout_ms=timeout_ms,
    )


def timed_out_report(run_number: int, timeout_s: float) -> VerificationReport:
    """The report of a run stopped at its time limit before it finished: one ``verification`` check, timed out."""
    check = Check(
        name="verification",
        status="timeout",
        output=f"verification did not finish within {timeout_s:g} s and was stopped",
    )
    return report_of(
        [check], run_number=run_number, duration_ms=int(timeout_s * 1000), timeout_ms=int(timeout_s * 1000)
    )


# --- the retry prompt ----------------------------------------------------------------------------------------------


@functools.cache
def _retry_template() -> str:
    prompts = Path(__file__).parents[1] / "agent" / "prompts"  # the agent's prompts live together
    return prompts.joinpath("verification_retry.txt").read_text(encoding="utf-8")


def _check_label(check: Check) -> str:
    label = f"{check.type or '?'} `{check.target}`" if check.target else str(check.type or check.name or "?")
    return f"{label} ({check.description})" if check.description else label


def corrective_prompt(
    report: VerificationReport, original_description: str, attempt: int, max_attempts: int, previous_output: str
) -> str:
    """The instructions for retry ``attempt`` of ``max_attempts`` after ``report`` did not pass."""
    failed, passed = [], []
    for check in report.checks:
        if check.status == "pass":
            passed.append(f"- {_check_label(check)}")
            continue
        output = cap_text((check.output or "(no output)").strip(), RETRY_CHECK_OUTPUT_CHARS)
        failed.append(f"- {_check_label(check)}: {check.status.upper()}\n```\n{output}\n```")
    total = len(report.checks)
    return _retry_template().format(
        attempt=attempt,
        max_attempts=max_attempts,
        status=report.verdict(),
        summary=f"{total - len(failed)} of {total} checks passed",
        failed_checks="\n".join(failed) or "- (no individual check failed)",
        passed_checks="\n".join(passed) or "- (none)",
        original_description=original_description.strip() or "(no description)",
        previous_output=cap_text(previous_output.strip(), RETRY_PREVIOUS_OUTPUT_CHARS) or "(none)",
    )
