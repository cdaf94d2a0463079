"""Where the hub is and how to authenticate, and the one HTTP client every command uses.

Resolution order, first found wins: ``--url``/``--token`` flags; ``AGENTCOM_URL`` / ``AGENTCOM_TOKEN`` (or
``AGENTCOM_TOKEN_FILE``); the client config (``AGENTCOM_CLIENT_CONFIG``, else ``~/.config/agentcom/client.toml``
with ``url``, ``token`` or ``token_file``, ``ca_file``); finally a hub on this machine: its data dir's ``hub.url``
and ``admin.token`` (``--data-dir``, ``AGENTCOM_DATA_DIR``, else ``~/.agentcom/hub``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_CONFIG = Path.home() / ".config" / "agentcom" / "client.toml"
DEFAULT_DATA_DIR = Path.home() / ".agentcom" / "hub"
TIMEOUT_S = 30.0


class CliError(Exception):
    """A failure to show the user as one line (exit code 1), without a traceback."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    verify: bool | str = True

    def __repr__(self) -> str:  # never the token
        return f"Target(url={self.url!r}, token={'set' if self.token else 'unset'})"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token``, ``--token-file``, ``--data-dir``, ``--json`` for every client command."""
    group = parser.add_argument_group("hub connection")
    group.add_argument("--url", help="the hub's address, e.g. https://hub.example:4000 (env AGENTCOM_URL)")
    group.add_argument("--token", help="a bearer token (env AGENTCOM_TOKEN); prefer --token-file")
    group.add_argument("--token-file", type=Path, help="a file holding the token (env AGENTCOM_TOKEN_FILE)")
    group.add_argument("--ca-file", type=Path, help="CA bundle for a hub with its own TLS certificate")
    group.add_argument("--data-dir", type=Path, help="a local hub's data dir (for hub.url and admin.token)")
    parser.add_argument("--json", action="store_true", help="print JSON for programs instead of tables")


def _read_secret(path: Path) -> str:
    try:
        return path.expanduser().read_text().strip()
    except OSError as exc:
        raise CliError(f"cannot read the token file {path}: {exc.strerror}") from None


def _config_file() -> dict[str, Any]:
    path = Path(os.environ.get("AGENTCOM_CLIENT_CONFIG", DEFAULT_CONFIG)).expanduser()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"the client config {path} is not readable TOML: {exc}") from None


def resolve(args: argparse.Namespace) -> Target:
    """The hub and token from flags, environment, client config or the local hub's data dir (in that order)."""
    config = _config_file()
    data_dir = Path(args.data_dir or os.environ.get("AGENTCOM_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
    url = args.url or os.environ.get("AGENTCOM_URL") or config.get("url")
    if not url and (data_dir / "hub.url").is_file():
        url = (data_dir / "hub.url").read_text().strip()
    token = args.token or os.environ.get("AGENTCOM_TOKEN") or None
    token_file = args.token_file or os.environ.get("AGENTCOM_TOKEN_FILE") or config.get("token_file")
    if token is None and token_file:
        token = _read_secret(Path(token_file))
    token = token or config.get("token")
    if token is None and (data_dir / "admin.token").is_file():
        token = _read_secret(data_dir / "admin.token")
    if not url:
        raise CliError(
            "no hub address: pass --url, set AGENTCOM_URL, write url = ... in "
            f"{DEFAULT_CONFIG}, or run a hub on this machine (its {data_dir / 'hub.url'})"
        )
    ca = args.ca_file or config.get("ca_file")
    return Target(str(url).rstrip("/"), token, str(ca) if ca else True)


class Hub:
    """A small synchronous client: each call returns the decoded JSON or raises :class:`CliError` with the hub's
    error code and detail."""

    def __init__(self, target: Target) -> None:
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        self.target = target
        self._http = httpx.Client(base_url=target.url, headers=headers, timeout=TIMEOUT_S, verify=target.verify)

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the hub at {self.target.url}: {exc}") from None
        if response.status_code >= 400:
            raise CliError(_describe(response))
        return response.json() if response.content else None


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the hub answered {response.status_code}: {response.text[:200]}"
    if not isinstance(body, dict):
        return f"the hub answered {response.status_code}"
    parts = [f"{response.status_code} {body.get('error', 'error')}"]
    if body.get("detail"):
        parts.append(str(body["detail"]))
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            parts.append(f"{err.get('field', '?')}: {err.get('error', '')} {err.get('detail', '')}".strip())
    if response.status_code == 401:
        parts.append("(check the token: --token-file, AGENTCOM_TOKEN or the client config)")
    return "; ".join(parts)


def run_client(args: argparse.Namespace, action: Any) -> int:
    """Run ``action(hub, args)`` against the resolved hub; a :class:`CliError` becomes one line on stderr, exit 1."""
    try:
        with Hub(resolve(args)) as hub:
            return int(action(hub, args) or 0)
    except CliError as exc:
        print(f"agentcom: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
