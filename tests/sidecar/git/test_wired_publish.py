"""The sidecar's wired publisher (its settings' forge and credentials around publication) on real git repositories:
an auto-merge change lands on the bare remote's main fast-forward; a pull-request one opens a pull request on the
fake forge with the configured token."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shared.fakes.forge_server import FakeForgeServer
from shared.repos import ChangeReport, RepoCheckout, ReviewPolicy
from sidecar.git.publisher import wired_publisher
from sidecar.settings import GitSettings


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def remote_with_branch(tmp_path: Path) -> tuple[Path, Path, str, str]:
    """A bare remote with main, and a bare mirror holding main plus agentcom/t1 one commit ahead."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "app.py").write_text("x = 1\n")
    git("add", "-A", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=work)
    base = git("rev-parse", "HEAD", cwd=work)
    remote = tmp_path / "remote.git"
    git("clone", "-q", "--bare", str(work), str(remote), cwd=tmp_path)
    git("checkout", "-q", "-b", "agentcom/t1", cwd=work)
    (work / "app.py").write_text("x = 2\n")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "agentcom: fix", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--bare", str(work), str(mirror), cwd=tmp_path)
    return remote, mirror, base, head


def change_of(mirror: Path, base: str, head: str) -> ChangeReport:
    diff = git("diff", f"{base}..{head}", cwd=mirror)
    return ChangeReport(repo="demo", branch="agentcom/t1", base_commit=base, commit=head, diff=diff, added=1,
                        removed=1, files=[{"path": "app.py", "added": 1, "removed": 1}])  # fmt: skip


async def test_wired_publisher_merges_an_auto_tier_change(tmp_path: Path) -> None:
    """With auto-merge allowed, the wired publisher fast-forwards the remote's main to the verified commit."""
    remote, mirror, base, head = remote_with_branch(tmp_path)
    checkout = RepoCheckout(name="demo", url=str(remote), branch="agentcom/t1", base_commit=base,
                            review=ReviewPolicy(auto_merge=True), publish="pull_request")  # fmt: skip
    publisher = wired_publisher(GitSettings(), tmp_path / "mirrors")
    report = await publisher(mirror, checkout, change_of(mirror, base, head), task_id="t1", summary_md="fix")
    assert report.tier == "auto_merge" and report.published == "merged", report
    assert git("rev-parse", "refs/heads/main", cwd=remote) == head


async def test_wired_publisher_opens_a_pull_request_with_the_forge_token(tmp_path: Path) -> None:
    """Without auto-merge, the change goes to a pull request opened with the configured forge token and URL."""
    remote, mirror, base, head = remote_with_branch(tmp_path)
    async with FakeForgeServer(token="forge-secret-token", repos=["acme/demo"]) as forge:
        settings = GitSettings(forge_token="forge-secret-token", forge_url=forge.url)
        checkout = RepoCheckout(name="demo", url=str(remote), branch="agentcom/t1", base_commit=base,
                                forge="github", forge_repo="acme/demo")  # fmt: skip
        report = await wired_publisher(settings, tmp_path / "mirrors")(
            mirror, checkout, change_of(mirror, base, head), task_id="t1", summary_md="fix"
        )
        assert report.published == "pull_request" and report.pr_url, report
        assert git("rev-parse", "refs/heads/main", cwd=remote) == base
        assert git("rev-parse", "refs/heads/agentcom/t1", cwd=remote) == head
        assert "forge-secret-token" not in report.model_dump_json()
