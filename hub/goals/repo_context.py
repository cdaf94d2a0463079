"""The file tree of a goal's repository, from a shallow bare mirror the hub keeps under its data directory.

``git fetch --depth 1`` of the remote's ``HEAD`` (its default branch) into ``DATA_DIR/goal-mirrors/<hash>``, then
``git ls-tree -r --name-only``. Every git command runs from an argument list, with a timeout, a minimal environment
(no secrets of the hub's) and only the ``file``, ``git``, ``http``, ``https`` and ``ssh`` transports.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

MAX_TREE_BYTES = 16 * 1024 * 1024
"""Most bytes of ``ls-tree`` output read (about 200,000 paths); a bigger tree is refused."""
REF = "refs/goal-mirror/head"


class RepoUnavailable(Exception):
    """The repository could not be fetched or listed; the message says why (never a credential)."""


def _env() -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    return {
        **keep,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
    }


async def _git(args: list[str], timeout_s: float, limit: int = 1024 * 1024) -> bytes:
    name = args[2] if args[0] == "-C" else args[0]
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
        limit=limit,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RepoUnavailable(f"git {name} timed out after {timeout_s:g}s") from None
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        detail = next((line for line in lines if line.startswith("fatal:")), lines[-1] if lines else "")
        raise RepoUnavailable(f"git {name} failed: {detail[:300]}")
    if len(out) > limit:
        raise RepoUnavailable(f"git {name} printed over {limit} bytes")
    return out


def mirror_dir(data_dir: Path, repo_url: str) -> Path:
    return data_dir / "goal-mirrors" / hashlib.sha256(repo_url.encode()).hexdigest()[:24]


async def file_tree(data_dir: Path, repo_url: str, timeout_s: float) -> list[str]:
    """Every file path on the default branch of ``repo_url`` (a URL or a local path), sorted."""
    if repo_url.startswith("-"):
        raise RepoUnavailable("a repository URL may not start with '-'")
    mirror = mirror_dir(data_dir, repo_url)
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        await _git(["init", "--quiet", "--bare", str(mirror)], timeout_s)
    await _git(
        ["-C", str(mirror), "fetch", "--quiet", "--depth", "1", "--force", "--", repo_url, f"+HEAD:{REF}"], timeout_s
    )
    out = await _git(["-C", str(mirror), "ls-tree", "-r", "-z", "--name-only", REF], timeout_s, MAX_TREE_BYTES)
    return sorted(p.decode(errors="replace") for p in out.split(b"\0") if p)
