"""The review tiers: a table of changes, outcomes and policies, and the tier and reasons each one gets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.payloads import OUTCOMES, Outcome
from shared.repos import ChangeReport, FileStat, ReviewPolicy, Tier
from shared.review import classify, is_test_path, path_matches


def change(*paths: str, lines: int = 10) -> ChangeReport:
    files = [FileStat(path=p, added=lines // max(len(paths), 1)) for p in paths]
    return ChangeReport(repo="demo", branch="agentcom/t1", base_commit="abc1234", commit="def5678", files=files,
                        added=lines, removed=0)  # fmt: skip


AUTO = ReviewPolicy(auto_merge=True)
STRICT = ReviewPolicy(auto_merge=True, require_tests_changed=True, sensitive_paths=[".github/**", "**/migrations/**"])
SMALL_PR = ReviewPolicy(auto_merge=True, max_pr_files=3, max_pr_lines=100)

CASES: list[tuple[str, ChangeReport, Outcome, ReviewPolicy, Tier, list[str]]] = [
    ("small verified change", change("app.py"), "verified", AUTO, "auto_merge", ["within the auto-merge limits"]),
    ("auto-merge off", change("app.py"), "verified", ReviewPolicy(), "pull_request", ["auto-merge is off"]),
    ("partial pass", change("app.py"), "partial_pass", AUTO, "pull_request", ["outcome is partial_pass"]),
    ("unverified", change("app.py"), "unverified", AUTO, "human_review", ["outcome is unverified"]),
    ("failed", change("app.py"), "failed", AUTO, "human_review", ["outcome is failed"]),
    (
        "too many files for auto",
        change(*[f"m{i}.py" for i in range(6)]),
        "verified",
        AUTO,
        "pull_request",
        ["6 files is above the auto-merge limit of 5"],
    ),
    (
        "too many lines for auto",
        change("app.py", lines=201),
        "verified",
        AUTO,
        "pull_request",
        ["201 lines is above the auto-merge limit of 200"],
    ),
    (
        "exactly at the auto limits",
        change(*[f"m{i}.py" for i in range(5)], lines=200),
        "verified",
        AUTO,
        "auto_merge",
        ["5 files and 200 lines changed"],
    ),
    (
        "too many files for a PR",
        change(*[f"m{i}.py" for i in range(4)]),
        "verified",
        SMALL_PR,
        "human_review",
        ["4 files is above the pull-request limit of 3"],
    ),
    (
        "too many lines for a PR",
        change("app.py", lines=101),
        "verified",
        SMALL_PR,
        "human_review",
        ["101 lines is above the pull-request limit of 100"],
    ),
    (
        "sensitive workflow",
        change(".github/workflows/ci.yml", "tests/test_ci.py"),
        "verified",
        STRICT,
        "human_review",
        ["sensitive paths touched: .github/workflows/ci.yml"],
    ),
    (
        "sensitive nested migration",
        change("app/db/migrations/0002.sql", "tests/test_db.py"),
        "verified",
        STRICT,
        "human_review",
        ["app/db/migrations/0002.sql"],
    ),
    ("tests required, none changed", change("app.py"), "verified", STRICT, "pull_request", ["no test file changed"]),
    (
        "tests required, test_*.py changed",
        change("app.py", "test_app.py"),
        "verified",
        STRICT,
        "auto_merge",
        ["tests changed: test_app.py"],
    ),
    (
        "tests required, *_test.py changed",
        change("app.py", "pkg/app_test.py"),
        "verified",
        STRICT,
        "auto_merge",
        ["tests changed: pkg/app_test.py"],
    ),
    (
        "tests required, tests/ changed",
        change("app.py", "tests/data.json"),
        "verified",
        STRICT,
        "auto_merge",
        ["tests changed: tests/data.json"],
    ),
    (
        "several reasons stated",
        change(*[f"m{i}.py" for i in range(7)], lines=500),
        "partial_pass",
        ReviewPolicy(),
        "pull_request",
        ["auto-merge is off", "partial_pass", "7 files", "500 lines"],
    ),
    (
        "human reasons add up",
        change(".github/x.yml", lines=101),
        "failed",
        SMALL_PR,
        "human_review",
        ["outcome is failed", "101 lines"],
    ),
]


@pytest.mark.parametrize(("name", "report", "outcome", "policy", "tier", "expected"), CASES, ids=[c[0] for c in CASES])
def test_classify_table(name: str, report: ChangeReport, outcome: Outcome, policy: ReviewPolicy, tier: Tier,
                        expected: list[str]) -> None:  # fmt: skip
    """Each change gets the tier of the table, and every expected reason is stated."""
    got_tier, reasons = classify(report, outcome, policy)
    assert got_tier == tier
    for words in expected:
        assert any(words in reason for reason in reasons), (words, reasons)


def test_every_failed_rule_is_a_reason() -> None:
    """A change kept from auto-merge for five causes names all five, one reason each."""
    policy = ReviewPolicy(auto_merge=False, require_tests_changed=True)
    _, reasons = classify(change(*[f"m{i}.py" for i in range(6)], lines=300), "partial_pass", policy)
    assert len(reasons) == 5


@pytest.mark.parametrize(
    ("path", "pattern", "matches"),
    [
        (".github/workflows/ci.yml", ".github/**", True),
        ("src/.github/x", ".github/**", False),
        ("db/migrations/1.sql", "**/migrations/**", True),
        ("migrations/1.sql", "**/migrations/**", True),
        ("a/b/c/migrations/x/y.sql", "**/migrations/**", True),
        ("migrations_old/1.sql", "**/migrations/**", False),
        ("keys/server.pem", "*.pem", True),
        ("server.pem", "*.pem", True),
        ("src/app.py", "src/*.py", True),
        ("src/sub/app.py", "src/*.py", False),
        ("src/sub/app.py", "src/**/*.py", True),
        ("src/app.py", "src/**/*.py", True),
        ("Dockerfile", "/Dockerfile", True),
        ("deploy/Dockerfile", "/Dockerfile", False),
        ("infra/main.tf", "infra/", True),
        ("config1.yml", "config[0-9].yml", True),
        ("configa.yml", "config[!0-9].yml", True),
        ("config1.yml", "config[!0-9].yml", False),
        ("a+b.txt", "a+b.txt", True),
    ],
)
def test_path_matches(path: str, pattern: str, matches: bool) -> None:
    """Globs: ``**`` spans folders, ``*`` stays in one, a bare name matches at any depth, ``/`` anchors."""
    assert path_matches(path, pattern) is matches


@pytest.mark.parametrize(
    ("path", "is_test"),
    [("test_app.py", True), ("pkg/app_test.py", True), ("tests/conftest.py", True), ("a/tests/data/x.json", True),
     ("app.py", False), ("testing.py", False), ("contest_app.py", False), ("tests.py", False)],
)  # fmt: skip
def test_is_test_path(path: str, is_test: bool) -> None:
    """Test files are test_*.py, *_test.py and anything under a tests/ folder."""
    assert is_test_path(path) is is_test


@settings(max_examples=300, deadline=None)
@given(
    n_files=st.integers(0, 60), lines=st.integers(0, 3000), outcome=st.sampled_from(OUTCOMES),
    tests_changed=st.booleans(), sensitive=st.booleans(), auto=st.booleans(), require_tests=st.booleans(),
    max_auto_files=st.integers(0, 50), max_pr_files=st.integers(0, 50),
)  # fmt: skip
def test_tier_rules_hold_for_any_change(n_files: int, lines: int, outcome: Outcome, tests_changed: bool,
                                        sensitive: bool, auto: bool, require_tests: bool, max_auto_files: int,
                                        max_pr_files: int) -> None:  # fmt: skip
    """For any change and policy: auto_merge only when every auto rule holds, human_review exactly when a human rule
    holds, and there is always at least one reason."""
    paths = [f"src/m{i}.py" for i in range(n_files)]
    if tests_changed and paths:
        paths[0] = "tests/test_m.py"
    if sensitive and paths:
        paths[-1] = "deploy/secrets.yml"
    policy = ReviewPolicy(auto_merge=auto, require_tests_changed=require_tests, sensitive_paths=["deploy/**"],
                          max_auto_files=max_auto_files, max_pr_files=max_pr_files)  # fmt: skip
    report = change(*paths, lines=lines) if paths else change(lines=lines)
    tier, reasons = classify(report, outcome, policy)
    has_sensitive = any(p.startswith("deploy/") for p in paths)
    has_tests = any(p.startswith("tests/") for p in paths)
    human = outcome in ("unverified", "failed") or n_files > max_pr_files or lines > 2000 or has_sensitive
    auto_ok = (auto and outcome == "verified" and n_files <= max_auto_files and lines <= 200
               and (has_tests or not require_tests))  # fmt: skip
    assert reasons
    assert (tier == "human_review") is human
    assert (tier == "auto_merge") is (auto_ok and not human)


PNG_DIFF = (
    "diff --git a/assets/logo.png b/assets/logo.png\nnew file mode 100644\nindex 0000000..1111111\n"
    "Binary files /dev/null and b/assets/logo.png differ\n"
)
OLD_DIFF = "diff --git a/old.bin b/old.bin\ndeleted file mode 100644\nindex 1111111..0000000\n" \
           "Binary files a/old.bin and /dev/null differ\n"  # fmt: skip


def binary_change(*paths: str, diff: str = "", truncated: bool = False) -> ChangeReport:
    """A small change whose ``paths`` are binary in its stats, with ``diff`` as the report's copy of the diff."""
    files = [FileStat(path="app.py", added=3), *(FileStat(path=p, status="binary") for p in paths)]
    return ChangeReport(repo="demo", branch="agentcom/t1", base_commit="abc1234", commit="def5678", files=files,
                        added=3, diff=diff, diff_truncated=truncated)  # fmt: skip


def test_a_change_adding_a_picture_needs_a_person() -> None:
    """A verified small change adding a PNG goes to human review, the picture named in the reason, whether the
    report carries the diff or only the stats."""
    for report in (binary_change("logo.png"), binary_change("assets/logo.png", diff=PNG_DIFF)):
        tier, reasons = classify(report, "verified", AUTO)
        name = report.files[1].path
        assert (tier, reasons) == ("human_review", [f"binary file(s) not scanned: {name}"])


def test_binary_ok_lets_an_allowed_picture_auto_merge() -> None:
    """With ``binary_ok=["assets/**"]`` an asset PNG keeps auto_merge; a PNG elsewhere still needs a person."""
    policy = ReviewPolicy(auto_merge=True, binary_ok=["assets/**"])
    tier, reasons = classify(binary_change("assets/logo.png", diff=PNG_DIFF), "verified", policy)
    assert tier == "auto_merge" and not any("binary" in reason for reason in reasons)
    tier, reasons = classify(binary_change("assets/logo.png", "docs/shot.png"), "verified", policy)
    assert (tier, reasons) == ("human_review", ["binary file(s) not scanned: docs/shot.png"])


def test_a_text_only_change_is_unaffected_by_the_binary_rule() -> None:
    """A text-only change keeps its tier and reasons, with or without ``binary_ok``."""
    report = change("app.py", "tests/test_app.py")
    for policy in (AUTO, ReviewPolicy(auto_merge=True, binary_ok=["assets/**"])):
        tier, reasons = classify(report, "verified", policy)
        assert tier == "auto_merge" and not any("binary" in reason for reason in reasons)


def test_a_deleted_binary_counts_only_when_the_diff_is_cut() -> None:
    """A binary file the full diff deletes leaves nothing unread; when the report's diff is cut, the stats decide
    (a binary file there counts, unsure meaning unread)."""
    assert classify(binary_change("old.bin", diff=OLD_DIFF), "verified", AUTO)[0] == "auto_merge"
    tier, reasons = classify(binary_change("old.bin", diff=OLD_DIFF, truncated=True), "verified", AUTO)
    assert (tier, reasons) == ("human_review", ["binary file(s) not scanned: old.bin"])


def test_the_binary_files_passed_in_win_over_the_report() -> None:
    """The publication passes the binary files of the diff it scanned: they decide, not the report's stats."""
    report = binary_change("logo.png")
    assert classify(report, "verified", AUTO, binary=[])[0] == "auto_merge"
    tier, reasons = classify(change("app.py"), "verified", AUTO, binary=[f"img/{i}.png" for i in range(7)])
    assert (tier, reasons) == ("human_review", ["binary file(s) not scanned: img/0.png, img/1.png, img/2.png, "
                                                "img/3.png, img/4.png and 2 more"])  # fmt: skip
