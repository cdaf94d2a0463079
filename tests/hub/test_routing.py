"""Routing per agent (hub/routing.route) and what an agent runs (hub/agents.executors_of), as tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.agents import executors_of
from hub.routing import route, routing_decision
from hub.tasks import Task

NOW = 1_700_000_000_000


def task(tier: str | None = "standard", **fields: Any) -> Task:
    return Task(
        id="t",
        description="d",
        created_at=NOW,
        updated_at=NOW,
        complexity={"effective_tier": tier} if tier else None,
        **fields,
    )


def offer(executors: str | None, *models: str) -> tuple[frozenset[str] | None, tuple[str, ...]]:
    return (frozenset(executors.split()) if executors is not None else None), models


SHELL = {"shell_command": "true"}
ROUTES: list[tuple[str, Task, tuple[frozenset[str] | None, tuple[str, ...]], tuple[str, str | None, str | None] | None]]
ROUTES = [
    # (case, task, (executors, models), (target, model, the preferred target when it fell back) or None)
    ("complex on an agent with claude", task("complex"), offer("shell claude ollama", "qwen"), ("claude", None, None)),
    (
        "complex without claude falls back to the local model",
        task("complex"),
        offer("shell ollama", "qwen", "llama"),
        ("ollama", "qwen", "claude"),
    ),
    ("complex with neither: none", task("complex"), offer("shell"), None),
    ("complex with ollama but no model: none", task("complex"), offer("shell ollama"), None),
    ("standard on the local model", task("standard"), offer("ollama claude", "qwen"), ("ollama", "qwen", None)),
    (
        "standard without a local model falls back to claude",
        task("standard"),
        offer("shell claude"),
        ("claude", None, "ollama"),
    ),
    ("trivial on the local model", task("trivial"), offer("shell ollama", "qwen"), ("ollama", "qwen", None)),
    ("unknown tier as standard", task("unknown"), offer("ollama", "qwen"), ("ollama", "qwen", None)),
    ("no complexity record: standard", task(None), offer("ollama", "qwen"), ("ollama", "qwen", None)),
    ("a shell command needs shell", task("complex", metadata=SHELL), offer("shell"), ("shell", None, None)),
    ("a shell command on an agent without shell: none", task("standard", metadata=SHELL), offer("ollama", "q"), None),
    (
        "explicit executor wins over the tier",
        task("complex", executor="ollama"),
        offer("claude ollama", "qwen"),
        ("ollama", "qwen", None),
    ),
    (
        "explicit executor the agent lacks: none, no fallback",
        task("standard", executor="claude"),
        offer("shell ollama", "qwen"),
        None,
    ),
    ("the older name sidecar means shell", task("standard", executor="sidecar"), offer("shell"), ("shell", None, None)),
    (
        "a pinned local model the agent serves",
        task("standard", metadata={"model": "llama"}),
        offer("ollama", "qwen", "llama"),
        ("ollama", "llama", None),
    ),
    (
        "a pinned local model the agent lacks: none",
        task("standard", metadata={"model": "llama"}),
        offer("ollama claude", "qwen"),
        None,
    ),
    (
        "a pinned claude model goes to claude",
        task("standard", metadata={"model": "claude-opus-4"}),
        offer("ollama claude", "qwen"),
        ("claude", "claude-opus-4", "ollama"),
    ),
    (
        "complex with a pinned local model skips claude",
        task("complex", metadata={"model": "qwen"}),
        offer("claude ollama", "qwen"),
        ("ollama", "qwen", "claude"),
    ),
    (
        "an agent that did not say: the tier's first target, as before",
        task("complex"),
        offer(None, "qwen"),
        ("claude", "qwen", None),
    ),
    (
        "an agent that did not say, shell command: no model",
        task("standard", metadata=SHELL),
        offer(None, "qwen"),
        ("shell", None, None),
    ),
]


@pytest.mark.parametrize(("case", "t", "agent", "expected"), ROUTES, ids=[r[0] for r in ROUTES])
def test_route(
    case: str,
    t: Task,
    agent: tuple[frozenset[str] | None, tuple[str, ...]],
    expected: tuple[str, str | None, str | None] | None,
) -> None:
    """The task's executor, shell command or tier chain picks the first target the agent offers, with a model it
    serves; None when the agent offers none."""
    chosen = route(t, *agent)
    assert (
        None if chosen is None else (chosen.target, chosen.model, chosen.preferred if chosen.fallback else None)
    ) == expected


def test_decision_record_says_when_it_fell_back() -> None:
    """The stored routing decision names the target, the model, the reason and whether it is a fallback."""
    record = routing_decision(task("complex"), ("qwen",), NOW, frozenset({"ollama"})).stored()
    assert record == {
        "effective_tier": "complex",
        "target_type": "ollama",
        "provider": "ollama",
        "selected_model": "qwen",
        "classification_reason": "tier complex",
        "preferred_target": "claude",
        "fallback_used": True,
        "decided_at": NOW,
    }
    assert routing_decision(task("complex"), ("qwen",), NOW).stored()["target_type"] == "claude"


def test_a_decision_is_never_larger_than_the_one_a_submission_is_checked_against() -> None:
    """Whatever an agent offers, the decision sent is at most as long as the one for an agent that did not say
    what it runs with a 256-character model (the submit-time frame-size check relies on it)."""
    worst = "m" * 256
    for tier in ("trivial", "standard", "complex", "unknown"):
        for fields in (
            {},
            {"metadata": {"model": worst}},
            {"metadata": {"model": "claude-" + "x" * 249}},
            {"executor": "ollama"},
            {"metadata": {"shell_command": "true"}},
        ):
            t = task(tier, **fields)
            bound = len(json.dumps(routing_decision(t, (worst,), NOW).stored()))
            for executors in ("shell", "ollama", "claude", "shell ollama claude", "ollama claude"):
                for models in ((), ("q",), (worst,)):
                    sent = json.dumps(routing_decision(t, models, NOW, frozenset(executors.split())).stored())
                    assert len(sent) <= bound, (tier, fields, executors, models)


EXECUTORS: list[tuple[str, list[str] | None, str | None, list[str], str | None, set[str] | None]] = [
    # (case, declared, client_type, capabilities, ollama_url, expected)
    ("declared list wins", ["shell", "claude"], "sidecar", ["code"], "http://o:11434", {"shell", "claude"}),
    ("declared empty list: nothing", [], "sidecar", [], None, set()),
    ("older sidecar: shell", None, "sidecar", ["shell"], None, {"shell"}),
    ("older sidecar with ollama_url: shell and ollama", None, "sidecar", [], "http://o:11434", {"shell", "ollama"}),
    ("older sidecar naming claude in its capabilities", None, "sidecar", ["claude"], None, {"shell", "claude"}),
    ("other clients that did not say: anything", None, "smoke_test", ["shell"], None, None),
    ("no client type: anything", None, None, [], None, None),
]


@pytest.mark.parametrize(
    ("case", "declared", "client_type", "caps", "ollama_url", "expected"), EXECUTORS, ids=[e[0] for e in EXECUTORS]
)
def test_executors_of(
    case: str,
    declared: list[str] | None,
    client_type: str | None,
    caps: list[str],
    ollama_url: str | None,
    expected: set[str] | None,
) -> None:
    """An agent runs the executors it declares; an older sidecar what such a sidecar has; other clients anything."""
    out = executors_of(declared, client_type, caps, ollama_url)
    assert (None if out is None else set(out)) == expected
