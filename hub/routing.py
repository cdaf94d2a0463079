"""Routing decision for a task handed to an agent: which executor and model should run it (pure)."""

from __future__ import annotations

from typing import Any

from hub.tasks import Task
from shared.payloads import RoutingDecision

TIER_TARGETS = {"trivial": "ollama", "standard": "ollama", "complex": "claude", "unknown": "ollama"}
PROVIDERS = {"ollama": "ollama", "claude": "claude"}
"""Executor → who serves its model, named as the sidecar's model clients name it in ``Usage.provider``."""


def routing_decision(task: Task, agent_models: tuple[str, ...], now_ms: int) -> RoutingDecision:
    """Pinned executor first, then a shell command, then the complexity tier's default target."""
    tier = _name((task.complexity or {}).get("effective_tier")) or "standard"
    if task.executor:
        target, reason = task.executor, "pinned by the task's executor field"
    elif task.metadata.get("shell_command"):
        target, reason = "shell", "metadata.shell_command present"
    else:
        target, reason = TIER_TARGETS.get(tier, "ollama"), f"tier {tier}"
    model = _name(task.metadata.get("model")) or (agent_models[0] if agent_models and target != "shell" else None)
    return RoutingDecision(
        target=target, provider=PROVIDERS.get(target), model=model, reason=reason, tier=tier, decided_at=now_ms
    )


def _name(value: Any) -> str | None:
    """``value`` if it can name a tier or a model (a non-empty string), else None (metadata is free-form)."""
    return value if isinstance(value, str) and value else None
