"""Fixtures shared by the sidecar tests: a real sandbox on a uid range of its own, and reachable workspaces."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from pathlib import Path

import pytest

from sidecar.sandbox.probe import probe_sandbox


@pytest.fixture(scope="module")
def sandbox():
    # A uid range of our own: a run's cleanup kills every process of its uid, so never share one with a sidecar.
    return asyncio.run(probe_sandbox(uid_base=200_000 + 1000 * random.randrange(10_000), kill_grace_s=1.0))


def searchable(tmp_path: Path) -> None:
    """Make the temp dirs above a workspace traversable: pytest makes its temp root 0700, and without bwrap's
    mounts the sandbox uid walks the real path to the workspace."""
    for directory in [tmp_path, *tmp_path.parents]:
        if directory == Path(tempfile.gettempdir()) or directory.stat().st_uid != os.geteuid():
            break
        directory.chmod(directory.stat().st_mode | 0o111)
