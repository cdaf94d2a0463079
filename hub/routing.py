"""Routing decision for a task handed to an agent: which executor and model should run it (pure)."""

from __future__ import annotations

from typing import Any

from hub.tasks import Task

TIER_TARGETS = {"trivial": "ollama", "standard": "ollama", "complex": "claude", "unknown": "ollama"}


def routing_decision(task: Task, agent_models: tuple[str, ...], now_ms: int) -> dict[str, Any]:
    """Pinned executor first, then a shell command, then the complexity tier's default target."""
    tier = (task.complexity or {}).get("effective_tier", "standard")
    if task.executor:
        target, reason = task.executor, "pinned by the task's executor field"
    elif task.metadata.get("shell_command"):
        target, reason = "shell", "metadata.shell_command present"
    else:
        target, reason = TIER_TARGETS.get(tier, "ollama"), f"tier {tier}"
    model = task.metadata.get("model") or (agent_models[0] if agent_models and target != "shell" else None)
    return {
        "effective_tier": tier,
        "target_type": target,
        "selected_model": model,
        "classification_reason": reason,
        "decided_at": now_ms,
    }
