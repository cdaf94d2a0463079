"""Binary files in a scanned change: the scan cannot read them, so a binary key store blocks publication and any
other binary file is named in the publication's reasons (the report and the pull request's body)."""

# ruff: noqa: F811 (the publication tests' fixtures are imported, then named as parameters)
from __future__ import annotations

import subprocess
from pathlib import Path

from shared.fakes.forge_server import FakeForgeServer
from shared.repos import ChangeReport, ReviewPolicy
from shared.secret_scan import binary_files, describe_unscanned, scan_diff
from sidecar.git.forge import GitHubForge
from sidecar.git.publish import publish
from tests.sidecar.git.test_publish import SUMMARY, Repo, fake, forge, git, repo  # noqa: F401 (fixtures)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"
KEY_STORE = b"\xfe\xed\xfe\xed\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x01\x00\x07release"


def commit(work: Path, files: dict[str, bytes | None]) -> None:
    """Write (or delete, for None) ``files`` in ``work`` and commit them."""
    for name, data in files.items():
        if data is None:
            (work / name).unlink()
        else:
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "change")


def diff(work: Path, *options: str) -> str:
    """The last commit's diff as publication reads it (``options`` such as ``--binary`` added)."""
    args = ["git", "-C", str(work), "-c", "core.quotepath=false", "diff", "--no-color", "--no-ext-diff",
            "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", *options, "HEAD~1", "HEAD", "--"]  # fmt: skip
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def binary_change(repo: Repo, task_id: str, files: dict[str, bytes | None]) -> ChangeReport:
    """Commit ``files`` on the task's branch from the seeded main, reported like a sidecar."""
    branch = f"agentcom/{task_id}"
    git(repo.work, "checkout", "-q", "-B", branch, repo.base)
    commit(repo.work, files)
    return ChangeReport(repo="demo", branch=branch, base_commit=repo.base, commit=git(repo.work, "rev-parse", "HEAD"))


def test_binary_files_added_or_changed_are_listed_from_a_real_diff(tmp_path: Path) -> None:
    """Added and changed binary files are listed in diff order, in both of git's forms; deleted ones and text
    files are not."""
    git(tmp_path, "init", "-q")
    commit(tmp_path, {"data.bin": b"a\x00b", "old.bin": b"x\x00y", "notes.txt": b"hello\n"})
    commit(tmp_path, {"data.bin": b"a\x00c", "old.bin": None, "my logo.png": PNG, "notes.txt": b"hello again\n"})
    for options in ((), ("--binary",)):
        assert binary_files(diff(tmp_path, *options)) == ["data.bin", "my logo.png"], options
    assert binary_files("diff --git a/x b/x\n@@ -1 +1 @@\n-Binary files a/x and b/x differ\n+y\n") == []


def test_a_binary_key_store_is_a_finding_and_a_picture_is_not(tmp_path: Path) -> None:
    """A binary file named like a key store (``.jks``, ``id_ed25519``) is a ``key_file`` finding; a binary
    picture is none, and a text ``.pem`` is read as text (no private key in it, no finding)."""
    git(tmp_path, "init", "-q")
    commit(tmp_path, {"README": b"x\n"})
    commit(tmp_path, {"app/release.jks": KEY_STORE, "deploy/id_ed25519": b"\x00\x01key", "logo.png": PNG,
                      "ca.pem": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"})  # fmt: skip
    findings = scan_diff(diff(tmp_path))
    assert [(f.kind, f.path, f.line) for f in findings] == [("key_file", "app/release.jks", 0),
                                                            ("key_file", "deploy/id_ed25519", 0)]  # fmt: skip
    assert all(f.excerpt == "binary key store (not read)" for f in findings)


def test_describe_unscanned_names_the_files_briefly() -> None:
    """The note counts the binary files and names the first few; no files, no note."""
    assert describe_unscanned([]) == ""
    assert describe_unscanned(["logo.png"]) == "1 binary file not scanned for secrets: logo.png"
    note = describe_unscanned([f"f{i}.bin" for i in range(8)])
    assert note == "8 binary files not scanned for secrets: f0.bin, f1.bin, f2.bin, f3.bin, f4.bin and 3 more"


async def test_an_unscanned_binary_file_is_named_in_the_reasons_and_the_pull_request(
    repo: Repo, forge: GitHubForge, fake: FakeForgeServer
) -> None:
    """A change adding a picture the policy allows (``binary_ok``) is published, and its tier reasons and pull
    request body say the picture was not scanned."""
    change = binary_change(repo, "t1", {"docs/logo.png": PNG, "app.py": b"def greet():\n    return 'hello'\n"})
    checkout = repo.checkout("t1", review=ReviewPolicy(binary_ok=["docs/**"]))
    report = await publish(repo.work, checkout, change, "verified", task_id="t1", summary_md=SUMMARY,
                           forge=forge)  # fmt: skip
    note = "1 binary file not scanned for secrets: docs/logo.png"
    assert report.published == "pull_request" and report.scan == [] and note in report.tier_reasons
    assert f"- {note}" in fake.pulls()[0]["body"]


async def test_a_text_only_change_has_no_binary_note(repo: Repo, forge: GitHubForge, fake: FakeForgeServer) -> None:
    """Without a binary file, no reason mentions one."""
    change = binary_change(repo, "t1", {"app.py": b"def greet():\n    return 'hello'\n"})
    report = await publish(repo.work, repo.checkout("t1"), change, "verified", task_id="t1", summary_md=SUMMARY,
                           forge=forge)  # fmt: skip
    assert report.published == "pull_request" and not any("binary" in r for r in report.tier_reasons)


async def test_a_binary_key_store_blocks_publication(repo: Repo, forge: GitHubForge, fake: FakeForgeServer) -> None:
    """A change adding a binary key store is blocked with the file named; nothing reaches the remote."""
    change = binary_change(repo, "t1", {"android/release.keystore": KEY_STORE})
    report = await publish(repo.work, repo.checkout("t1"), change, "verified", task_id="t1", summary_md=SUMMARY,
                           forge=forge)  # fmt: skip
    assert report.published == "blocked" and [(f.kind, f.path) for f in report.scan] == [
        ("key_file", "android/release.keystore")
    ]
    assert report.publish_error is not None and "key_file in android/release.keystore:0" in report.publish_error
    assert repo.remote_branches() == ["main"] and fake.pulls() == []
