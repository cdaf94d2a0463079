"""A command's output made readable: capped to a size with its head and tail kept, and rendered with its status."""

from __future__ import annotations

from sidecar.sandbox.base import Completed

STREAM_CAP_CHARS = 8 * 1024 - 100
"""Default cap of each stream in :func:`format_completed` (two of them fit a 16 KiB observation)."""


def cap_text(text: str, limit: int) -> str:
    """Return ``text`` if it fits in ``limit`` characters, else its head and tail around a truncation note."""
    if len(text) <= limit:
        return text
    keep = max(limit - 80, 2)
    head, tail = text[: keep // 2], text[len(text) - (keep - keep // 2) :]
    elided = len(text) - len(head) - len(tail)
    return f"{head}\n[... output truncated: {elided} characters elided ...]\n{tail}"


def format_completed(done: Completed, stream_cap: int = STREAM_CAP_CHARS) -> str:
    """Render a finished command as exit status plus its stdout and stderr, each capped."""
    signal = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit code: {done.returncode}"
    parts = ["timed out (killed)" if done.timed_out else signal]
    if done.stdout:
        parts.append(f"[stdout]\n{cap_text(done.stdout.rstrip(), stream_cap)}")
    if done.stderr:
        parts.append(f"[stderr]\n{cap_text(done.stderr.rstrip(), stream_cap)}")
    if done.truncated:
        parts.append("[output truncated by the sandbox]")
    if not done.stdout and not done.stderr:
        parts[0] += " (no output)"
    return "\n".join(parts)
