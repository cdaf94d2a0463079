"""Routing scores: among the idle agents able to run a task, which one runs it best, and why.

The scheduler asks :class:`EndpointRanker` to order the agents for each task (best first; ties keep the longest idle
first) and to complete the route of the one it picks. An agent running a local model is scored on the model it would
use (each model it lists is tried when the task pins none) and the endpoint serving it:

- ``probe``: the model's probe score on that endpoint (0..1; :data:`UNPROBED` when not probed yet);
- ``warm``: :data:`W_WARM` when the model is loaded there (``/api/ps``): no swap, no cold load;
- ``load``: minus :data:`W_LOAD` per task running or booked this round on that endpoint. Load is keyed by the
  endpoint that actually serves, so two agents sharing one Ollama count as one load;
- ``health``: minus :data:`W_UNHEALTHY` when the endpoint is unhealthy;
- ``repo``: :data:`W_REPO` when the agent recently worked on the task's repository (its checkout is warm;
  hub/endpoints/affinity.py remembers it, across restarts).

Agents running a shell command or Claude are scored on ``repo`` alone. The decision stored on the task carries the
endpoint, the score, its terms and a sentence explaining it (hub/routing.py ``placement_fields``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from hub.agents import AgentRegistry, AgentState
from hub.endpoints.affinity import Affinity
from hub.endpoints.registry import Endpoint, EndpointRegistry
from hub.routing import LOCAL_MODEL_TARGETS, Placement, Route, needs_of, route_needs
from hub.scheduler import Candidate, eligible
from hub.tasks import Task

W_WARM = 0.5
W_LOAD = 0.4
W_UNHEALTHY = 2.0
W_REPO = 0.3
UNPROBED = 0.5
"""A model not probed yet scores between one that calls tools badly and one that calls them well."""
MODELS_TRIED = 16
"""Models of one agent scored per task (its first ones)."""


class Scored:
    """One agent's best way of running one task."""

    __slots__ = ("agent_id", "model", "parts", "score", "endpoint")

    def __init__(
        self, agent_id: str, model: str | None, parts: tuple[tuple[str, float], ...], endpoint: Endpoint | None
    ):
        self.agent_id = agent_id
        self.model = model
        self.parts = parts
        self.score = round(sum(v for _, v in parts), 3)
        self.endpoint = endpoint


class EndpointRanker:
    """The scheduler's :class:`hub.scheduler.Ranker` over the endpoint registry (see the module docstring)."""

    def __init__(
        self,
        registry: EndpointRegistry,
        agents: AgentRegistry,
        task_of: Callable[[str], Task | None] | None = None,
        affinity: Affinity | None = None,
    ) -> None:
        self._registry = registry
        self._agents = agents
        self._task_of = task_of
        """The task with this id, to tell whether it runs a local model (None: every busy agent loads its endpoint)."""
        self._load: Counter[str] = Counter()
        self.affinity = affinity if affinity is not None else Affinity()
        """Which agents recently worked on which repositories (None given: in memory only)."""
        self._where: dict[str, tuple[Endpoint | None, str | None]] = {}
        """Per round: each agent's endpoint and the key its load is counted under."""
        self._base: dict[tuple[str, str, str | None], tuple[str | None, float, float, float]] = {}
        """Per round: (agent, target, pinned model) -> (best model, probe, warm, health), which no booking changes."""
        self._kinds: dict[str, tuple[object, ...]] = {}
        self._scores: dict[str, float] = {}
        self._scores_task: str | None = None

    def begin(self) -> None:
        """A round starts: forget the last round's look-ups and count the tasks running on each endpoint."""
        self._load.clear()
        self._where.clear()
        self._base.clear()
        self._kinds.clear()
        for agent in self._agents.connected.values():
            if agent.state == AgentState.IDLE or agent.state == AgentState.OFFLINE:
                continue
            task = self._task_of(agent.current_task_id) if self._task_of and agent.current_task_id else None
            target = (task.routing_decision or {}).get("target_type") if task is not None else None
            if target is not None and target not in LOCAL_MODEL_TARGETS:
                continue
            if (key := self._registry.endpoint_of(agent.agent_id, agent.ollama_url)[1]) is not None:
                self._load[key] += 1

    def _endpoint(self, agent_id: str) -> tuple[Endpoint | None, str | None]:
        where = self._where.get(agent_id)
        if where is None:
            live = self._agents.get(agent_id)
            url = live.ollama_url if live is not None else None
            where = self._where[agent_id] = self._registry.endpoint_of(agent_id, url)
        return where

    def _kind(self, agent: Candidate) -> tuple[object, ...]:
        """What makes agents alike for scoring (cached for the round)."""
        kind = self._kinds.get(agent.agent_id)
        if kind is None:
            where = self._endpoint(agent.agent_id)[1]
            kind = self._kinds[agent.agent_id] = (agent.capabilities, agent.executors, agent.models, where, agent.repos)
        return kind

    def _model_terms(
        self, agent: Candidate, route: Route, pinned: str | None
    ) -> tuple[str | None, float, float, float]:
        """The agent's best model for ``route`` and its probe, warm and health terms (cached for the round)."""
        cache_key = (agent.agent_id, route.target, pinned)
        if (cached := self._base.get(cache_key)) is not None:
            return cached
        ep, _ = self._endpoint(agent.agent_id)
        health = -W_UNHEALTHY if ep is not None and ep.healthy is False else 0.0
        best: tuple[str | None, float, float, float] | None = None
        models: list[str | None] = [pinned] if pinned is not None else list(agent.models[:MODELS_TRIED])
        for model in models or [route.model]:
            probe = self._registry.probe_score(ep.id, model) if ep is not None and model else None
            warm = W_WARM if ep is not None and model in ep.warm else 0.0
            terms = (model, UNPROBED if probe is None else probe, warm, health)
            if best is None or terms[1] + terms[2] > best[1] + best[2]:
                best = terms
        assert best is not None
        self._base[cache_key] = best
        return best

    def _parts(
        self, task: Task, agent: Candidate, route: Route, pinned: str | None
    ) -> tuple[str | None, tuple[tuple[str, float], ...]]:
        """The model the agent would use and the score's terms (``pinned``: the model the task names)."""
        repo = ("repo", W_REPO if task.repo and self.affinity.has(agent.agent_id, task.repo) else 0.0)
        if route.target not in LOCAL_MODEL_TARGETS:
            return route.model, (repo,)
        model, probe, warm, health = self._model_terms(agent, route, pinned)
        _, key = self._endpoint(agent.agent_id)
        load = round(-W_LOAD * self._load[key], 3) if key is not None else 0.0
        return model, (("probe", probe), ("warm", warm), ("load", load), ("health", health), repo)

    def order(self, task: Task, agents: list[Candidate]) -> list[Candidate]:
        """The agents able to run ``task``, the best first: the best of those running it on its preferred target,
        else the best of all (the rest follow in their order; plan takes the first, so they need no sorting).

        Agents alike (same capabilities, executors, models, endpoint and reachable repositories, no affinity with the
        task's repository)
        score alike: only the first of each kind is scored, the others follow it."""
        needs = needs_of(task)
        self._scores, self._scores_task = {}, task.id
        best: tuple[bool, float, int] | None = None
        able: list[Candidate] = []
        kinds: dict[tuple[object, ...], float | None] = {}
        for agent in agents:
            if task.assign_to is not None and task.assign_to != agent.agent_id:
                continue
            affinity = bool(task.repo and self.affinity.has(agent.agent_id, task.repo))
            kind = None if affinity else self._kind(agent)
            if kind is not None and kind in kinds:
                if (score := kinds[kind]) is not None:  # runs it, no better than the first of its kind
                    self._scores[agent.agent_id] = score
                    able.append(agent)
                continue
            route = route_needs(needs, agent.executors, agent.models) if eligible(task, agent) else None
            if route is None:
                if kind is not None:
                    kinds[kind] = None
                continue
            score = round(sum(v for _, v in self._parts(task, agent, route, needs.model)[1]), 3)
            if kind is not None:
                kinds[kind] = score
            self._scores[agent.agent_id] = score
            rank = (not route.fallback, score, -len(able))
            if best is None or rank > best:
                best = rank
            able.append(agent)
        if best is None:
            return []
        first = -best[2]
        return [able[first], *able[:first], *able[first + 1 :]]

    def finish(self, task: Task, agent: Candidate, chosen: Route) -> Route:
        """The route with the model scored best, its placement and explanation; books the load and the repo."""
        model, parts = self._parts(task, agent, chosen, needs_of(task).model)
        scored = Scored(agent.agent_id, model, parts, self._endpoint(agent.agent_id)[0])
        scores = self._scores if self._scores_task == task.id else {}
        others = sorted((v for a, v in scores.items() if a != agent.agent_id), reverse=True)
        if chosen.target in LOCAL_MODEL_TARGETS and (key := self._endpoint(agent.agent_id)[1]) is not None:
            self._load[key] += 1
        if task.repo:
            self.affinity.touch(agent.agent_id, task.repo)
        ep = scored.endpoint if chosen.target in LOCAL_MODEL_TARGETS else None
        model = scored.model if chosen.target in LOCAL_MODEL_TARGETS else chosen.model
        # The sidecar talks to the model at the decision's endpoint: the URL as the agent itself gave it (the one the
        # registry keys may name its machine by the address the hub sees), and only when the registry accepted it.
        live = self._agents.get(agent.agent_id) if ep is not None else None
        url = live.ollama_url if live is not None else None
        placement = Placement(ep.id if ep else None, url, scored.score, scored.parts,
                              explain(chosen, agent.agent_id, model, scored, ep, others))  # fmt: skip
        return chosen._replace(model=model, placement=placement)


def explain(
    chosen: Route, agent_id: str, model: str | None, scored: Scored, ep: Endpoint | None, others: list[float]
) -> str:
    """One sentence: where, with what, the score and its terms, against the runner-up."""
    where = f"{chosen.target}" + (f"/{model}" if model else "") + f" on agent {agent_id}"
    if ep is not None:
        where += f" via endpoint {ep.name or ep.id}"
    elif chosen.target in LOCAL_MODEL_TARGETS:
        where += " (its endpoint is not registered)"
    terms = " ".join(f"{name} {value:+.2f}" for name, value in scored.parts if value or name == "probe")
    terms = f" ({terms})" if terms else ""
    versus = f"; best of {len(others) + 1} (runner-up {others[0]:.2f})" if others else "; the only candidate"
    fallback = f"; fell back from {chosen.preferred}" if chosen.fallback else ""
    return f"{where}: score {scored.score:.2f}{terms}{versus}{fallback}; {chosen.reason}"
