"""The change of a task as the dashboard shows it: bounded, only the fields a person reads, no free-form keys."""

from __future__ import annotations

from typing import Any

from shared.repos import DIFF_CHARS

SHOWN_FILES = 200
_SCALARS = ("repo", "branch", "base_commit", "commit", "tier", "published", "pr_url", "merged_commit", "rebased_onto")


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def change_summary(change: Any) -> dict[str, Any] | None:
    """What a lifecycle event on the dashboard's bus carries: where the change is and how it landed."""
    if not isinstance(change, dict):
        return None
    out: dict[str, Any] = {k: _text(change.get(k), 300) for k in _SCALARS}
    files = change.get("files")
    out.update(
        added=_count(change.get("added")),
        removed=_count(change.get("removed")),
        n_files=len(files) if isinstance(files, list) else 0,
        conflict=bool(change.get("conflict")),
    )
    return out


def change_view(change: Any) -> dict[str, Any] | None:
    """The task drawer's view: the summary, the files with their +/- and the diff (rendered as text, escaped)."""
    summary = change_summary(change)
    if summary is None:
        return None
    files = change.get("files") if isinstance(change.get("files"), list) else []
    reasons = change.get("tier_reasons") if isinstance(change.get("tier_reasons"), list) else []
    conflict = change.get("conflict") if isinstance(change.get("conflict"), list) else []
    return {
        **summary,
        "files": [
            {
                "path": _text(f.get("path"), 500),
                "added": _count(f.get("added")),
                "removed": _count(f.get("removed")),
                "status": _text(f.get("status"), 20) or "modified",
            }
            for f in files[:SHOWN_FILES]
            if isinstance(f, dict)
        ],
        "tier_reasons": [_text(r, 300) for r in reasons[:20]],
        "conflict_files": [_text(c, 500) for c in conflict[:50]],
        "publish_error": _text(change.get("publish_error"), 1000),
        "diff": _text(change.get("diff"), DIFF_CHARS) or "",
        "diff_truncated": bool(change.get("diff_truncated")) or len(files) > SHOWN_FILES,
    }
