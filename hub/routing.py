"""Routing: which executor and model run a task on one given agent (pure functions over plain data).

A task names what it needs in one of three ways, strongest first: an ``executor`` field, a
``metadata.shell_command`` (the ``shell`` executor), or its complexity tier, which names a chain of targets
tried in order on the agent at hand (:data:`TIER_CHAINS`): the first one the agent has wins, and a decision that
is not the chain's first target says it fell back. A task that also pins a model (``metadata.model``) needs a
target that serves it: ``claude-*`` names are served by ``claude``, any other name by ``ollama`` on an agent that
lists the model.

An agent offers ``executors`` (None: an older client that did not say; it is handed what the tier names first,
as before) and ``models`` (the local models it serves; the first is its default). :func:`route` returns None when
the agent cannot run the task at all; the scheduler then looks at the next agent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from hub.tasks import Task
from shared.payloads import RoutingDecision

TIER_CHAINS: dict[str, tuple[str, ...]] = {
    "trivial": ("ollama", "openai", "claude"),
    "standard": ("ollama", "openai", "claude"),
    "complex": ("claude", "ollama", "openai"),
    "unknown": ("ollama", "openai", "claude"),
}
"""Targets per effective tier, preferred first. Local models (Ollama's API, else an OpenAI-compatible server such as
llama.cpp's) for everyday work, Claude for complex work; each falls back on the others when the agent lacks it
(Claude for a small task only when the agent has no local model)."""
DEFAULT_TIER = "standard"
EXECUTOR_ALIASES = {"sidecar": "shell"}
"""Older names of an executor (the original hub's ``sidecar`` target meant "run it there as a shell command")."""
LOCAL_MODEL_TARGETS = frozenset({"ollama", "openai"})
"""Targets that run one of the agent's own models (so need one it lists)."""


class Placement(NamedTuple):
    """Why one agent (and the endpoint serving its model) was picked among those that could run a task."""

    endpoint_id: str | None
    endpoint_url: str | None
    score: float
    parts: tuple[tuple[str, float], ...]
    """The score's terms (probe, warm, load, repo, health), in order."""
    explanation: str


class Route(NamedTuple):
    """Where one task runs on one agent: the executor, the model (None: the executor's own default) and why."""

    target: str
    model: str | None
    tier: str
    reason: str
    preferred: str
    """The target the task prefers (its chain's first); another ``target`` means the agent lacked it."""
    placement: Placement | None = None
    """Set when the scheduler ranked the agents (hub/endpoints/scoring.py)."""

    @property
    def fallback(self) -> bool:
        return self.target != self.preferred


class Needs(NamedTuple):
    """What a task asks of an agent's executors, read once from the task's fixed fields."""

    targets: tuple[str, ...]
    """Acceptable targets, preferred first (one for a pinned executor or a shell command)."""
    model: str | None
    """A model the task pins (``metadata.model``), if any."""
    tier: str
    reason: str


def needs_of(task: Task) -> Needs:
    """The targets and model ``task`` can run with (pure; depends only on fields fixed at submission)."""
    tier = (task.complexity or {}).get("effective_tier") or DEFAULT_TIER
    if not isinstance(tier, str):
        tier = DEFAULT_TIER
    model = task.metadata.get("model")
    model = model if isinstance(model, str) and model else None
    if task.executor:
        return Needs(
            (EXECUTOR_ALIASES.get(task.executor, task.executor),), model, tier, "pinned by the task's executor field"
        )
    if task.metadata.get("shell_command"):
        return Needs(("shell",), model, tier, "metadata.shell_command present")
    return Needs(TIER_CHAINS.get(tier, TIER_CHAINS[DEFAULT_TIER]), model, tier, f"tier {tier}")


def serves(
    target: str, pinned_model: str | None, executors: frozenset[str], models: tuple[str, ...]
) -> tuple[bool, str | None]:
    """Whether an agent offering ``executors`` and ``models`` can run ``target`` (with the pinned model, if any),
    and the model it would use."""
    if target not in executors:
        return False, None
    if target == "shell":
        return True, None
    if target == "claude":
        if pinned_model is None:
            return True, None  # the executor's default Claude model
        return pinned_model.startswith("claude"), pinned_model
    if target in LOCAL_MODEL_TARGETS:
        if pinned_model is not None:
            return pinned_model in models, pinned_model
        if models:
            return True, models[0]
        return target == "openai", None  # an OpenAI-compatible server answers with the model it serves
    return True, pinned_model  # an executor the hub knows nothing more about


def route_needs(needs: Needs, executors: frozenset[str] | None, models: tuple[str, ...]) -> Route | None:
    """:func:`route` for needs already read from the task."""
    first = needs.targets[0]
    if executors is None:  # an older client that did not say what it runs: as before, the first target
        model = needs.model or (models[0] if models and first != "shell" else None)
        return Route(first, model, needs.tier, needs.reason, first)
    for target in needs.targets:
        ok, model = serves(target, needs.model, executors, models)
        if ok:
            return Route(target, model, needs.tier, needs.reason, first)
    return None


def route(task: Task, executors: frozenset[str] | None, models: tuple[str, ...]) -> Route | None:
    """The target and model ``task`` runs with on an agent offering ``executors`` and ``models``, or None when
    that agent cannot run it."""
    return route_needs(needs_of(task), executors, models)


PROVIDERS = {"ollama": "ollama", "openai": "openai", "claude": "claude"}
"""Executor → who serves its model, named as the sidecar's model clients name it in ``Usage.provider``."""


def decision_record(chosen: Route, now_ms: int) -> RoutingDecision:
    """The ``routing_decision`` stored on the task and sent with ``task_assign``. Its size never exceeds that of the
    decision for an agent that did not say what it runs with the longest model name, which is what a submission is
    checked against (a fallback names the same preferred target)."""
    return RoutingDecision(
        target=chosen.target,
        provider=PROVIDERS.get(chosen.target),
        model=chosen.model,
        reason=chosen.reason,
        tier=chosen.tier,
        preferred_target=chosen.preferred,
        fallback_used=chosen.fallback,
        decided_at=now_ms,
        **placement_fields(chosen.placement),
    )


MAX_EXPLANATION_CHARS = 400


def placement_fields(placement: Placement | None) -> dict[str, Any]:
    """The decision's fields telling where and why (none without a placement)."""
    if placement is None:
        return {}
    return {
        "endpoint": placement.endpoint_url,
        "endpoint_id": placement.endpoint_id,
        "score": placement.score,
        "score_parts": dict(placement.parts),
        "explanation": placement.explanation[:MAX_EXPLANATION_CHARS],
    }


def routing_decision(
    task: Task,
    agent_models: tuple[str, ...],
    now_ms: int,
    executors: frozenset[str] | None = None,
    placement: Placement | None = None,
) -> RoutingDecision:
    """The routing decision for ``task`` on an agent (one that did not say what it runs, by default); an agent
    that cannot run it gets the decision an older client would (the scheduler never pairs such an agent)."""
    chosen = route(task, executors, agent_models) or route(task, None, agent_models)
    assert chosen is not None  # an agent that did not say is always given a route
    return decision_record(chosen._replace(placement=placement), now_ms)


WORST_PLACEMENT = Placement(
    "ep-" + "f" * 12,
    "http://" + "h" * 505,
    -1e15,
    tuple((name, -1e15) for name in ("probe", "warm", "load", "health", "repo")),
    "\U0001f600" * MAX_EXPLANATION_CHARS,
)
"""The largest placement a decision may carry (the endpoint URL at its limit, every character of the explanation
at its widest), for the frame-size check of a submission."""
