"""``agentcom task submit|list|show|cancel|retry|tail``: the task queue from the command line."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from scripts.cli.client import CliError, Hub, add_connection_arguments, run_client
from scripts.cli.output import ago, emit_json, table

FINAL = {"completed", "dead_letter", "cancelled"}
CHECK_TYPES = ("file_exists", "test_passes", "git_clean", "command_succeeds")
POLL_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = sub.add_parser("submit", help="queue a task", description="Queue a task; prints its id.")
    submit.add_argument("description", help="what to do, in a sentence")
    submit.add_argument("--executor", choices=("shell", "ollama", "claude"), help="who runs it (default: routed)")
    submit.add_argument("--command", dest="shell_command", help="the shell command (executor shell)")
    submit.add_argument("--repo", help="a registered repository the task works on")
    submit.add_argument("--priority", choices=("urgent", "high", "normal", "low"), default="normal")
    submit.add_argument("--model", help="pin a model (metadata.model)")
    submit.add_argument(
        "--check", action="append", default=[], metavar="TYPE:TARGET",
        help=f"a verification check, repeatable; TYPE is one of {', '.join(CHECK_TYPES)}",
    )  # fmt: skip
    submit.add_argument("--depends-on", action="append", default=[], metavar="TASK_ID")
    submit.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata; VALUE as JSON")
    submit.add_argument("--follow", action="store_true", help="then follow its events until it ends")
    lister = sub.add_parser("list", help="list tasks")
    lister.add_argument("--status", choices=("queued", "assigned", "working", *sorted(FINAL)))
    lister.add_argument("--limit", type=int, default=50)
    lister.add_argument(
        "--search", "-s", metavar="TEXT",
        help="only tasks whose id, description, repository, agent or goal holds TEXT (ignoring case)",
    )  # fmt: skip
    for name, text in (
        ("show", "show one task"), ("cancel", "cancel a task"), ("retry", "requeue a dead-lettered task"),
        ("tail", "follow a task's live events until it ends"),
    ):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("task_id")
        add_connection_arguments(p)
    for p in (submit, lister):
        add_connection_arguments(p)


def run(args: argparse.Namespace) -> int:
    return run_client(args, ACTIONS[args.action])


def _check(spec: str) -> dict[str, str]:
    kind, sep, target = spec.partition(":")
    if not sep or kind not in CHECK_TYPES or not target:
        raise CliError(f"--check {spec!r}: expected TYPE:TARGET with TYPE one of {', '.join(CHECK_TYPES)}")
    return {"type": kind, "target": target}


def _meta(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--meta {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw  # a bare word is a string
    return out


def submit(hub: Hub, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"description": args.description, "priority": args.priority}
    metadata = _meta(args.meta)
    if args.shell_command:
        metadata["shell_command"] = args.shell_command
        body["executor"] = args.executor or "shell"
    elif args.executor:
        body["executor"] = args.executor
    if args.model:
        metadata["model"] = args.model
    if metadata:
        body["metadata"] = metadata
    if args.repo:
        body["repo"] = args.repo
    if args.check:
        body["verification_steps"] = [_check(c) for c in args.check]
    if args.depends_on:
        body["depends_on"] = args.depends_on
    created = hub.call("POST", "/api/tasks", json=body)
    task_id = created["task_id"]
    if args.json and not args.follow:
        emit_json(created)
    elif not args.json:
        print(task_id)
    return _follow(hub, task_id, args.json) if args.follow else 0


def list_tasks(hub: Hub, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": max(1, args.limit)}
    if args.status:
        params["status"] = args.status
    if args.search:
        params["q"] = args.search
    tasks = hub.call("GET", "/api/tasks", params=params)["tasks"]
    if args.json:
        emit_json(tasks)
        return 0
    rows = [
        (t.get("id"), t.get("status"), t.get("priority_name"), t.get("assigned_to"), ago(t.get("updated_at")),
         t.get("description"))
        for t in tasks
    ]  # fmt: skip
    print(table(rows, ("id", "status", "priority", "agent", "updated", "description")) if rows else "no tasks")
    return 0


def show(hub: Hub, args: argparse.Namespace) -> int:
    task = hub.call("GET", f"/api/tasks/{args.task_id}")
    if args.json:
        emit_json(task)
        return 0
    for key in ("id", "status", "outcome", "priority_name", "executor", "repo", "assigned_to", "retry_count",
                "last_error", "description"):  # fmt: skip
        if task.get(key) not in (None, "", []):
            print(f"{key:>14}: {task[key]}")
    result = task.get("result") or {}
    for key in ("termination_reason", "output", "error"):
        if result.get(key):
            print(f"{key:>14}: {str(result[key])[:2000]}")
    history = task.get("history") or []
    if history:
        print("       history:")
        for entry in history[-20:]:
            who = (entry.get("details") or {}).get("agent_id") or ""
            print(f"                {ago(entry.get('timestamp'))}  {entry.get('event')}  {who}")
    return 0


def cancel(hub: Hub, args: argparse.Namespace) -> int:
    answer = hub.call("POST", f"/api/tasks/{args.task_id}/cancel")
    emit_json(answer) if args.json else print(f"{args.task_id}: cancelled (was {answer.get('previous_status')})")
    return 0


def retry(hub: Hub, args: argparse.Namespace) -> int:
    answer = hub.call("POST", f"/api/tasks/{args.task_id}/retry")
    emit_json(answer) if args.json else print(f"{args.task_id}: requeued")
    return 0


def tail(hub: Hub, args: argparse.Namespace) -> int:
    return _follow(hub, args.task_id, args.json)


def _follow(hub: Hub, task_id: str, as_json: bool) -> int:
    """Print the task's lifecycle events as they happen, then its end state; exit 0 if it completed."""
    after = 0
    while True:
        page = hub.call("GET", f"/api/tasks/{task_id}/events", params={"after_seq": after, "limit": 500})
        for event in page["events"]:
            if as_json:
                print(json.dumps(event, sort_keys=True))
            else:
                detail = event.get("reason") or event.get("outcome") or event.get("agent_id") or ""
                print(f"{time.strftime('%H:%M:%S', time.localtime(event.get('at', 0) / 1000))}  "
                      f"{event.get('kind', '?'):<20} {detail}")  # fmt: skip
        after = page["next_after_seq"]
        task = hub.call("GET", f"/api/tasks/{task_id}")
        if task["status"] in FINAL and not page["events"]:
            if not as_json:
                print(f"{task_id}: {task['status']}" + (f" ({task['outcome']})" if task.get("outcome") else ""))
            return 0 if task["status"] == "completed" and task.get("outcome") != "failed" else 1
        if not page["events"]:
            time.sleep(POLL_S)


ACTIONS = {"submit": submit, "list": list_tasks, "show": show, "cancel": cancel, "retry": retry, "tail": tail}
