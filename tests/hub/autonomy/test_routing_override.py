"""The routing override healing sets when every local endpoint is down: the scheduler tries Claude first."""

from __future__ import annotations

from hub.scheduler import Candidate, plan
from hub.tasks import Task

NOW = 1_700_000_000_000


def task(tid: str, **fields: object) -> Task:
    return Task(id=tid, description=tid, created_at=NOW, updated_at=NOW, **fields)  # type: ignore[arg-type]


def both(aid: str) -> Candidate:
    return Candidate(aid, frozenset(), frozenset({"ollama", "claude"}), ("qwen3:8b",))


def test_override_routes_standard_work_to_claude() -> None:
    """With the override a standard task on an agent running both goes to Claude (said in the reason); without it,
    to the local model."""
    [plain] = plan([task("t1")], [both("a")], lambda t: True)
    [over] = plan([task("t1")], [both("a")], lambda t: True, prefer="claude")
    assert (plain.route.target, over.route.target) == ("ollama", "claude")
    assert "override" in over.route.reason and not over.route.fallback


def test_override_leaves_pinned_work_alone() -> None:
    """A task pinned to an executor or a shell command is not rerouted, and an agent without Claude still runs
    what it can."""
    every = Candidate("a", frozenset(), frozenset({"shell", "ollama", "claude"}), ("qwen3:8b",))
    [shell] = plan([task("t1", metadata={"shell_command": "true"})], [every], lambda t: True, prefer="claude")
    assert shell.route.target == "shell"
    local_only = Candidate("b", frozenset(), frozenset({"ollama"}), ("qwen3:8b",))
    [local] = plan([task("t2")], [local_only], lambda t: True, prefer="claude")
    assert local.route.target == "ollama"
