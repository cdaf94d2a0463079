"""Complexity tier of a task, inferred from its description, file hints and verification steps (pure)."""

from __future__ import annotations

import re
from typing import Any

TIERS = ("trivial", "standard", "complex", "unknown")
COMPLEX_WORDS = ("refactor", "architect", "migration", "redesign", "migrate", "security", "overhaul", "rewrite")
TRIVIAL_WORDS = ("fix typo", "update readme", "bump version", "rename", "typo", "format", "lint", "version bump")
_COMPLEX = re.compile("|".join(map(re.escape, COMPLEX_WORDS)))  # substring matches, as `in` would find them
_TRIVIAL = re.compile("|".join(map(re.escape, TRIVIAL_WORDS)))


def _vote(n: int, low: int, high: int) -> str:
    return "trivial" if n < low else "complex" if n > high else "standard"


def infer(description: str, n_files: int, n_steps: int) -> dict[str, Any]:
    """Infer ``{tier, confidence, signals}`` with the original AgentCom heuristic."""
    text = description.lower()
    words = len(description.split())
    signals = {"word_count": words, "file_count": n_files, "verification_count": n_steps}
    if not words and not n_files and not n_steps:
        return {"tier": "unknown", "confidence": 0.0, "signals": signals}
    if _COMPLEX.search(text):
        confidence = 0.7 + 0.1 * sum((n_files > 3, n_steps > 3, words > 50))
        return {"tier": "complex", "confidence": round(confidence, 2), "signals": signals}
    if _TRIVIAL.search(text) and n_files <= 3 and n_steps <= 3:
        return {"tier": "trivial", "confidence": 0.9 if words < 10 else 0.75, "signals": signals}
    votes = [
        _vote(words, 10, 50),
        "trivial" if n_files == 0 else "standard" if n_files <= 3 else "complex",
        "trivial" if n_steps == 0 else "standard" if n_steps <= 3 else "complex",
    ]
    best = max(("standard", "complex", "trivial"), key=votes.count)  # ties favour standard, then complex
    if best == "trivial":
        best = "standard"  # trivial needs a trivial keyword; the confidence is then the share of standard votes
    confidence = votes.count(best) / 3
    return {"tier": best, "confidence": round(confidence, 2), "signals": signals}


def build(explicit: str | None, description: str, n_files: int, n_steps: int) -> dict[str, Any]:
    """The ``complexity`` record of a task: the explicit tier wins, the inferred one is kept beside it."""
    inferred = infer(description, n_files, n_steps)
    effective = explicit if explicit and explicit != "unknown" else inferred["tier"]
    return {
        "effective_tier": effective,
        "explicit_tier": explicit,
        "inferred": inferred,
        "source": "explicit" if explicit and explicit != "unknown" else "inferred",
    }
