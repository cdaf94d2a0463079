"""The ``agentcom`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _doctor(args: argparse.Namespace) -> int:
    from sidecar.host.doctor import run_doctor
    from sidecar.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config) if args.config else None
    except SettingsError as exc:
        print(f"agentcom doctor: {exc}", file=sys.stderr)
        return 2
    return 0 if run_doctor(settings).ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentcom", description="AgentCom: run a fleet of AI coding agents.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from hub import main as hub_main

    p = sub.add_parser("hub", help="run the hub (HTTP API, agent and dashboard sockets)")
    hub_main.add_arguments(p)
    p.set_defaults(run=hub_main.run)

    from sidecar import main as sidecar_main

    p = sub.add_parser("sidecar", help="run a sidecar (one per agent host)")
    sidecar_main.add_arguments(p)
    p.set_defaults(run=sidecar_main.run)

    p = sub.add_parser("doctor", help="check this machine (sandbox level, bubblewrap, pm2) and, with --config, the hub")
    p.add_argument("--config", type=Path, help="a sidecar config file: also check its hub and Ollama")
    p.set_defaults(run=_doctor)

    from scripts import demo

    p = sub.add_parser("demo", help="run the local demo: hub, two sidecars and a model carry work to completion")
    demo.add_arguments(p)
    p.set_defaults(run=demo.run_demo)

    from scripts import onboard

    p = sub.add_parser("onboard", help="add this machine as an agent: check, register, configure, start, prove")
    onboard.add_onboard_arguments(p)
    p.set_defaults(run=onboard.run_onboard)
    p = sub.add_parser("offboard", help="remove an agent: stop its pm2 process, revoke its token, delete its files")
    onboard.add_offboard_arguments(p)
    p.set_defaults(run=onboard.run_offboard)

    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
