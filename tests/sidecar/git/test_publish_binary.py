"""Publication of a change carrying a binary file, on real git repositories and the real fake forge: the scan
cannot read the file, so an auto-merge repository does not merge it unless its policy allows that path."""

# ruff: noqa: F811 (the publication tests' fixtures are imported, then named as parameters)
from __future__ import annotations

from shared.fakes.forge_server import FakeForgeServer
from shared.repos import ReviewPolicy
from sidecar.git.forge import GitHubForge
from sidecar.git.publish import REVIEW_LABEL, publish
from tests.shared.test_secret_scan_binary import PNG, binary_change
from tests.sidecar.git.test_publish import SUMMARY, Repo, fake, forge, git, repo  # noqa: F401 (fixtures)

GREET = b"def greet():\n    return 'hello'\n"


async def test_an_auto_merge_repository_does_not_merge_an_unscanned_picture(
    repo: Repo, forge: GitHubForge, fake: FakeForgeServer
) -> None:
    """A small verified change adding a PNG, under an auto-merge policy, becomes a pull request labelled for human
    review naming the picture; the remote's main does not move."""
    change = binary_change(repo, "t1", {"img/logo.png": PNG, "app.py": GREET})
    report = await publish(repo.work, repo.checkout("t1", review=ReviewPolicy(auto_merge=True)), change, "verified",
                           task_id="t1", summary_md=SUMMARY, forge=forge)  # fmt: skip
    assert (report.tier, report.published, report.merged_commit) == ("human_review", "pull_request", None)
    assert report.tier_reasons == ["binary file(s) not scanned: img/logo.png"]
    assert repo.remote_ref("main") == repo.base and repo.remote_ref("agentcom/t1") == change.commit
    (pull,) = fake.pulls()
    assert [label["name"] for label in pull["labels"]] == [REVIEW_LABEL]
    assert "- binary file(s) not scanned: img/logo.png" in pull["body"]


async def test_a_picture_under_binary_ok_still_merges(repo: Repo, forge: GitHubForge, fake: FakeForgeServer) -> None:
    """With ``binary_ok=["assets/**"]`` the same change with its PNG under assets/ merges fast-forward, the
    picture still named as unscanned in the reasons."""
    change = binary_change(repo, "t1", {"assets/logo.png": PNG, "app.py": GREET})
    policy = ReviewPolicy(auto_merge=True, binary_ok=["assets/**"])
    report = await publish(repo.work, repo.checkout("t1", review=policy), change, "verified", task_id="t1",
                           summary_md=SUMMARY, forge=forge)  # fmt: skip
    assert (report.tier, report.published, report.merged_commit) == ("auto_merge", "merged", change.commit)
    assert "1 binary file not scanned for secrets: assets/logo.png" in report.tier_reasons
    assert repo.remote_ref("main") == change.commit and fake.pulls() == []


async def test_a_text_only_change_still_auto_merges(repo: Repo, forge: GitHubForge, fake: FakeForgeServer) -> None:
    """A text-only change under the same auto-merge policy merges, no reason mentioning a binary file."""
    change = binary_change(repo, "t1", {"app.py": GREET})
    report = await publish(repo.work, repo.checkout("t1", review=ReviewPolicy(auto_merge=True)), change, "verified",
                           task_id="t1", summary_md=SUMMARY, forge=forge)  # fmt: skip
    assert (report.tier, report.published) == ("auto_merge", "merged")
    assert not any("binary" in reason for reason in report.tier_reasons)
    assert repo.remote_ref("main") == change.commit
