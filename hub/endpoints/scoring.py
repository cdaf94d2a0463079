"""Routing scores: among the idle agents able to run a task, which one runs it best, and why.

The scheduler asks :class:`EndpointRanker` to order the agents for each task (best first; ties keep the longest idle
first) and to complete the route of the one it picks. An agent running a local model is scored on the model it would
use (each model it lists is tried when the task pins none) and the endpoint serving it:

- ``probe``: the model's probe score on that endpoint (0..1; :data:`UNPROBED` when not probed yet);
- ``warm``: :data:`W_WARM` when the model is loaded there (``/api/ps``): no swap, no cold load;
- ``load``: minus :data:`W_LOAD` per task running or booked this round on that endpoint. Load is keyed by the
  endpoint that actually serves, so two agents sharing one Ollama count as one load;
- ``health``: minus :data:`W_UNHEALTHY` when the endpoint is unhealthy;
- ``repo``: :data:`W_REPO` when the agent recently worked on the task's repository (its checkout is warm).

Agents running a shell command or Claude are scored on ``repo`` alone. The decision stored on the task carries the
endpoint, the score, its terms and a sentence explaining it (hub/routing.py ``placement_fields``).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable

from hub.agents import AgentRegistry, AgentState
from hub.endpoints.registry import BadUrl, Endpoint, EndpointRegistry, normalise_url
from hub.routing import LOCAL_MODEL_TARGETS, Placement, Route, needs_of, route_needs
from hub.scheduler import Candidate
from hub.tasks import Task

W_WARM = 0.5
W_LOAD = 0.4
W_UNHEALTHY = 2.0
W_REPO = 0.3
UNPROBED = 0.5
"""A model not probed yet scores between one that calls tools badly and one that calls them well."""
MODELS_TRIED = 16
"""Models of one agent scored per task (its first ones)."""
RECENT_REPOS = 8
"""Repositories remembered per agent."""
AGENTS_REMEMBERED = 4096


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
        self, registry: EndpointRegistry, agents: AgentRegistry, task_of: Callable[[str], Task | None] | None = None
    ) -> None:
        self._registry = registry
        self._agents = agents
        self._task_of = task_of
        """The task with this id, to tell whether it runs a local model (None: every busy agent loads its endpoint)."""
        self._load: Counter[str] = Counter()
        self._recent: OrderedDict[str, deque[str]] = OrderedDict()
        self._last: dict[str, Scored] = {}
        self._last_task: str | None = None

    def _key(self, url: str | None) -> str | None:
        """What load is counted under: the registered endpoint's id, else the normalised URL."""
        if not url:
            return None
        ep = self._registry.lookup(url)
        if ep is not None:
            return ep.id
        try:
            return normalise_url(url)
        except BadUrl:
            return None

    def begin(self) -> None:
        """A round starts: count the tasks running on each endpoint."""
        self._load.clear()
        for agent in self._agents.connected.values():
            if agent.state == AgentState.IDLE or agent.state == AgentState.OFFLINE:
                continue
            task = self._task_of(agent.current_task_id) if self._task_of and agent.current_task_id else None
            target = (task.routing_decision or {}).get("target_type") if task is not None else None
            if target is not None and target not in LOCAL_MODEL_TARGETS:
                continue
            if (key := self._key(agent.ollama_url)) is not None:
                self._load[key] += 1

    def _score(self, task: Task, agent: Candidate, route: Route) -> Scored:
        repo = task.repo and task.repo in self._recent.get(agent.agent_id, ())
        repo_part = ("repo", W_REPO if repo else 0.0)
        if route.target not in LOCAL_MODEL_TARGETS:
            return Scored(agent.agent_id, route.model, (repo_part,), None)
        live = self._agents.get(agent.agent_id)
        url = live.ollama_url if live is not None else None
        ep = self._registry.lookup(url)
        key = self._key(url)
        load = -W_LOAD * self._load[key] if key is not None else 0.0
        health = -W_UNHEALTHY if ep is not None and ep.healthy is False else 0.0
        models = [route.model] if route.model == needs_of(task).model else list(agent.models[:MODELS_TRIED])
        best: Scored | None = None
        for model in models or [route.model]:
            probe = self._registry.probe_score(ep.id, model) if ep is not None and model else None
            warm = W_WARM if ep is not None and model in ep.warm else 0.0
            parts = (("probe", UNPROBED if probe is None else probe), ("warm", warm), ("load", round(load, 3)),
                     ("health", health), repo_part)  # fmt: skip
            scored = Scored(agent.agent_id, model, parts, ep)
            if best is None or scored.score > best.score:
                best = scored
        assert best is not None
        return best

    def order(self, task: Task, agents: list[Candidate]) -> list[Candidate]:
        """``agents`` best first for ``task`` (agents that cannot run it last, in their order)."""
        needs = needs_of(task)
        self._last, self._last_task = {}, task.id
        keyed: list[tuple[float, int, Candidate]] = []
        for i, agent in enumerate(agents):
            route = route_needs(needs, agent.executors, agent.models)
            if route is None:
                keyed.append((float("-inf"), i, agent))
                continue
            scored = self._score(task, agent, route)
            self._last[agent.agent_id] = scored
            keyed.append((-scored.score, i, agent))
        keyed.sort(key=lambda k: (k[0] if k[0] != float("-inf") else float("inf"), k[1]))
        return [agent for _, _, agent in keyed]

    def finish(self, task: Task, agent: Candidate, chosen: Route) -> Route:
        """The route with the model scored best, its placement and explanation; books the load and the repo."""
        scored = self._last.get(agent.agent_id) if self._last_task == task.id else None
        if scored is None:
            scored = self._score(task, agent, chosen)
        others = sorted((s.score for a, s in self._last.items() if a != agent.agent_id), reverse=True)
        ep = scored.endpoint
        if chosen.target in LOCAL_MODEL_TARGETS:
            live = self._agents.get(agent.agent_id)
            if (key := self._key(live.ollama_url if live else None)) is not None:
                self._load[key] += 1
        if task.repo:
            recent = self._recent.setdefault(agent.agent_id, deque(maxlen=RECENT_REPOS))
            self._recent.move_to_end(agent.agent_id)
            if task.repo in recent:
                recent.remove(task.repo)
            recent.append(task.repo)
            while len(self._recent) > AGENTS_REMEMBERED:
                self._recent.popitem(last=False)
        model = scored.model if chosen.target in LOCAL_MODEL_TARGETS else chosen.model
        placement = Placement(ep.id if ep else None, ep.url if ep else None, scored.score, scored.parts,
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
    versus = f"; best of {len(others) + 1} (runner-up {others[0]:.2f})" if others else "; the only candidate"
    fallback = f"; fell back from {chosen.preferred}" if chosen.fallback else ""
    return f"{where}: score {scored.score:.2f} ({terms}){versus}{fallback}; {chosen.reason}"
