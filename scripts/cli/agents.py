"""``agentcom agents``: the fleet as the hub sees it."""

from __future__ import annotations

import argparse

from scripts.cli.client import Hub, add_connection_arguments, run_client
from scripts.cli.output import ago, emit_json, table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent_id", nargs="?", help="show one agent in full")
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_client(args, show)


def show(hub: Hub, args: argparse.Namespace) -> int:
    if args.agent_id:
        emit_json(hub.call("GET", f"/api/agents/{args.agent_id}"))
        return 0
    answer = hub.call("GET", "/api/agents")
    agents = answer.get("agents", answer) if isinstance(answer, dict) else answer
    if args.json:
        emit_json(agents)
        return 0
    rows = [
        (a.get("agent_id"), a.get("fsm_state") or a.get("status"), a.get("current_task_id"),
         ",".join(a.get("executors") or []), ",".join(a.get("models") or []), ago(a.get("last_seen")))
        for a in agents
    ]  # fmt: skip
    print(table(rows, ("agent", "state", "task", "executors", "models", "seen")) if rows else "no agents")
    return 0
