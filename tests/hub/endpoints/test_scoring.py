"""The ranker the scheduler asks (hub/endpoints/scoring.py), over plain data: which agent and model win, and why."""

from __future__ import annotations

from pathlib import Path

from hub.agents import Agent, AgentRegistry
from hub.clock import ManualClock
from hub.endpoints.registry import Endpoint, EndpointRegistry, Warm
from hub.endpoints.scoring import EndpointRanker
from hub.endpoints.urls import endpoint_id
from hub.scheduler import Candidate, plan
from hub.settings import HubSettings
from hub.tasks import Task

LOCAL = frozenset({"ollama"})


def fleet(tmp_path: Path, *agents: tuple[str, str | None, frozenset[str], tuple[str, ...]]) -> tuple[
    EndpointRanker, EndpointRegistry, list[Candidate]
]:  # fmt: skip
    """A ranker over ``agents`` (id, endpoint URL, executors, models); endpoints gpu-good/gpu-bad/gpu-down."""
    clock = ManualClock()
    registry = EndpointRegistry(None, clock, HubSettings(data_dir=tmp_path))  # type: ignore[arg-type]  # no writes
    for name, score, warm, healthy in (
        ("good", 1.0, True, True),
        ("bad", 0.2, False, True),
        ("down", 1.0, True, False),
    ):
        url = f"http://gpu-{name}:11434"
        ep = Endpoint(id=endpoint_id(url), url=url, kind="ollama", created_at=0, healthy=healthy)
        ep.warm = {"m": Warm()} if warm else {}
        registry.endpoints[ep.id], registry.by_url[url] = ep, ep.id
        registry.probes[(ep.id, "m")] = {"score": score}
        registry.probes[(ep.id, "weak")] = {"score": 0.1}
    registry_agents = AgentRegistry(clock)
    candidates = []
    for agent_id, url, executors, models in agents:
        registry_agents.add(Agent(agent_id, 0, executors=executors, models=models, ollama_url=url))
        candidates.append(Candidate(agent_id, frozenset(), executors, models))
    ranker = EndpointRanker(registry, registry_agents)
    ranker.begin()
    return ranker, registry, candidates


def task(n: int, tier: str = "standard", **fields: object) -> Task:
    return Task(id=f"t{n}", description="d", created_at=n, updated_at=n,
                complexity={"effective_tier": tier}, **fields)  # type: ignore[arg-type]  # fmt: skip


def test_the_best_endpoint_wins_over_alike_agents_idle_longer(tmp_path: Path) -> None:
    """Agents alike are scored once per kind, and a better agent after them still wins."""
    ranker, _, idle = fleet(
        tmp_path,
        ("b1", "http://gpu-bad:11434", LOCAL, ("m",)),
        ("b2", "http://gpu-bad:11434", LOCAL, ("m",)),
        ("g1", "http://gpu-good:11434", LOCAL, ("m",)),
    )
    [match] = plan([task(1)], idle, bool, ranker=ranker)
    assert match.agent_id == "g1"
    assert match.route.placement is not None and match.route.placement.score == 1.5
    assert "best of 3 (runner-up 0.20)" in match.route.placement.explanation


def test_a_preferred_target_beats_a_higher_scored_fallback(tmp_path: Path) -> None:
    """A complex task goes to Claude even when a local model scores higher (the local model is its fallback)."""
    ranker, _, idle = fleet(
        tmp_path, ("local", "http://gpu-good:11434", LOCAL, ("m",)), ("claude", None, frozenset({"claude"}), ())
    )
    [match] = plan([task(1, "complex")], idle, bool, ranker=ranker)
    assert match.agent_id == "claude" and not match.route.fallback


def test_the_agent_s_best_model_is_chosen_unless_the_task_pins_one(tmp_path: Path) -> None:
    """Among an agent's models the best probed one is used; a pinned model is kept whatever its score."""
    ranker, _, idle = fleet(tmp_path, ("a", "http://gpu-good:11434", LOCAL, ("weak", "m")))
    [match] = plan([task(1)], idle, bool, ranker=ranker)
    assert match.route.model == "m"
    ranker.begin()
    [pinned] = plan([task(2, metadata={"model": "weak"})], idle, bool, ranker=ranker)
    assert pinned.route.model == "weak" and pinned.route.placement is not None
    assert dict(pinned.route.placement.parts)["probe"] == 0.1


def test_an_unhealthy_endpoint_and_load_count_against(tmp_path: Path) -> None:
    """An unhealthy endpoint loses to a healthy one; tasks booked in a round load their endpoint for the next."""
    ranker, _, idle = fleet(
        tmp_path,
        ("d", "http://gpu-down:11434", LOCAL, ("m",)),
        ("g1", "http://gpu-good:11434", LOCAL, ("m",)),
        ("g2", "http://gpu-good:11434", LOCAL, ("m",)),
        ("b", "http://gpu-bad:11434", LOCAL, ("m",)),
    )
    matches = plan([task(n) for n in range(4)], idle, bool, ranker=ranker)
    assert [m.agent_id for m in matches] == ["g1", "g2", "b", "d"]
    assert [m.route.placement.score for m in matches if m.route.placement] == [1.5, 1.1, 0.2, -0.5]


def test_the_decision_names_the_endpoint_as_the_agent_reaches_it(tmp_path: Path) -> None:
    """An agent that reported localhost from another machine is scored on that machine's endpoint, and its
    decision hands it back its own URL (the hub's name for the server may not be reachable from the agent)."""
    ranker, registry, idle = fleet(tmp_path, ("remote", "http://localhost:11434", LOCAL, ("m",)))
    good = registry.lookup("http://gpu-good:11434")
    assert good is not None
    registry.agent_endpoint["remote"] = good.id  # what agent_reported records for an agent on gpu-good
    [match] = plan([task(1)], idle, bool, ranker=ranker)
    placement = match.route.placement
    assert placement is not None and placement.endpoint_id == good.id and placement.score == 1.5
    assert placement.endpoint_url == "http://localhost:11434"
