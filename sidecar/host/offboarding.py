"""Offboarding an agent host: what ``agentcom offboard`` does, undoing :mod:`sidecar.host.onboarding`.

It stops the agent's pm2 process, revokes its tokens on the hub and removes its home, but only a home whose config
names that agent. Each step is reported; a failed step does not stop the others.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import httpx

from sidecar.host import pm2
from sidecar.host.onboarding import CONFIG_NAME, EXIT_FAIL, EXIT_OK, HTTP_TIMEOUT_S, Report, why
from sidecar.host.pm2 import app_name


def owns_home(home: Path, name: str) -> bool:
    """Whether ``home`` is ``name``'s agent home (its config names that agent), so removing it is safe."""
    try:
        return json.loads((home / CONFIG_NAME).read_text()).get("agent_id") == name
    except (OSError, ValueError, AttributeError):
        return False


def offboard(args: argparse.Namespace, hub: str, admin_token: str, name: str, home: Path) -> int:
    """``agentcom offboard``: stop the pm2 process, revoke the token, remove the home; 1 if any step failed."""
    out, app = Report(), app_name(name)
    out.say(f"== agentcom offboard {name}: hub {hub}")
    out.step(1, 3, f"stop the pm2 process {app}")
    if shutil.which("pm2") is None:
        out.skip("pm2 is not installed: nothing to stop")
    else:
        pm2.stop(app, out)
    out.step(2, 3, f"revoke the token of {name}")
    try:
        r = httpx.delete(
            f"{hub}/admin/tokens/{name}", headers={"Authorization": f"Bearer {admin_token}"}, timeout=HTTP_TIMEOUT_S
        )
        if r.status_code == 200:
            out.ok(f"revoked {r.json().get('revoked', '?')} token(s)")
        elif r.status_code == 404:
            out.ok(f"{name} has no token on the hub (already revoked)")
        else:
            out.fail(f"the hub answered HTTP {r.status_code} to DELETE /admin/tokens/{name}")
    except httpx.HTTPError as exc:
        out.fail(f"hub {hub} unreachable ({why(exc)}); revoke later: DELETE {hub}/admin/tokens/{name}")
    out.step(3, 3, f"remove {home}")
    if args.keep_files:
        out.skip(f"kept {home} (--keep-files)")
    elif not home.exists():
        out.ok(f"{home} does not exist")
    elif not owns_home(home, name):
        out.fail(f"{home} holds no {CONFIG_NAME} for {name}: not removing it (remove it yourself if it is right)")
    else:
        try:
            shutil.rmtree(home)
            out.ok(f"removed {home}")
        except OSError as exc:
            out.fail(f"could not remove {home}: {exc.strerror}")
    if out.failures:
        out.say(f"== FAIL: {out.failures} step(s) failed; see above")
        return EXIT_FAIL
    out.say(f"== PASS: {name} is offboarded")
    return EXIT_OK
