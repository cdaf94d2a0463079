"""The ``agentcom`` command: one entry point, a subcommand per job.

Only the chosen subcommand's module is imported (to add its options and to run it), so ``agentcom --help`` loads
neither the hub's web stack nor the sidecar's model clients.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

HUB_VERBS = ("state", "pause", "resume", "history", "backup", "restore")


class Command(NamedTuple):
    """A subcommand: its help line and where its ``add_arguments(parser)`` and ``run(args) -> int`` live."""

    help: str
    module: str
    add_arguments: str
    run: str


COMMANDS = {
    "hub": Command("run the hub (HTTP API, agent and dashboard sockets)", "hub.main", "add_arguments", "run"),
    "sidecar": Command("run a sidecar (one per agent host)", "sidecar.main", "add_arguments", "run"),
    "doctor": Command("check this machine and, with --config, its hub, token, models and repos; --hub: a hub's store",
                      "scripts.agentcom", "add_doctor_arguments", "run_doctor"),
    "demo": Command("run the local demo: a goal carried by a hub, two sidecars and a model to a verified merge",
                    "scripts.demo", "add_arguments", "run_demo"),
    "task": Command("submit, list, show, cancel, retry or follow tasks on a hub", "scripts.cli.tasks",
                    "add_arguments", "run"),
    "goal": Command("give the hub a goal, list goals, show one with its tasks", "scripts.cli.control",
                    "add_goal_arguments", "run_goal"),
    "agents": Command("list the agents a hub knows, or show one", "scripts.cli.agents", "add_arguments", "run"),
    "onboard": Command("add this machine as an agent: check, register, configure, start, prove",
                       "scripts.onboard", "add_onboard_arguments", "run_onboard"),
    "offboard": Command("remove an agent: stop its pm2 process, revoke its token, delete its files",
                        "scripts.onboard", "add_offboard_arguments", "run_offboard"),
}  # fmt: skip
HUB_CONTROL = Command("control a hub: state, pause, resume, history, backup; restore (offline)", "scripts.cli.control",
                      "add_hub_arguments", "run_hub")  # fmt: skip
"""``agentcom hub VERB``: the hub command with a control verb talks to a running hub instead of starting one."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("agentcom")
    except PackageNotFoundError:
        return "unknown"


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    """``agentcom doctor``'s options."""
    parser.add_argument("--config", type=Path,
                        help="a sidecar config file: also check its hub, token, models and repositories "
                             "(with --hub: the hub's TOML config)")  # fmt: skip
    parser.add_argument("--hub", action="store_true",
                        help="check a hub instead: its store, backups, disk, process or port, endpoints")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, help="with --hub: the hub's data dir (default as the hub's)")
    parser.add_argument("--port", type=int, help="with --hub: the hub's port (default as the hub's)")


def run_hub_doctor(args: argparse.Namespace) -> int:
    """``agentcom doctor --hub``: 0 when every required check passed, 1 otherwise, 2 for an unusable config."""
    from hub import doctor
    from hub.config_file import ConfigError
    from hub.main import settings_from

    flags = argparse.Namespace(host=None, port=args.port, data_dir=args.data_dir, config=args.config)
    try:
        settings = settings_from(flags)
    except (ConfigError, ValueError) as exc:
        print(f"agentcom doctor: {exc}", file=sys.stderr)
        return 2
    return doctor.run(settings)


def run_doctor(args: argparse.Namespace) -> int:
    """``agentcom doctor``: 0 when every check passed, 1 otherwise, 2 for an unusable config."""
    if args.hub:
        return run_hub_doctor(args)
    from sidecar.host.doctor import run_doctor as check
    from sidecar.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config) if args.config else None
    except SettingsError as exc:
        print(f"agentcom doctor: {exc}", file=sys.stderr)
        return 2
    return 0 if check(settings).ok else 1


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The command line parser; only the subcommand named in ``argv`` (if any) gets its options, so only its
    module is imported."""
    parser = argparse.ArgumentParser(prog="agentcom", description="AgentCom: run a fleet of AI coding agents.")
    parser.add_argument("--version", action="version", version=f"agentcom {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    words = [arg for arg in argv if not arg.startswith("-")]
    chosen = words[0] if words else None
    for name, command in COMMANDS.items():
        if name == "hub" and chosen == "hub" and len(words) > 1 and words[1] in HUB_VERBS:
            command = HUB_CONTROL
        p = sub.add_parser(name, help=command.help)
        if name == chosen:
            module = importlib.import_module(command.module)
            getattr(module, command.add_arguments)(p)
            p.set_defaults(run=getattr(module, command.run))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
