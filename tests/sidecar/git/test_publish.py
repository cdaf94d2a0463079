"""Publication on real git repositories (a bare remote, a clone with a task branch and a commit) and the real fake
forge: fast-forward merges, the fallback to a pull request, pull requests with their body, blocked secrets, and the
token kept out of logs and bodies."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.fakes.forge_server import FakeForgeServer
from shared.repos import DIFF_CHARS, ChangeReport, FileStat, RepoCheckout, ReviewPolicy
from sidecar.git.forge import GitHubForge
from sidecar.git.publish import REVIEW_LABEL, publish

TOKEN = "forge-" + "c0ffee5ecret77"
SUMMARY = "# Fix the greeting\n\n## Verification\n- pytest: pass (3 tests)\n\n## Cost\n$0.0123, 2 model calls\n"
AUTO = ReviewPolicy(auto_merge=True)


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=AgentCom Test", "-c", "user.email=test@agentcom.invalid", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


@dataclass
class Repo:
    remote: Path
    work: Path
    base: str

    def remote_ref(self, name: str) -> str | None:
        """The commit of ``refs/heads/<name>`` on the bare remote, or None."""
        out = git(self.remote, "for-each-ref", "--format=%(objectname)", f"refs/heads/{name}")
        return out or None

    def remote_branches(self) -> list[str]:
        return git(self.remote, "for-each-ref", "--format=%(refname:short)", "refs/heads").splitlines()

    def change(self, task_id: str, files: dict[str, str], base: str | None = None) -> ChangeReport:
        """Commit ``files`` on the task's branch from ``base`` (the seeded main by default), reported like a sidecar."""
        base = base or self.base
        branch = f"agentcom/{task_id}"
        git(self.work, "checkout", "-q", "-B", branch, base)
        for name, text in files.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", f"Task {task_id}")
        commit = git(self.work, "rev-parse", "HEAD")
        stats = [line.split("\t") for line in git(self.work, "diff", "--numstat", base, commit).splitlines()]
        return ChangeReport(
            repo="demo", branch=branch, base_commit=base, commit=commit,
            files=[FileStat(path=p, added=int(a), removed=int(r)) for a, r, p in stats],
            added=sum(int(a) for a, _, _ in stats), removed=sum(int(r) for _, r, _ in stats),
            diff=git(self.work, "diff", base, commit)[:DIFF_CHARS],
        )  # fmt: skip

    def checkout(self, task_id: str, **extra: object) -> RepoCheckout:
        fields: dict[str, object] = {
            "name": "demo",
            "url": str(self.remote),
            "branch": f"agentcom/{task_id}",
            "base_commit": self.base,
            "forge": "github",
            "forge_repo": "acme/demo",
        }
        return RepoCheckout.model_validate(fields | extra)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    (seed / "app.py").write_text("def greet():\n    return 'helo'\n")
    (seed / "tests").mkdir()
    (seed / "tests" / "test_app.py").write_text("from app import greet\n\ndef test_greet():\n    assert greet()\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "seed")
    git(seed, "push", "-q", "origin", "HEAD:main")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(remote), str(work))
    return Repo(remote, work, git(work, "rev-parse", "HEAD"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeForgeServer]:
    async with FakeForgeServer(token=TOKEN, repos=["acme/demo"]) as server:
        yield server


@pytest.fixture
def forge(fake: FakeForgeServer) -> GitHubForge:
    return GitHubForge(TOKEN, base_url=fake.url)


async def test_auto_tier_merges_fast_forward_into_the_remote_main(repo: Repo, forge: GitHubForge,
                                                                  fake: FakeForgeServer) -> None:  # fmt: skip
    """A small verified change under an auto-merge policy lands on the bare remote's main, branch pushed too."""
    change = repo.change("t1", {"app.py": "def greet():\n    return 'hello'\n"})
    report = await publish(repo.work, repo.checkout("t1", review=AUTO), change, "verified", task_id="t1",
                           summary_md=SUMMARY, forge=forge)  # fmt: skip
    assert (report.tier, report.published, report.merged_commit) == ("auto_merge", "merged", change.commit)
    assert repo.remote_ref("main") == change.commit
    assert repo.remote_ref("agentcom/t1") == change.commit
    assert report.publish_error is None and report.scan == [] and report.git_ms is not None
    assert fake.pulls() == []


async def test_stale_base_is_refused_fast_forward_and_becomes_a_pull_request(
    repo: Repo, forge: GitHubForge, fake: FakeForgeServer
) -> None:
    """A second auto change on the old base cannot fast-forward (main moved on): main is kept, a PR is opened."""
    first = repo.change("t1", {"app.py": "def greet():\n    return 'hello'\n"})
    second = repo.change("t2", {"README.md": "# demo\n"})
    await publish(repo.work, repo.checkout("t1", review=AUTO), first, "verified", task_id="t1", summary_md=SUMMARY,
                  forge=forge)  # fmt: skip
    report = await publish(repo.work, repo.checkout("t2", review=AUTO), second, "verified", task_id="t2",
                           summary_md=SUMMARY, forge=forge)  # fmt: skip
    assert repo.remote_ref("main") == first.commit
    assert (report.tier, report.published, report.merged_commit) == ("pull_request", "pull_request", None)
    assert any("fast-forward of main refused" in reason for reason in report.tier_reasons)
    [pull] = fake.pulls()
    assert pull["head"]["ref"] == "agentcom/t2" and report.pr_url == pull["html_url"]
    assert repo.remote_ref("agentcom/t2") == second.commit


async def test_stale_base_without_a_forge_reports_the_refusal(repo: Repo) -> None:
    """With no forge, a refused fast-forward leaves the branch pushed and says why nothing was merged."""
    first = repo.change("t1", {"a.txt": "a\n"})
    second = repo.change("t2", {"b.txt": "b\n"})
    checkout = repo.checkout("t1", review=AUTO, forge="none", forge_repo=None)
    await publish(repo.work, checkout, first, "verified", task_id="t1", summary_md="", forge=None)
    checkout = repo.checkout("t2", review=AUTO, forge="none", forge_repo=None)
    report = await publish(repo.work, checkout, second, "verified", task_id="t2", summary_md="", forge=None)
    assert report.published == "pushed" and repo.remote_ref("main") == first.commit
    assert report.publish_error is not None and "no forge is set up" in report.publish_error


async def test_pull_request_tier_opens_a_pull_request_with_the_body(repo: Repo, forge: GitHubForge,
                                                                    fake: FakeForgeServer) -> None:  # fmt: skip
    """Without auto-merge, the branch is pushed and a PR opened whose body has the task, verification, cost and
    tier reasons; main does not move."""
    change = repo.change("t1", {"app.py": "def greet():\n    return 'hello'\n"})
    report = await publish(repo.work, repo.checkout("t1"), change, "verified", task_id="t1", summary_md=SUMMARY,
                           forge=forge)  # fmt: skip
    assert (report.tier, report.published) == ("pull_request", "pull_request")
    [pull] = fake.pulls("acme/demo")
    assert report.pr_url == pull["html_url"] and pull["base"]["ref"] == "main" and pull["labels"] == []
    assert pull["title"] == "AgentCom: Fix the greeting"
    body = pull["body"]
    for words in (
        "## Verification",
        "pytest: pass",
        "$0.0123",
        "## Review tier: pull_request",
        "auto-merge is off for this repository",
        "`app.py` (+1 −1",
        "task `t1`",
        change.commit,
    ):
        assert words in body, words
    assert repo.remote_ref("main") == repo.base and repo.remote_ref("agentcom/t1") == change.commit


async def test_secrets_in_the_summary_are_masked_in_the_pull_request(repo: Repo, forge: GitHubForge,
                                                                     fake: FakeForgeServer) -> None:  # fmt: skip
    """A token the verification log echoed into the summary is masked in the pull request's body."""
    leaked = "ghp_" + "Zx81Qw7Lm2Np" * 3
    change = repo.change("t1", {"a.txt": "a\n"})
    await publish(repo.work, repo.checkout("t1"), change, "verified", task_id="t1", forge=forge,
                  summary_md=f"# Fix\n\n## Verification\nGH_TOKEN={leaked} pytest: pass\n")  # fmt: skip
    body = fake.pulls()[0]["body"]
    assert leaked[4:] not in body and "GH_TOKEN=ghp_****" in body and "pytest: pass" in body


async def test_human_review_opens_a_labelled_pull_request(repo: Repo, forge: GitHubForge,
                                                          fake: FakeForgeServer) -> None:  # fmt: skip
    """A change on a sensitive path gets a pull request labelled for review, never a merge."""
    change = repo.change("t1", {".github/workflows/ci.yml": "on: push\n"})
    policy = ReviewPolicy(auto_merge=True, sensitive_paths=[".github/**"])
    report = await publish(repo.work, repo.checkout("t1", review=policy), change, "verified", task_id="t1",
                           summary_md=SUMMARY, forge=forge)  # fmt: skip
    assert (report.tier, report.published) == ("human_review", "pull_request")
    assert [label["name"] for label in fake.pulls()[0]["labels"]] == [REVIEW_LABEL]
    assert repo.remote_ref("main") == repo.base


async def test_human_review_without_a_forge_pushes_and_says_so(repo: Repo) -> None:
    """With no forge, a human-review change is only pushed, and the report says it needs a person."""
    change = repo.change("t1", {"app.py": "x = 1\n"})
    checkout = repo.checkout("t1", forge="none", forge_repo=None)
    report = await publish(repo.work, checkout, change, "unverified", task_id="t1", summary_md="", forge=None)
    assert (report.tier, report.published) == ("human_review", "pushed")
    assert report.publish_error is not None and "needs human review" in report.publish_error
    assert repo.remote_ref("agentcom/t1") == change.commit and repo.remote_ref("main") == repo.base


async def test_a_private_key_blocks_publication_and_nothing_is_pushed(repo: Repo, forge: GitHubForge,
                                                                      fake: FakeForgeServer) -> None:  # fmt: skip
    """A diff adding a private key is blocked with a report naming it; no ref reaches the remote, no PR opens."""
    key = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH"
    change = repo.change("t1", {"deploy/id_ed25519": key + " PRIVATE KEY-----\n", "app.py": "x = 2\n"})
    report = await publish(repo.work, repo.checkout("t1", review=AUTO), change, "verified", task_id="t1",
                           summary_md=SUMMARY, forge=forge)  # fmt: skip
    assert report.published == "blocked"
    assert [(f.kind, f.path, f.line) for f in report.scan] == [("private_key", "deploy/id_ed25519", 1)]
    assert report.publish_error is not None and "private_key in deploy/id_ed25519:1" in report.publish_error
    assert repo.remote_branches() == ["main"] and repo.remote_ref("main") == repo.base
    assert fake.pulls() == []


async def test_the_full_diff_is_scanned_not_the_reports_cut_copy(repo: Repo, forge: GitHubForge) -> None:
    """A secret past the report's cut diff is still found: the scan reads the change from git."""
    aws = "AKIA" + "Q3XN7ZRP2VDL5KWT"
    change = repo.change("t1", {"big.txt": "filler line\n" * 6000 + f"key = {aws}\n"})
    cut = change.model_copy(update={"diff": change.diff[:1000], "diff_truncated": True})
    report = await publish(repo.work, repo.checkout("t1"), cut, "verified", task_id="t1", summary_md="", forge=forge)
    assert report.published == "blocked" and [(f.kind, f.line) for f in report.scan] == [("aws_key", 6001)]
    assert repo.remote_branches() == ["main"]


async def test_the_token_never_reaches_logs_bodies_or_reports(repo: Repo, fake: FakeForgeServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Across a PR, a duplicate and a refused token, the forge token is in no log line, PR body or report."""
    caplog.set_level(logging.DEBUG)
    forge = GitHubForge(TOKEN, base_url=fake.url)
    reports = []
    for task_id in ("t1", "t2"):
        change = repo.change(task_id, {f"{task_id}.txt": "x\n"})
        reports.append(await publish(repo.work, repo.checkout(task_id), change, "verified", task_id=task_id,
                                     summary_md=SUMMARY, forge=forge))  # fmt: skip
    reports.append(await publish(repo.work, repo.checkout("t2"), change, "verified", task_id="t2",
                                 summary_md=SUMMARY, forge=forge))  # fmt: skip
    wrong = "forge-" + "wrongwrong99"
    reports.append(await publish(repo.work, repo.checkout("t2"), change, "verified", task_id="t2",
                                 summary_md=SUMMARY, forge=GitHubForge(wrong, base_url=fake.url)))  # fmt: skip
    assert [r.published for r in reports] == ["pull_request", "pull_request", "pull_request", "pushed"]
    assert reports[1].pr_url == reports[2].pr_url and len(fake.pulls()) == 2
    assert reports[3].publish_error is not None and "401" in reports[3].publish_error
    assert "pull request" in caplog.text  # the logs were captured at all
    for secret in (TOKEN, wrong):
        assert secret not in caplog.text
        assert all(secret not in (p["body"] or "") and secret not in p["title"] for p in fake.pulls())
        assert all(secret not in r.model_dump_json() for r in reports)


async def test_a_failed_push_is_reported_without_credentials(repo: Repo, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A push that cannot land is ``failed`` with git's reason, cleaned of the secret values git was given."""
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t" + "Value42"
    change = repo.change("t1", {"a.txt": "a\n"})
    missing = tmp_path / f"no-such-{secret}.git"
    report = await publish(repo.work, repo.checkout("t1"), change, "verified", task_id="t1", summary_md="",
                           forge=None, remote=str(missing), git_env={"AGENTCOM_GIT_TOKEN": secret})  # fmt: skip
    assert report.published == "failed"
    assert report.publish_error is not None and "push of agentcom/t1 refused" in report.publish_error
    assert "***" in report.publish_error and secret not in report.publish_error and secret not in caplog.text


@pytest.mark.parametrize(
    ("publish_as", "published"), [("none", "no"), ("push", "pushed")]
)  # fmt: skip
async def test_publish_setting_limits_what_leaves(repo: Repo, forge: GitHubForge, fake: FakeForgeServer,
                                                  publish_as: str, published: str) -> None:  # fmt: skip
    """publish=none keeps the change local (tier still stated); publish=push pushes the branch, opens no PR."""
    change = repo.change("t1", {"a.txt": "a\n"})
    report = await publish(repo.work, repo.checkout("t1", publish=publish_as), change, "verified", task_id="t1",
                           summary_md="", forge=forge)  # fmt: skip
    assert (report.tier, report.published, report.publish_error) == ("pull_request", published, None)
    assert repo.remote_branches() == (["main"] if publish_as == "none" else ["agentcom/t1", "main"])
    assert fake.pulls() == []


async def test_no_commit_means_nothing_to_publish(repo: Repo, forge: GitHubForge) -> None:
    """A task that changed nothing is reported as not published, without running git."""
    empty = ChangeReport(repo="demo", branch="agentcom/t1", base_commit=repo.base)
    report = await publish(repo.work, repo.checkout("t1"), empty, "verified", task_id="t1", summary_md="", forge=forge)
    assert (report.published, report.tier, report.git_ms) == ("no", None, 0)


async def test_the_default_branch_is_never_the_task_branch(repo: Repo, forge: GitHubForge) -> None:
    """A checkout whose task branch is the default branch is refused: nothing is force-pushed onto main."""
    change = repo.change("t1", {"a.txt": "a\n"})
    report = await publish(repo.work, repo.checkout("t1", branch="main"), change, "verified", task_id="t1",
                           summary_md="", forge=forge)  # fmt: skip
    assert report.published == "failed" and repo.remote_ref("main") == repo.base


async def test_a_hanging_push_is_killed_at_its_timeout(repo: Repo, tmp_path: Path) -> None:
    """A push whose transport never answers is killed with its whole process group at the timeout, and reported."""
    pid_file, script = tmp_path / "transport.pid", tmp_path / "hang.py"
    script.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n")
    hang = f"{sys.executable} {script}"
    change = repo.change("t1", {"a.txt": "a\n"})
    report = await publish(repo.work, repo.checkout("t1"), change, "verified", task_id="t1", summary_md="",
                           forge=None, remote="ssh://git.invalid/demo.git", git_env={"GIT_SSH_COMMAND": hang},
                           timeout_s=3)  # fmt: skip
    assert report.published == "failed"
    assert report.publish_error is not None and "did not finish within 3 s" in report.publish_error
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(pid), "the transport git started outlived the timeout"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def test_option_like_remotes_and_commit_ids_are_never_options(repo: Repo, tmp_path: Path) -> None:
    """A remote that looks like a git option is pushed to as a name (and fails), never run; a commit id that is not
    hex is refused before git sees it."""
    marker = tmp_path / "ran"
    change = repo.change("t1", {"a.txt": "a\n"})
    for remote in (f"--receive-pack=touch {marker}", f"--repo={repo.remote}"):
        report = await publish(repo.work, repo.checkout("t1"), change, "verified", task_id="t1", summary_md="",
                               forge=None, remote=remote)  # fmt: skip
        assert report.published == "failed" and not marker.exists()
        assert repo.remote_branches() == ["main"]
    bad = change.model_copy(update={"base_commit": f"--output={marker}"})
    report = await publish(repo.work, repo.checkout("t1"), bad, "verified", task_id="t1", summary_md="", forge=None)
    assert report.published == "failed" and "not commit ids" in (report.publish_error or "")
    assert not marker.exists() and repo.remote_branches() == ["main"]


async def test_publish_none_reports_findings_without_blocking(repo: Repo) -> None:
    """With publish=none nothing leaves the host: a secret is reported by the scan, the change is not 'blocked'."""
    change = repo.change("t1", {"a.txt": "token = " + "ghp_" + "Zx81Qw7Lm2Np" * 3 + "\n"})
    report = await publish(repo.work, repo.checkout("t1", publish="none"), change, "verified", task_id="t1",
                           summary_md="", forge=None)  # fmt: skip
    assert report.published == "no" and [f.kind for f in report.scan] == ["github_token"]
    assert repo.remote_branches() == ["main"]


async def test_publishes_from_a_bare_mirror(repo: Repo, tmp_path: Path, forge: GitHubForge,
                                            fake: FakeForgeServer) -> None:  # fmt: skip
    """The sidecar keeps each repository as a bare mirror (remote.origin.mirror set): publishing from it pushes only
    the task's refs, merging fast-forward, and opens pull requests as from a clone."""
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--mirror", str(repo.remote), str(mirror))
    first = repo.change("t1", {"a.txt": "a\n"})
    second = repo.change("t2", {"b.txt": "b\n"})
    git(mirror, "fetch", "-q", str(repo.work), "refs/heads/agentcom/*:refs/heads/agentcom/*")
    merged = await publish(mirror, repo.checkout("t1", review=AUTO), first, "verified", task_id="t1",
                           summary_md=SUMMARY, forge=forge)  # fmt: skip
    pulled = await publish(mirror, repo.checkout("t2"), second, "verified", task_id="t2", summary_md=SUMMARY,
                           forge=forge)  # fmt: skip
    assert (merged.published, pulled.published) == ("merged", "pull_request")
    assert repo.remote_ref("main") == first.commit
    assert repo.remote_branches() == ["agentcom/t1", "agentcom/t2", "main"]
