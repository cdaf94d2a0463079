"""The review tiers: how a change may land, decided from its diff, its verification outcome and the repository's
:class:`~shared.repos.ReviewPolicy` (the original's tiered autonomy, with every reason stated).

- ``auto_merge``: only when the policy allows it, the outcome is ``verified``, the change is within
  ``max_auto_files`` and ``max_auto_lines``, touches no sensitive path, and changes a test when the policy asks for
  one. The sidecar then merges it fast-forward only.
- ``human_review``: above ``max_pr_files`` or ``max_pr_lines``, a sensitive path touched, a binary file added or
  changed outside the policy's ``binary_ok`` globs (the secret scan cannot read it: a person must), or an
  ``unverified`` or ``failed`` outcome.
- ``pull_request``: everything else.

Pure functions, no I/O: the sidecar calls :func:`classify` before it publishes, the hub may call it to explain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import PurePosixPath

from shared.payloads import Outcome
from shared.repos import ChangeReport, ReviewPolicy, Tier
from shared.secret_scan import binary_files

TEST_FILE_GLOBS = ("test_*.py", "*_test.py")
"""Base names of test files (a file under a ``tests/`` folder counts too)."""
TEST_DIRS = frozenset({"tests"})


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` as a regex: ``**`` spans folders (``a/**/b`` also matches ``a/b``), ``*`` and ``?`` stay inside
    one folder, ``[...]`` is a character class."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def path_matches(path: str, pattern: str) -> bool:
    """Whether the repository path ``path`` matches the glob ``pattern`` (fnmatch with ``**``). A pattern without a
    ``/`` matches the base name at any depth (``*.pem``), like a ``.gitignore`` line; a leading ``/`` anchors it at
    the root; a trailing ``/`` means everything under that folder."""
    path = path.lstrip("/")
    if pattern.endswith("/"):
        pattern += "**"
    if "/" not in pattern:
        return _glob_regex(pattern).match(PurePosixPath(path).name) is not None
    return _glob_regex(pattern.lstrip("/")).match(path) is not None


def is_test_path(path: str) -> bool:
    """Whether ``path`` is a test file: ``test_*.py``, ``*_test.py`` or anything under a ``tests/`` folder."""
    parts = PurePosixPath(path).parts
    return any(part in TEST_DIRS for part in parts[:-1]) or any(path_matches(path, g) for g in TEST_FILE_GLOBS)


def sensitive_paths(paths: Iterable[str], globs: Iterable[str]) -> list[str]:
    """The paths among ``paths`` that match one of the sensitive ``globs``, in order."""
    patterns = list(globs)
    return [path for path in paths if any(path_matches(path, glob) for glob in patterns)]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _listed(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def changed_binaries(change: ChangeReport) -> list[str]:
    """The binary files ``change`` adds or changes: read from its diff when the report carries all of it (a deleted
    file is left out), else every file its stats call binary (a deleted one too: unsure means unread)."""
    if change.diff and not change.diff_truncated:
        return binary_files(change.diff)
    return [stat.path for stat in change.files if stat.status == "binary"]


def unreviewed_binaries(paths: Iterable[str], policy: ReviewPolicy) -> list[str]:
    """The binary files among ``paths`` that no ``binary_ok`` glob of ``policy`` lets through, in order."""
    patterns = list(policy.binary_ok)
    return [path for path in paths if not any(path_matches(path, glob) for glob in patterns)]


def classify(
    change: ChangeReport, outcome: Outcome, policy: ReviewPolicy, binary: Iterable[str] | None = None
) -> tuple[Tier, list[str]]:
    """The tier of ``change`` under ``policy`` and the reasons for it, each one a sentence a reviewer can read.

    ``binary`` lists the binary files the change adds or changes (the publication passes those of the diff it
    scanned); by default they come from the report (:func:`changed_binaries`).

    The reasons of a ``human_review`` are what puts it there; those of a ``pull_request`` are what kept it from
    auto-merging; those of an ``auto_merge`` are the checks it passed.
    """
    paths = [stat.path for stat in change.files]
    n_files, n_lines = len(paths), change.added + change.removed
    size = f"{_plural(n_files, 'file')} and {_plural(n_lines, 'line')} changed"
    sensitive = sensitive_paths(paths, policy.sensitive_paths)
    tests = [path for path in paths if is_test_path(path)]
    unread = unreviewed_binaries(changed_binaries(change) if binary is None else binary, policy)

    human: list[str] = []
    if outcome in ("unverified", "failed"):
        human.append(f"verification outcome is {outcome}: a person must look at it")
    if n_files > policy.max_pr_files:
        human.append(f"{size}: {_plural(n_files, 'file')} is above the pull-request limit of {policy.max_pr_files}")
    if n_lines > policy.max_pr_lines:
        human.append(f"{size}: {_plural(n_lines, 'line')} is above the pull-request limit of {policy.max_pr_lines}")
    if sensitive:
        human.append(f"sensitive paths touched: {_listed(sensitive)}")
    if unread:
        human.append(f"binary file(s) not scanned: {_listed(unread)}")
    if human:
        return "human_review", human

    not_auto: list[str] = []
    if not policy.auto_merge:
        not_auto.append("auto-merge is off for this repository")
    if outcome != "verified":
        not_auto.append(f"verification outcome is {outcome}, auto-merge needs verified")
    if n_files > policy.max_auto_files:
        not_auto.append(f"{size}: {_plural(n_files, 'file')} is above the auto-merge limit of {policy.max_auto_files}")
    if n_lines > policy.max_auto_lines:
        not_auto.append(f"{size}: {_plural(n_lines, 'line')} is above the auto-merge limit of {policy.max_auto_lines}")
    if policy.require_tests_changed and not tests:
        not_auto.append("no test file changed, and auto-merge on this repository needs one")
    if not_auto:
        return "pull_request", not_auto

    passed = [
        "verification outcome is verified",
        f"{size}, within the auto-merge limits ({policy.max_auto_files} files, {policy.max_auto_lines} lines)",
        "no sensitive path touched",
    ]
    if policy.require_tests_changed:
        passed.append(f"tests changed: {_listed(tests)}")
    return "auto_merge", passed
