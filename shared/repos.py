"""The wire shapes of work on a git repository: what the hub tells a sidecar about the repository of a task
(:class:`RepoCheckout`, inside ``task_assign``), and what the sidecar reports back about the change it made
(:class:`ChangeReport`, inside the result of ``task_complete`` / ``task_failed``).

The hub owns the registry (names, URLs, policies); the sidecar owns the mirrors, worktrees, credentials and
publication. Neither shape ever carries a credential: a URL with a password in it is refused by the registry.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.fields import Count, NoControl, ShortText
from shared.payload_base import Payload, SafePayload

Tier = Literal["auto_merge", "pull_request", "human_review"]
"""How a change may land: merged fast-forward without a person, as a pull request, or only after a person reviewed
it (``needs_human_review``)."""
TIERS: tuple[Tier, ...] = ("auto_merge", "pull_request", "human_review")

GitUrl = Annotated[str, Field(min_length=1, max_length=1024), NoControl]
GitRef = Annotated[str, Field(min_length=1, max_length=255), NoControl]
PathGlob = Annotated[str, Field(min_length=1, max_length=512), NoControl]
DIFF_CHARS = 64_000
"""Longest diff a report carries; a longer one is cut (``diff_truncated``), the stats always cover all of it."""


class ReviewPolicy(Payload):
    """The thresholds of the review tiers, per repository (:func:`shared.review.classify` applies them)."""

    auto_merge: bool = False
    """Whether the auto-merge tier is allowed at all on this repository."""
    max_auto_files: Count = 5
    max_auto_lines: Count = 200
    """Lines added plus removed."""
    max_pr_files: Count = 40
    max_pr_lines: Count = 2000
    """Above these, a change needs a person (``human_review``)."""
    sensitive_paths: list[PathGlob] = []
    """Globs (``.github/**``, ``**/migrations/**``) a change may touch only under human review."""
    require_tests_changed: bool = False
    """Auto-merge only when the change also touches a test file."""
    binary_ok: Annotated[list[PathGlob], Field(max_length=200)] = []
    """Globs (``assets/**``, ``*.png``) of binary files a change may add or change without human review: the secret
    scan cannot read a binary file, so any other one puts the change in ``human_review``."""


class RepoCheckout(Payload):
    """The repository of a task, as the hub tells the sidecar (``task_assign.checkout``)."""

    name: ShortText
    url: GitUrl
    default_branch: GitRef = "main"
    base_commit: Annotated[str, Field(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$")] | None = None
    """The commit the hub chose for the task's worktree; None means the default branch's head when it is fetched."""
    branch: GitRef
    """The task's own branch, ``agentcom/<task-id>``."""
    test_command: Annotated[str, Field(max_length=4096)] | None = None
    """Run in the sandbox on the committed tree as a verification check."""
    review: ReviewPolicy = ReviewPolicy()
    publish: Literal["none", "push", "pull_request"] = "pull_request"
    """What to do with a verified change: keep it local, push the branch, or push it and open a pull request
    (auto-merge tier changes are merged fast-forward instead, when the policy allows it)."""
    forge: Literal["github", "none"] = "none"
    """The forge API the pull requests go through (the sidecar holds its token and base URL)."""
    forge_repo: ShortText | None = None
    """``owner/name`` on the forge."""


class FileStat(Payload):
    path: Annotated[str, Field(max_length=4096)]
    added: Count = 0
    removed: Count = 0
    status: Literal["added", "modified", "deleted", "renamed", "binary"] = "modified"


class ScanFinding(Payload):
    """One thing the pre-publication scan found in the diff (never the secret itself: its kind and place)."""

    kind: ShortText
    """``private_key``, ``aws_key``, ``github_token``, ``generic_secret``, ``personal_path``, ``internal_address``..."""
    path: Annotated[str, Field(max_length=4096)]
    line: Count
    excerpt: Annotated[str, Field(max_length=200)] = ""
    """The line with the secret masked."""


class ChangeReport(SafePayload):
    """The change a task made on its repository (``TaskResult.change``)."""

    repo: ShortText
    branch: GitRef
    base_commit: ShortText
    commit: ShortText | None = None
    """The commit on ``branch`` holding the change; None when the task changed nothing."""
    files: Annotated[list[FileStat], Field(max_length=5000)] = []
    added: Count = 0
    removed: Count = 0
    diff: Annotated[str, Field(max_length=DIFF_CHARS)] = ""
    diff_truncated: bool = False
    rebased_onto: ShortText | None = None
    """Set when the base had moved on and the change was rebased onto this commit."""
    conflict: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=1000)] | None = None
    """Files in conflict when the rebase failed (the task then fails with reason ``merge_conflict``)."""
    tier: Tier | None = None
    tier_reasons: Annotated[list[Annotated[str, Field(max_length=512)]], Field(max_length=50)] = []
    scan: Annotated[list[ScanFinding], Field(max_length=200)] = []
    """What blocked publication (empty when the scan passed)."""
    published: Literal["no", "pushed", "pull_request", "merged", "blocked", "failed"] = "no"
    pr_url: Annotated[str, Field(max_length=2048)] | None = None
    merged_commit: ShortText | None = None
    publish_error: Annotated[str, Field(max_length=2000)] | None = None
    git_ms: Count | None = None
    """Wall time spent in git operations for the task (mirror fetch, worktree, commit, rebase, push)."""
