"""``agentcom onboard`` and ``agentcom offboard``: add an agent host to a hub, or remove it, in one command.

This is the entry point: it parses and checks the arguments; :mod:`sidecar.host.onboarding` does the work.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from sidecar.host import offboarding, onboarding
from sidecar.host.onboarding import EXIT_USAGE, UsageError, agents_base

AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""An agent id the hub accepts (the pattern of ``POST /admin/tokens``)."""


def admin_token_from(args: argparse.Namespace) -> str:
    """The admin token from ``--admin-token-file``, ``--admin-token`` or ``AGENTCOM_ADMIN_TOKEN``, in that order."""
    if args.admin_token_file:
        try:
            token = Path(args.admin_token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --admin-token-file {args.admin_token_file}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"--admin-token-file {args.admin_token_file} is empty")
        return token
    token = (args.admin_token or os.environ.get("AGENTCOM_ADMIN_TOKEN") or "").strip()
    if not token:
        raise UsageError("no admin token: pass --admin-token-file FILE (or --admin-token, or set AGENTCOM_ADMIN_TOKEN)")
    return token


def hub_url_from(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--hub must look like http://host:port (got {value!r})")
    return value.rstrip("/")


def check_name(name: str) -> str:
    """``name`` if the hub accepts it as an agent id (the pattern of ``POST /admin/tokens``)."""
    if not AGENT_ID.fullmatch(name):
        raise UsageError(
            f"--name {name!r}: letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128)"
        )
    return name


def run_onboard(args: argparse.Namespace) -> int:
    """``agentcom onboard``; 0 when the agent proved itself, 1 on a failure, 2 on bad arguments."""
    try:
        admin_token = admin_token_from(args)
        hub = hub_url_from(args.hub)
        name = check_name(args.name) if args.name else None
        home = Path(args.home).expanduser().resolve() if args.home else (agents_base() / name if name else None)
        if args.rejoin and not name:
            raise UsageError("--rejoin needs --name (the agent to re-register)")
        onboarding.check_config(args, hub, name, home)
    except UsageError as exc:
        print(f"agentcom onboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return onboarding.onboard(args, hub, admin_token, name, home)


def run_offboard(args: argparse.Namespace) -> int:
    """``agentcom offboard``: stop the pm2 process, revoke the token, remove the home; 1 if any step failed."""
    try:
        admin_token = admin_token_from(args)
        hub = hub_url_from(args.hub)
        name = check_name(args.name)
    except UsageError as exc:
        print(f"agentcom offboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    home = Path(args.home).expanduser().resolve() if args.home else agents_base() / name
    return offboarding.offboard(args, hub, admin_token, name, home)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _admin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", required=True, help="the hub's URL, e.g. http://hub-host:4000")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--admin-token-file", metavar="FILE", help="file holding the hub's admin token")
    group.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="the admin token (visible in `ps`: prefer the file or AGENTCOM_ADMIN_TOKEN)",
    )


def add_onboard_arguments(parser: argparse.ArgumentParser) -> None:
    _admin_arguments(parser)
    parser.add_argument("--name", help="agent id (default: a free Culture ship name, gcu-...)")
    parser.add_argument("--home", help="agent home: config, state, workspaces, logs (default ~/.agentcom/<name>)")
    parser.add_argument("--capabilities", type=_csv, default=["shell"], help="comma-separated (default: shell)")
    parser.add_argument("--ollama-url", help="a local Ollama, e.g. http://127.0.0.1:11434 (enables the model executor)")
    parser.add_argument("--models", type=_csv, default=[], help="comma-separated model names this agent serves")
    parser.add_argument("--uid-base", type=int, help="first of the sandbox's 1000 uids (default: a free range here)")
    parser.add_argument(
        "--rejoin",
        action="store_true",
        help="the name is already registered: revoke its token, mint a new one, reuse its home",
    )
    parser.add_argument("--no-pm2", action="store_true", help="do not start under pm2; print the command instead")
    parser.add_argument("--no-test", action="store_true", help="skip the test task")


def add_offboard_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the agent id to remove")
    _admin_arguments(parser)
    parser.add_argument("--home", help="the agent's home (default ~/.agentcom/<name>)")
    parser.add_argument("--keep-files", action="store_true", help="keep the agent's home directory")
