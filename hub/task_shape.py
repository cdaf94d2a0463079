"""What a stored task body must look like to be read back: the exact type of every field, integer ranges, element
types; :class:`CorruptTask` for a body that is not one (``Task.from_json`` checks it, the queue quarantines it)."""

from __future__ import annotations

import math
from typing import Any


class CorruptTask(ValueError):
    """A stored task body that cannot be read back as a task."""


def finite(value: Any) -> Any:
    """``value`` with every non-finite number replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


MAX_INT = 2**63 - 1  # what SQLite can bind (created_at, updated_at, priority are columns too)
REQUIRED = frozenset({"id", "description", "created_at", "updated_at", "status"})
_NONE: type = type(None)
INT_FIELDS = (
    "created_at",
    "updated_at",
    "priority",
    "max_retries",
    "retry_count",
    "generation",
    "max_verification_retries",
    "verification_timeout_ms",
    "complete_by",
    "assigned_at",
    "accepted_at",
    "completed_at",
    "tokens_used",
    "retry_at",
)
SHAPE: tuple[tuple[str, frozenset[type]], ...] = (
    *((name, frozenset({str})) for name in ("id", "description", "status")),
    *((name, frozenset({int})) for name in INT_FIELDS[:7]),
    *((name, frozenset({int, _NONE})) for name in INT_FIELDS[7:]),
    *(
        (name, frozenset({str, _NONE}))
        for name in (
            "assign_to",
            "complexity_tier",
            "repo",
            "branch",
            "goal_id",
            "executor",
            "submitted_by",
            "assigned_to",
            "outcome",
            "last_error",
            "dead_letter_reason",
            "base_commit",
        )
    ),
    ("skip_verification", frozenset({bool})),
    ("metadata", frozenset({dict})),
    *(
        (name, frozenset({dict, _NONE}))
        for name in ("complexity", "routing_decision", "result", "verification_report", "usage", "change")
    ),
    *(
        (name, frozenset({list}))
        for name in (
            "needed_capabilities",
            "depends_on",
            "success_criteria",
            "verification_steps",
            "file_hints",
            "history",
        )
    ),
    ("verification_history", frozenset({list, _NONE})),
    ("failed_on", frozenset({list})),
    ("rerun_of", frozenset({str, _NONE})),
)
"""Stored field -> the exact types it may have (a field left out takes the dataclass default)."""
ELEMENTS: tuple[tuple[str, frozenset[type]], ...] = (
    *((name, frozenset({str})) for name in ("needed_capabilities", "depends_on", "success_criteria")),
    *((name, frozenset({dict})) for name in ("verification_steps", "file_hints", "history", "verification_history")),
    ("failed_on", frozenset({str})),
)
