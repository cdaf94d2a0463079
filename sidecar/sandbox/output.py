"""A command's output made readable: capped to a size with its head and tail kept, and rendered with its status.

Capping always keeps both ends: the head says what ran, the tail is where errors and test summaries are. A marker
between them says how much was cut.
"""

from __future__ import annotations

from sidecar.sandbox.base import Completed

STREAM_CAP_CHARS = 8 * 1024 - 100
"""Default cap of each stream in :func:`format_completed` (two of them fit a 16 KiB observation)."""


class HeadTail:
    """Keeps the first and the last ``cap_bytes // 2`` bytes of a stream and counts the bytes cut between them."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = max(cap_bytes, 0)
        self.head = bytearray()
        self.tail = bytearray()
        self.seen = 0
        self.cut = 0

    def add(self, chunk: bytes) -> bytes:
        """Keep what belongs to the head or the tail of ``chunk``; return the part among the stream's first
        ``cap_bytes`` (what is worth showing live)."""
        fresh = chunk[: max(self.cap_bytes - self.seen, 0)]
        self.seen += len(chunk)
        to_head = chunk[: max(self.cap_bytes - self.cap_bytes // 2 - len(self.head), 0)]
        self.head += to_head
        self.tail += chunk[len(to_head) :]
        if (over := len(self.tail) - self.cap_bytes // 2) > 0:
            del self.tail[:over]
            self.cut += over
        return fresh

    def text(self) -> str:
        """The kept bytes as text, with ``[... N bytes cut ...]`` between head and tail when something was cut."""
        head, tail = self.head.decode("utf-8", errors="replace"), self.tail.decode("utf-8", errors="replace")
        return f"{head}\n[... {self.cut} bytes cut ...]\n{tail}" if self.cut else head + tail


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
