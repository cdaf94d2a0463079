"""The complexity heuristic (hub/complexity.py) as a table, and the record a submitted task carries."""

from __future__ import annotations

import pytest

from hub.complexity import build, infer
from tests.conftest import wait_tasks

LONG = " ".join(["word"] * 60)

# (description, file hints, verification steps) -> (tier, confidence or None when not pinned down here)
INFER: list[tuple[str, str, int, int, str, float | None]] = [
    ("no signals at all", "", 0, 0, "unknown", 0.0),
    ("whitespace only", "   ", 0, 0, "unknown", 0.0),
    ("trivial keyword, short", "fix typo in readme", 0, 0, "trivial", 0.9),
    ("trivial keyword, long", "please fix the typo " + " ".join(["x"] * 10), 1, 1, "trivial", 0.75),
    ("trivial keyword but many files", "rename the helper", 4, 0, "standard", None),
    ("trivial keyword but many steps", "rename the helper", 0, 4, "standard", None),
    ("complex keyword", "Refactor the login flow", 0, 0, "complex", 0.7),
    ("complex keyword is case-insensitive", "SECURITY review of uploads", 0, 0, "complex", 0.7),
    ("complex keyword beats trivial keyword", "rename and migrate the tables", 0, 0, "complex", 0.7),
    ("complex with every booster", "Refactor and migrate " + LONG, 5, 4, "complex", 1.0),
    ("complex with many files", "redesign the page", 5, 0, "complex", 0.8),
    (
        "reference example: standard",
        "Add a new optional field to the user settings page for notification preferences",
        2,
        0,
        "standard",
        0.67,
    ),
    ("all votes standard", " ".join(["w"] * 20), 2, 2, "standard", 1.0),
    ("all votes complex", LONG, 5, 5, "complex", 1.0),
    ("two complex votes", LONG, 4, 0, "complex", 0.67),
    ("three-way tie favours standard", LONG, 0, 2, "standard", 0.33),
    (
        "a trivial majority without a trivial keyword is raised to standard",
        "Write number 5 to file",
        0,
        0,
        "standard",
        None,
    ),
    ("trivial majority of two, raised", "Write number 5 to file", 0, 5, "standard", None),
]


@pytest.mark.parametrize(("case", "text", "files", "steps", "tier", "confidence"), INFER, ids=[c for c, *_ in INFER])
def test_infer(case: str, text: str, files: int, steps: int, tier: str, confidence: float | None) -> None:
    """The inferred tier follows AgentCom's keyword rules, then a three-way vote with ties favouring standard."""
    out = infer(text, files, steps)
    assert out["tier"] == tier
    if confidence is not None:
        assert out["confidence"] == confidence
    assert out["signals"] == {"word_count": len(text.split()), "file_count": files, "verification_count": steps}


BUILD: list[tuple[str | None, str, str, str]] = [
    (None, "fix typo", "trivial", "inferred"),
    ("complex", "fix typo", "complex", "explicit"),
    ("trivial", "Refactor everything", "trivial", "explicit"),
    ("unknown", "fix typo", "trivial", "inferred"),
    ("unknown", "", "unknown", "inferred"),
]


@pytest.mark.parametrize(("explicit", "text", "effective", "source"), BUILD)
def test_build(explicit: str | None, text: str, effective: str, source: str) -> None:
    """An explicit tier (other than unknown) wins over the inferred one, which is always kept beside it."""
    out = build(explicit, text, 0, 0)
    assert (out["effective_tier"], out["source"], out["explicit_tier"]) == (effective, source, explicit)
    assert out["inferred"] == infer(text, 0, 0)


async def test_submitted_task_carries_complexity_and_routing(hub, make_agent):
    """A submitted task stores its complexity record, and its assignment carries it with a routing decision."""
    explicit = await hub.submit(description="fix typo", complexity_tier="complex")
    inferred = await hub.submit(description="Refactor the scheduler", file_hints=[{"path": "hub/scheduler.py"}])
    shell = await hub.submit(description="run it", metadata={"shell_command": "true"})
    task = await hub.task(explicit)
    assert task["complexity"]["effective_tier"] == "complex" and task["complexity"]["source"] == "explicit"
    assert (await hub.task(inferred))["complexity"]["effective_tier"] == "complex"
    sim = await make_agent()
    await wait_tasks(hub, [explicit, inferred, shell], {"completed"})
    sent = {r.task_id: r.message for r in sim.received}
    assert sent[explicit]["complexity"]["effective_tier"] == "complex"
    assert sent[explicit]["routing_decision"]["target_type"] == "claude"
    assert sent[shell]["routing_decision"]["target_type"] == "shell"
    assert (await hub.task(inferred))["routing_decision"]["effective_tier"] == "complex"
