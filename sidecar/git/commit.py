"""After the executor: commit the task's work on its branch, bring the commit into the mirror and describe it.

The commit is made inside the sandbox (``git add -A`` then ``git commit``), as the sandboxed uid, so nothing the
task wrote into its tree's ``.git`` ever runs with the sidecar's rights. The mirror then fetches the tree's ``HEAD``
into ``refs/heads/<branch>`` (``upload-pack`` is safe on an untrusted repository), and the report (files, line
counts, the diff cut at :data:`shared.repos.DIFF_CHARS`) is computed in the mirror, whose config is the sidecar's.
"""

from __future__ import annotations

from pathlib import Path

from shared.repos import DIFF_CHARS, ChangeReport, FileStat, RepoCheckout
from sidecar.git.run import GitTimer, git
from sidecar.sandbox.base import Sandbox

COMMIT_TIMEOUT_S = 120.0
MESSAGE_CHARS = 4000
_COMMIT_SCRIPT = (
    'git add -A && if git diff --cached --quiet; then echo "nothing to commit"; '
    'else git commit --quiet --no-verify --no-gpg-sign -m "$AGENTCOM_COMMIT_MESSAGE"; fi'
)
_STATUS = {"A": "added", "M": "modified", "D": "deleted", "T": "modified", "R": "renamed", "C": "added"}
_SAFE_DIFF = ["--no-ext-diff", "--no-textconv", "--no-color", "--no-renames"]


class CommitFailed(Exception):
    """The commit could not be made in the sandbox."""


def commit_message(task_id: str, description: str) -> str:
    """``agentcom: <first line of the description>`` plus the task id and the full description."""
    first = (description.strip().splitlines() or ["(no description)"])[0][:72]
    return f"agentcom: {first}\n\nTask: {task_id}\n\n{description.strip()}"[:MESSAGE_CHARS]


async def commit_in_sandbox(
    sandbox: Sandbox, workspace: Path, *, task_id: str, description: str, agent_id: str, timer: GitTimer | None = None
) -> str:
    """Stage everything and commit it in the sandbox; returns the command's output.

    Raises:
        CommitFailed: git failed (the output says why).
    """
    email = f"{agent_id}@agentcom"
    env = {
        "GIT_AUTHOR_NAME": "AgentCom",
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": "AgentCom",
        "GIT_COMMITTER_EMAIL": email,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",  # HOME is the workspace: a .gitconfig in the repository is not ours
        # The task's own hooks do not decide whether its work is recorded.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "core.hooksPath",
        "GIT_CONFIG_VALUE_0": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "AGENTCOM_COMMIT_MESSAGE": commit_message(task_id, description),
    }
    done = await sandbox.run(["/bin/sh", "-c", _COMMIT_SCRIPT], workspace, timeout_s=COMMIT_TIMEOUT_S, env=env)
    if timer is not None:
        timer.ms += done.duration_ms
    if done.returncode != 0 or done.timed_out:
        raise CommitFailed(f"git commit failed in the sandbox (exit {done.returncode}): {done.stderr[-1000:]}")
    return done.stdout


async def import_head(mirror: Path, workspace: Path, branch: str, timer: GitTimer | None = None) -> str:
    """Fetch the tree's ``HEAD`` into the mirror's ``refs/heads/<branch>``; returns the commit id."""
    refspec = f"+HEAD:refs/heads/{branch}"
    # The tree belongs to the sandbox's uid: trust it for this read-only fetch, and only for it. A local fetch
    # drops ``-c`` settings before it starts upload-pack, so the exception goes into a config file of its own.
    trust = mirror.parent / f".trust-{mirror.name}.gitconfig"
    trust.write_text(f"[safe]\n\tdirectory = {workspace}\n\tdirectory = {workspace}/.git\n")
    try:
        await git(
            ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", str(workspace), refspec],
            cwd=mirror,
            env={"GIT_CONFIG_GLOBAL": str(trust)},
            timer=timer,
        )
    finally:
        trust.unlink(missing_ok=True)
    return (
        await git(["rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"], cwd=mirror, timer=timer)
    ).stdout.strip()


async def describe_change(
    mirror: Path, checkout: RepoCheckout, base: str, commit: str, timer: GitTimer | None = None
) -> ChangeReport:
    """The report of ``base..commit`` in the mirror (``commit`` None in the report when nothing changed)."""
    if commit == base:
        return ChangeReport(repo=checkout.name, branch=checkout.branch, base_commit=base)
    numstat = await git(["diff", *_SAFE_DIFF, "--numstat", "-z", base, commit], cwd=mirror, timer=timer)
    status = await git(["diff", *_SAFE_DIFF, "--name-status", "-z", base, commit], cwd=mirror, timer=timer)
    diff = await git(["diff", *_SAFE_DIFF, base, commit], cwd=mirror, timer=timer, output_bytes=DIFF_CHARS * 4 + 4)
    files = parse_stats(numstat.stdout, status.stdout)
    text = diff.stdout
    return ChangeReport(
        repo=checkout.name,
        branch=checkout.branch,
        base_commit=base,
        commit=commit,
        files=files[:5000],
        added=sum(f.added for f in files),
        removed=sum(f.removed for f in files),
        diff=text[:DIFF_CHARS],
        diff_truncated=len(text) > DIFF_CHARS or diff.truncated,
    )


def parse_stats(numstat: str, name_status: str) -> list[FileStat]:
    """Join ``diff --numstat -z`` and ``diff --name-status -z`` (without renames) into one stat per file."""
    statuses: dict[str, str] = {}
    fields = name_status.split("\0")
    for code, path in zip(fields[0::2], fields[1::2], strict=False):
        if code:
            statuses[path] = _STATUS.get(code[0], "modified")
    files = []
    for record in numstat.split("\0"):
        parts = record.split("\t", 2)
        if len(parts) != 3:
            continue
        added, removed, path = parts
        binary = added == "-"
        files.append(
            FileStat(
                path=path,
                added=0 if binary else int(added),
                removed=0 if binary else int(removed),
                status="binary" if binary else statuses.get(path, "modified"),  # type: ignore[arg-type]
            )
        )
    return files
