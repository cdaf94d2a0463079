"""Helpers for the endpoint tests: agents that report an endpoint, fake Ollama models that call tools in one way."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from shared.agent_sim import AgentSim, Behaviour
from shared.fakes.script import Script, ScriptedCall, Turn
from tests.conftest import SCALE, HubHandle

CALL = ScriptedCall(name="write_file", arguments={"path": "hello.txt", "content": "hello"})
NATIVE = Script(name="native", turns=[Turn(tool_calls=[CALL], eval_tokens=20)])
"""A model that calls the tool natively (``tool_calls``)."""
JSON_IN_CONTENT = Script(
    name="json_in_content", turns=[Turn(content=json.dumps({"name": CALL.name, "arguments": CALL.arguments}))]
)
"""A model that writes the call as bare JSON in its content (qwen2.5-coder does)."""
CHATTY = Script(
    name="chatty", turns=[Turn(content="Sure! Here is the file:\n\n```text\nhello\n```\nSave it as hello.txt.")]
)
"""A model that never calls: prose and a fenced block with the file's text."""


async def connect_agent(
    hub: HubHandle,
    agent_id: str,
    *,
    ollama_url: str | None = None,
    models: list[str] | None = None,
    executors: list[str] | None = None,
    behaviour: Behaviour = "complete",
) -> AgentSim:
    """A simulated agent identifying with an endpoint, models and executors (as a sidecar does)."""
    token = await hub.mint_token(agent_id)
    sim = AgentSim(hub.ws_url, agent_id, token, behaviour=behaviour)
    await sim.connect(identify=False)
    frame: dict[str, Any] = {"type": "identify", "agent_id": agent_id, "token": token, "client_type": "sidecar",
                             "ollama_url": ollama_url, "models": models or [], "executors": executors}  # fmt: skip
    await sim.send({k: v for k, v in frame.items() if v is not None})
    await asyncio.wait_for(sim.identified.wait(), 10 * SCALE)
    return sim


async def wait_registry(hub: HubHandle, predicate: Any, timeout_s: float = 20) -> None:
    """Wait until ``predicate()`` holds for the hub's endpoint registry, woken by its changes."""
    await hub.hub.endpoints.wait_for(predicate, timeout_s * SCALE)
