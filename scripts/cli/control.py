"""``agentcom hub state|pause|resume|backup`` and ``agentcom goal submit|list|show|cancel``: the hub's autonomy,
its backups and its goal backlog, from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from scripts.agentcom import HUB_VERBS as HUB_VERBS  # the verbs that make `agentcom hub` a client
from scripts.cli.client import DEFAULT_DATA_DIR, Hub, add_connection_arguments, run_client
from scripts.cli.output import ago, emit_json, table


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, text in (
        ("state", "the hub's autonomy state"), ("pause", "stop the hub starting new autonomous work"),
        ("resume", "let the hub work on its own again"), ("history", "the hub's state transitions"),
        ("backup", "make a backup of the hub's database now"),
    ):  # fmt: skip
        add_connection_arguments(sub.add_parser(verb, help=text))
    restore = sub.add_parser(
        "restore", help="put a backup in place of the database (the hub must be stopped)",
        description="Check a backup and put it in place of the hub's database; the current one is moved aside.",
    )  # fmt: skip
    restore.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the stopped hub's data dir")
    restore.add_argument("--backup", type=Path, help="the backup file (default: the newest in DATA_DIR/backups)")


def run_hub(args: argparse.Namespace) -> int:
    return restore_offline(args) if args.verb == "restore" else run_client(args, _hub_verb)


def restore_offline(args: argparse.Namespace) -> int:
    """``agentcom hub restore``: with the data dir locked (no hub may run on it meanwhile), restore a backup."""
    from hub.data_lock import DataDirError, DataLock
    from hub.store import StoreError
    from hub.store.backup import restore

    data_dir = args.data_dir.expanduser()
    try:
        lock = DataLock.acquire(data_dir)
    except DataDirError as exc:
        print(f"agentcom hub restore: {exc}", file=sys.stderr)
        return 1
    try:
        used, moved = restore(data_dir, args.backup)
    except StoreError as exc:
        print(f"agentcom hub restore: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    print(f"restored {used} into {data_dir / 'agentcom.db'}" + (f"; the previous database is {moved}" if moved else ""))
    return 0


def _hub_verb(hub: Hub, args: argparse.Namespace) -> int:
    if args.verb == "backup":
        answer = hub.call("POST", "/admin/backup")
        emit_json(answer) if args.json else print(f"backup written: {answer.get('path')} ({answer.get('bytes')} bytes)")
        return 0
    if args.verb == "history":
        answer = hub.call("GET", "/api/hub/history")
        if args.json:
            emit_json(answer)
        else:
            rows = [(ago(h.get("ts")), h.get("from"), h.get("to"), h.get("reason")) for h in _items(answer, "history")]
            print(table(rows, ("when", "from", "to", "reason")) if rows else "no transitions yet")
        return 0
    method = "GET" if args.verb == "state" else "POST"
    answer = hub.call(method, f"/api/hub/{args.verb if args.verb != 'state' else 'state'}")
    if args.json:
        emit_json(answer)
    else:
        print(" ".join(f"{k}={v}" for k, v in answer.items() if not isinstance(v, dict | list)))
    return 0


def add_goal_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = sub.add_parser("submit", help="give the hub a goal in one sentence")
    submit.add_argument("description")
    submit.add_argument("--repo", help="the registered repository it is about")
    submit.add_argument("--priority", choices=("urgent", "high", "normal", "low"), default="normal")
    add_connection_arguments(submit)
    add_connection_arguments(sub.add_parser("list", help="list goals"))
    for name, text in (("show", "a goal with its tasks"), ("cancel", "cancel a goal and its queued tasks")):
        p = sub.add_parser(name, help=text)
        p.add_argument("goal_id")
        add_connection_arguments(p)


def run_goal(args: argparse.Namespace) -> int:
    return run_client(args, _goal_action)


def _goal_action(hub: Hub, args: argparse.Namespace) -> int:
    if args.action == "submit":
        body: dict[str, Any] = {"description": args.description, "priority": args.priority}
        if args.repo:
            body["repo"] = args.repo
        answer = hub.call("POST", "/api/goals", json=body)
        emit_json(answer) if args.json else print(answer.get("id") or answer.get("goal_id"))
    elif args.action == "list":
        answer = hub.call("GET", "/api/goals")
        if args.json:
            emit_json(answer)
        else:
            rows = [(g.get("id"), g.get("status"), g.get("repo"), ago(g.get("updated_at")), g.get("description"))
                    for g in _items(answer, "goals")]  # fmt: skip
            print(table(rows, ("id", "status", "repo", "updated", "description")) if rows else "no goals")
    elif args.action == "show":
        emit_json(hub.call("GET", f"/api/goals/{args.goal_id}"))
    else:
        answer = hub.call("POST", f"/api/goals/{args.goal_id}/cancel")
        emit_json(answer) if args.json else print(f"{args.goal_id}: cancelled")
    return 0


def _items(answer: Any, key: str) -> list[dict[str, Any]]:
    items = answer.get(key, []) if isinstance(answer, dict) else answer
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
