"""Publication of a verified change: scan it, classify its tier, then push, merge fast-forward or open a pull request.

The runner calls :func:`publish` once a task's change is committed and verified. In order:

1. :func:`shared.review.classify` gives the tier and its reasons;
2. the full diff of the change (from git, not the report's cut copy) goes through :func:`shared.secret_scan.scan_diff`;
   ``checkout.publish == "none"`` stops here (the findings reported, nothing leaves the host); any finding blocks
   publication (``published="blocked"``), nothing is pushed; the binary files of that diff (which no scan reads)
   are classified again: outside the policy's ``binary_ok`` they make the change ``human_review``;
3. the task's branch is pushed, then
   - ``auto_merge``: the remote's default branch is moved to the commit, fast-forward only (a plain push, never
     forced); a refusal (the branch moved on) falls back to a pull request;
   - ``pull_request``: a pull request through the forge (when ``checkout.publish`` asks for one);
   - ``human_review``: a pull request labelled :data:`REVIEW_LABEL`, or only the push when there is no forge.

Every outcome is written back on the :class:`~shared.repos.ChangeReport`: tier, reasons, scan, ``published``,
``pr_url``, ``merged_commit``, ``publish_error``, ``git_ms``. git runs as an argument list with a timeout, in its own
process group, with an environment of its own (the caller's ``git_env`` for credentials, nothing inherited but
``PATH``, ``HOME`` and the ssh agent); its messages are cleaned of credentials before they reach a report or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.payloads import Outcome
from shared.repos import ChangeReport, RepoCheckout
from shared.review import classify, unreviewed_binaries
from shared.secret_scan import binary_files, describe, describe_unscanned, redact, scan_diff
from sidecar.git.forge import Forge, ForgeError

logger = logging.getLogger(__name__)

REVIEW_LABEL = "needs-human-review"
GIT_TIMEOUT_S = 120.0
MAX_DIFF_BYTES = 16_000_000
"""Largest diff the scan reads; a larger change is blocked (it cannot be cleared unread)."""
MAX_OUTPUT_BYTES = 64_000
MAX_PR_BODY_CHARS = 65_000
"""GitHub refuses a body above 65536 characters."""
_INHERITED = ("PATH", "HOME", "SSH_AUTH_SOCK", "SYSTEMROOT")
_SECRET_NAME = re.compile(r"(?i)token|password|passwd|secret|key|auth|credential")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_COMMIT = re.compile(r"[0-9a-f]{4,64}\Z")


class GitError(Exception):
    """A git command could not run or did not finish in time."""


@dataclass
class _Done:
    rc: int
    out: str
    err: str
    cut: bool = False
    """Whether stdout was longer than the limit and only its head is in ``out``."""


async def _read(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of ``stream``; the rest is read and dropped so the process never blocks on a pipe."""
    kept, cut = bytearray(), False
    while stream is not None and (chunk := await stream.read(65536)):
        room = limit - len(kept)
        kept += chunk[:room]
        cut = cut or len(chunk) > room
    return bytes(kept), cut


class _Git:
    """Runs git in one repository, with a timeout, an environment of its own, and a tally of the time spent."""

    def __init__(self, repo_dir: Path, git_env: Mapping[str, str] | None, timeout_s: float) -> None:
        self.repo_dir = repo_dir
        self.timeout_s = timeout_s
        self.env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        self.env |= {"LC_ALL": "C", "LANG": "C", "GIT_TERMINAL_PROMPT": "0", **(git_env or {})}
        self.secrets = [v for k, v in (git_env or {}).items() if _SECRET_NAME.search(k) and len(v) >= 4]
        self.ms = 0

    def clean(self, text: str, limit: int = 600) -> str:
        """``text`` without credentials (URL user info, the secret values of ``git_env``) or control characters."""
        text = _URL_CREDENTIALS.sub("***@", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _CONTROL.sub("", text).strip()[-limit:]

    async def run(self, *args: str, limit: int = MAX_OUTPUT_BYTES) -> _Done:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                "git", *args, cwd=self.repo_dir, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(self.timeout_s):
                (out, cut), (err, _) = await asyncio.gather(_read(proc.stdout, limit), _read(proc.stderr, limit))
                rc = await proc.wait()
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # git push may have started ssh or a remote helper
            await asyncio.shield(proc.wait())
            if isinstance(exc, TimeoutError):
                raise GitError(f"git {args[0]} did not finish within {self.timeout_s:g} s") from exc
            raise
        finally:
            self.ms += round((time.monotonic() - started) * 1000)
        return _Done(rc, out.decode(errors="replace"), err.decode(errors="replace"), cut)

    async def push(self, remote: str, refspec: str) -> str | None:
        """Push ``refspec``; None when it landed, else why not (git's own words, cleaned)."""
        done = await self.run("push", "--porcelain", "--no-verify", "--", remote, refspec)
        if done.rc == 0:
            return None
        refused = [line.split("\t")[-1] for line in done.out.splitlines() if line.startswith("!")]
        return self.clean("; ".join(refused) or done.err or f"git push exited with {done.rc}")


def _headline(summary_md: str, task_id: str) -> str:
    lines = (s.strip().lstrip("#").strip() for s in redact(summary_md).splitlines())
    line = next((s for s in lines if s), "")
    return f"AgentCom: {line}"[:200] if line else f"AgentCom task {task_id}"[:200]


def pull_request_body(change: ChangeReport, tier: str, reasons: list[str], *, task_id: str, summary_md: str) -> str:
    """The pull request's text: the task's summary (task, verification report, cost, as the runner wrote it, its
    secrets masked), the change and its files, the tier and every reason; at most :data:`MAX_PR_BODY_CHARS`."""
    base = change.base_commit + (f", rebased onto `{change.rebased_onto}`" if change.rebased_onto else "")
    files = [f"  - `{f.path}` (+{f.added} −{f.removed}, {f.status})" for f in change.files[:50]]
    more = [f"  - and {len(change.files) - 50} more"] if len(change.files) > 50 else []
    tail = "\n".join([
        "", "## Change",
        f"- Branch `{change.branch}`, commit `{change.commit}` on base `{base}`",
        f"- {len(change.files)} files, +{change.added} −{change.removed}", *files, *more,
        "", f"## Review tier: {tier}", *[f"- {reason}" for reason in reasons],
        "", f"<sub>Opened by AgentCom for task `{task_id}`.</sub>", "",
    ])  # fmt: skip
    room = max(0, MAX_PR_BODY_CHARS - len(tail) - 40)
    summary_md = redact(summary_md)  # a verification log may echo what the diff scan never saw
    summary = summary_md if len(summary_md) <= room else summary_md[:room] + "\n\n… (summary cut)"
    return (summary.rstrip() + "\n" + tail)[:MAX_PR_BODY_CHARS]


def _report(change: ChangeReport, git: _Git, **update: Any) -> ChangeReport:
    if update.get("publish_error"):
        update["publish_error"] = str(update["publish_error"])[:2000]
    update["tier_reasons"] = [reason[:512] for reason in update.get("tier_reasons", change.tier_reasons)][:50]
    update["git_ms"] = (change.git_ms or 0) + git.ms
    return ChangeReport.model_validate({**change.model_dump(), **update})


async def publish(
    repo_dir: Path, checkout: RepoCheckout, change: ChangeReport, outcome: Outcome, *, task_id: str,
    summary_md: str, forge: Forge | None, git_env: Mapping[str, str] | None = None, remote: str | None = None,
    timeout_s: float = GIT_TIMEOUT_S,
) -> ChangeReport:  # fmt: skip
    """Scan, classify and publish ``change`` (committed in ``repo_dir``) as ``checkout`` says; returns the report
    with the outcome. ``remote`` is where to push (the checkout's URL by default); ``git_env`` carries what git
    needs to reach it (a credential helper, ``GIT_SSH_COMMAND``). Never raises for a git or forge failure: it is
    reported as ``published="failed"`` (nothing landed) or in ``publish_error``."""
    git = _Git(repo_dir, git_env, timeout_s)
    if change.commit is None:
        return _report(change, git, published="no")
    tier, reasons = classify(change, outcome, checkout.review)
    base = change.rebased_onto or change.base_commit
    if not (_COMMIT.match(base) and _COMMIT.match(change.commit)):
        error = f"not commit ids: base {base[:80]!r}, commit {change.commit[:80]!r}"
        return _report(change, git, tier=tier, tier_reasons=reasons, published="failed", publish_error=error)
    try:
        done = await git.run("-c", "core.quotepath=false", "diff", "--no-color", "--no-ext-diff", "--no-textconv",
                             "--src-prefix=a/", "--dst-prefix=b/", f"{base}...{change.commit}", "--",
                             limit=MAX_DIFF_BYTES)  # fmt: skip
    except GitError as exc:
        return _report(change, git, tier=tier, tier_reasons=reasons, published="failed", publish_error=str(exc))
    if done.rc != 0 or done.cut:
        why = "the diff is too large to scan" if done.cut else f"git diff failed: {git.clean(done.err)}"
        logger.warning("task %s: publication blocked, %s", task_id, why)
        return _report(change, git, tier=tier, tier_reasons=reasons, published="blocked", publish_error=why)
    findings = scan_diff(done.out)
    binaries = binary_files(done.out)  # the scan cannot read them: outside binary_ok, a person reviews the change
    tier, reasons = classify(change, outcome, checkout.review, binary=binaries)
    unread = set(unreviewed_binaries(binaries, checkout.review))  # named by classify already
    if unscanned := describe_unscanned([path for path in binaries if path not in unread]):
        reasons = [*reasons, unscanned]  # an allowed binary file still goes unread: its reviewer is told so
    if checkout.publish == "none":  # nothing leaves the host; what the scan saw is still reported
        return _report(change, git, tier=tier, tier_reasons=reasons, scan=findings, published="no")
    if findings:
        why = f"publication blocked: the diff adds {len(findings)} secret(s) or private detail(s): {describe(findings)}"
        logger.warning("task %s: %s", task_id, why)
        return _report(change, git, tier=tier, tier_reasons=reasons, scan=findings, published="blocked",
                       publish_error=why)  # fmt: skip
    return await _land(git, remote or checkout.url, checkout, change, tier, reasons, task_id, summary_md, forge)


async def _land(
    git: _Git, remote: str, checkout: RepoCheckout, change: ChangeReport, tier: str, reasons: list[str],
    task_id: str, summary_md: str, forge: Forge | None,
) -> ChangeReport:  # fmt: skip
    """Push the branch, then merge or open the pull request its tier calls for."""
    result: dict[str, Any] = {"tier": tier, "tier_reasons": reasons}
    if checkout.branch == checkout.default_branch:
        error = f"the task's branch is the default branch {checkout.branch}: refusing to push onto it"
        return _report(change, git, **result, published="failed", publish_error=error)
    try:
        # The task owns its branch (agentcom/<task-id>): a later attempt of the same task replaces it.
        refused = await git.push(remote, f"+{change.commit}:refs/heads/{checkout.branch}")
        if refused is not None:
            error = f"push of {checkout.branch} refused: {refused}"
            logger.warning("task %s: %s", task_id, error)
            return _report(change, git, **result, published="failed", publish_error=error)
        if tier == "auto_merge":
            refused = await git.push(remote, f"{change.commit}:refs/heads/{checkout.default_branch}")
            if refused is None:
                logger.info("task %s: %s merged fast-forward into %s", task_id, change.commit, checkout.default_branch)
                return _report(change, git, **result, published="merged", merged_commit=change.commit)
            result["tier"] = "pull_request"
            result["tier_reasons"] = [*reasons, f"fast-forward of {checkout.default_branch} refused ({refused}): "
                                      "the change goes as a pull request instead"]  # fmt: skip
    except GitError as exc:
        return _report(change, git, **result, published="failed", publish_error=git.clean(str(exc)))
    review, fell_back = result["tier"] == "human_review", tier == "auto_merge"
    if checkout.publish == "push":  # this repository takes branches, not pull requests
        note = None
        if review:
            note = f"needs human review: the branch {checkout.branch} is pushed, no pull request (publish is push)"
        elif fell_back:
            note = f"fast-forward of {checkout.default_branch} refused: the branch {checkout.branch} is pushed"
        return _report(change, git, **result, published="pushed", publish_error=note)
    if forge is None or checkout.forge == "none" or not checkout.forge_repo:
        what = "needs human review and " if review else ""
        note = f"{what}no forge is set up for {checkout.name}: the branch {checkout.branch} is pushed, open its " \
               "pull request by hand"  # fmt: skip
        return _report(change, git, **result, published="pushed", publish_error=note)
    body = pull_request_body(change, result["tier"], result["tier_reasons"], task_id=task_id, summary_md=summary_md)
    try:
        url = await forge.open_pull_request(checkout.forge_repo, checkout.branch, checkout.default_branch,
                                            _headline(summary_md, task_id), body,
                                            labels=[REVIEW_LABEL] if review else [])  # fmt: skip
    except ForgeError as exc:
        error = f"the branch {checkout.branch} is pushed, the pull request failed: {git.clean(str(exc))}"
        logger.warning("task %s: %s", task_id, error)
        return _report(change, git, **result, published="pushed", publish_error=error)
    logger.info("task %s: pull request %s (%s)", task_id, url, result["tier"])
    return _report(change, git, **result, published="pull_request", pr_url=url)
