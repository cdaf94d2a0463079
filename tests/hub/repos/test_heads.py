"""The hub resolves default-branch heads with git ls-remote: real repositories, cached, and None when unreachable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hub.repos.heads import Heads, git_env, ls_remote
from tests.hub.repos.conftest import Remote


async def test_ls_remote_reads_the_head_and_the_cache_holds_it(make_remote: Any) -> None:
    """The head is read from the remote, reused within the TTL (a stale base is fine), re-read after it."""
    remote: Remote = make_remote("app")
    first = remote.head()
    assert await ls_remote(remote.url, "main", 10) == first
    assert await ls_remote(f"file://{remote.url}", "main", 10) == first
    assert await ls_remote(remote.url, "no-such-branch", 10) is None
    clock = [0.0]
    heads = Heads(ttl_s=30, timeout_s=10, concurrency=2, now=lambda: clock[0])
    assert await heads.resolve(remote.url, "main") == first
    second = remote.commit("a.txt", "a\n")
    assert await heads.resolve(remote.url, "main") == first and heads.n_resolved == 1, "cached within the TTL"
    clock[0] = 31
    assert await heads.resolve(remote.url, "main") == second and heads.n_resolved == 2


async def test_unreachable_and_password_urls_give_no_head_without_waiting(tmp_path: Path) -> None:
    """A missing repository or an https URL that would ask for a password fails at once: no head, no prompt."""
    heads = Heads(ttl_s=30, timeout_s=20, concurrency=2, now=time.monotonic)
    assert await heads.resolve(str(tmp_path / "missing.git"), "main") is None
    started = time.monotonic()
    assert await ls_remote("https://127.0.0.1:9/o/r.git", "main", 20) is None
    assert time.monotonic() - started < 19, "refused, not timed out"
    assert heads.n_unreachable == 1


def test_git_runs_without_the_hubs_secrets(monkeypatch: Any) -> None:
    """git gets only what it needs from the environment: never the hub's tokens or keys."""
    monkeypatch.setenv("AGENTCOM_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    env = git_env()
    assert not {"AGENTCOM_ADMIN_TOKEN", "ANTHROPIC_API_KEY", "GITHUB_TOKEN"} & env.keys()
    assert env["GIT_TERMINAL_PROMPT"] == "0"
