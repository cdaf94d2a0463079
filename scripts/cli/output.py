"""What the client commands print: aligned tables for people, JSON for programs (``--json``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows as left-aligned columns under ``headers``; cells are cut at 60 characters."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def ago(ms: Any, now_ms: int | None = None) -> str:
    """A timestamp in ms as "12s ago", "5m ago", "3h ago", "2d ago"."""
    if not isinstance(ms, int | float) or ms <= 0:
        return "-"
    seconds = max(0, ((now_ms if now_ms is not None else int(time.time() * 1000)) - ms) / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"
