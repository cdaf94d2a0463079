"""Pick the strongest sandbox level that actually runs a command on this machine (once, at start-up)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from sidecar.sandbox import bwrap, landlock_rules
from sidecar.sandbox.base import SandboxLevel, SandboxUnavailable
from sidecar.sandbox.bwrap import BwrapSandbox
from sidecar.sandbox.supervised import LandlockSandbox, RlimitsSandbox
from sidecar.sandbox.uids import DEFAULT_UID_BASE, UID_LOCK_DIR
from sidecar.sandbox.wrapped import WrappedSandbox

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 20.0


def _unavailable_reason(level: SandboxLevel) -> str | None:
    if level is SandboxLevel.BWRAP and (missing := bwrap.tools_missing()):
        return f"{', '.join(missing)} not installed"
    if level is SandboxLevel.LANDLOCK and landlock_rules.abi_version() < 1:
        return "the kernel has no Landlock"
    return None


def _make(level: SandboxLevel, uid_base: int, kill_grace_s: float, uid_lock_dir: Path) -> WrappedSandbox:
    cls = {SandboxLevel.BWRAP: BwrapSandbox, SandboxLevel.LANDLOCK: LandlockSandbox}.get(level, RlimitsSandbox)
    return cls(uid_base=uid_base, kill_grace_s=kill_grace_s, uid_lock_dir=uid_lock_dir)


async def _probe_failure(sandbox: WrappedSandbox) -> str | None:
    workspace = Path(tempfile.mkdtemp(prefix="agentcom-probe-"))
    try:
        done = await sandbox.run(["true"], workspace, timeout_s=_PROBE_TIMEOUT_S)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if done.returncode == 0:
        return None
    detail = (done.stderr.strip() or done.stdout.strip())[:300]
    return f"probe command exited {done.returncode}" + (f": {detail}" if detail else "")


async def probe_sandbox(
    prefer: SandboxLevel | None = None,
    *,
    uid_base: int = DEFAULT_UID_BASE,
    kill_grace_s: float = 3.0,
    uid_lock_dir: Path = UID_LOCK_DIR,
) -> WrappedSandbox:
    """Return the strongest sandbox that actually runs a command here (async: each candidate runs ``true``).

    The result implements :class:`Sandbox` and also has ``describe() -> str`` (one line for logs and the dashboard)
    and ``drops_uid`` (whether runs get their own unprivileged uid).

    Args:
        prefer: Force this level (tests, or an operator's setting): only it is tried. ``None`` tries
            bwrap, then landlock, then rlimits.
        uid_base: First uid of the per-run uids used when the sidecar is root. Sidecars on one host best get
            ranges of their own; where ranges overlap, the locks in ``uid_lock_dir`` still keep runs apart.
        kill_grace_s: After a timeout, how long the wrapper gets to kill the tree before its group is SIGKILLed.
        uid_lock_dir: Where the host's sidecars reserve uids (see :mod:`sidecar.sandbox.uids`).

    Raises:
        SandboxUnavailable: The forced level (or, without ``prefer``, every level) failed; the message says why.
    """
    failures = []
    for level in [prefer] if prefer is not None else list(SandboxLevel):
        reason = _unavailable_reason(level)
        if reason is None:
            sandbox = _make(level, uid_base, kill_grace_s, uid_lock_dir)
            reason = await _probe_failure(sandbox)
            if reason is None:
                logger.info("sandbox: using %s", sandbox.describe())
                return sandbox
        logger.warning("sandbox: %s unavailable: %s", level, reason)
        failures.append(f"{level}: {reason}")
    raise SandboxUnavailable("no working sandbox level: " + "; ".join(failures))
