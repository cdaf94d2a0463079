"""Credentials for the remotes: given to git only for the calls that talk to a remote (fetch, ls-remote, push).

A token for https goes through ``GIT_ASKPASS``: a small script (holding no secret) prints the user name or the token
from two environment variables that only that git process has. An ssh key goes through ``GIT_SSH_COMMAND``. Nothing
here is ever written into a repository's config, a mirror, a task tree or a sandboxed command's environment.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from sidecar.settings import GitSettings

ASKPASS_NAME = ".agentcom-askpass"
_ASKPASS = """#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "$AGENTCOM_GIT_USERNAME" ;;
  *) printf '%s\\n' "$AGENTCOM_GIT_TOKEN" ;;
esac
"""


def credential_env(settings: GitSettings, mirror_root: Path) -> dict[str, str]:
    """Environment entries that let git authenticate to a remote (empty when no credential is configured)."""
    env: dict[str, str] = {}
    if settings.https_token is not None:
        env["GIT_ASKPASS"] = str(_askpass_script(mirror_root))
        env["AGENTCOM_GIT_USERNAME"] = settings.https_username
        env["AGENTCOM_GIT_TOKEN"] = settings.https_token.get_secret_value()
    if settings.ssh_key_path is not None:
        key = shlex.quote(str(settings.ssh_key_path))
        env["GIT_SSH_COMMAND"] = f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes"
    return env


def secrets_of(settings: GitSettings) -> list[str]:
    """The secret values to redact from logs (the https token, the forge token)."""
    return [t.get_secret_value() for t in (settings.https_token, settings.forge_token) if t is not None]


def _askpass_script(mirror_root: Path) -> Path:
    mirror_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = mirror_root / ASKPASS_NAME
    if not path.exists() or path.read_text() != _ASKPASS:
        tmp = path.with_suffix(f".{os.getpid()}")
        tmp.write_text(_ASKPASS)
        tmp.chmod(0o700)
        tmp.replace(path)
    return path
