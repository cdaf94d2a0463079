"""The demo's tiny Python project: a calculator whose ``add`` is wrong, the test that shows it, and the fix.

The demo commits :data:`FILES` to a new bare repository; the scripted agent (``calc_fix`` in
:mod:`shared.fakes.script`) writes :data:`CALC_FIXED_PY` over ``calc.py``. The test runs with plain ``python3`` (the
sandbox has no pytest) and under pytest alike.
"""

from __future__ import annotations

import hashlib

CALC_PY = '''\
"""A tiny calculator."""


def add(a, b):
    return a - b


def mul(a, b):
    return a * b
'''
CALC_FIXED_PY = CALC_PY.replace("    return a - b", '    """The sum of a and b."""\n    return a + b')
"""The fix (a size of its own: a same-sized file rewritten within the second can leave Python a stale .pyc)."""
TEST_CALC_PY = '''\
"""Checks calc.py: ``python3 test_calc.py`` (exits non-zero on a failure) or ``python3 -m pytest -q``."""

from calc import add, mul


def test_add():
    assert add(2, 3) == 5, f"add(2, 3) == {add(2, 3)}"


def test_mul():
    assert mul(4, 5) == 20, f"mul(4, 5) == {mul(4, 5)}"


if __name__ == "__main__":
    test_add()
    test_mul()
    print("ok: 2 tests passed")
'''
README = "# calc\n\nA tiny calculator. Run the tests with `python3 test_calc.py`.\n"
GITIGNORE = "__pycache__/\n*.pyc\n"
FILES = {"calc.py": CALC_PY, "test_calc.py": TEST_CALC_PY, "README.md": README, ".gitignore": GITIGNORE}
TEST_COMMAND = "python3 test_calc.py"
FORGE_REPO = "acme/calc"
FAKE_TOKEN = "ghp_" + hashlib.sha256(b"agentcom demo: not a credential").hexdigest()[:36]
"""A string shaped like a GitHub token (``ghp_`` and 36 characters) that opens nothing: the secret scan must block
it (it is derived here so that no token-shaped literal sits in the source)."""
DEPLOY_CFG = f"[release]\nchannel = stable\ntoken = {FAKE_TOKEN}\n"
FIX_TASK = "Fix add() in calc.py so that test_calc.py passes"
DEPLOY_TASK = "Write deploy.cfg with the release channel and the deploy token"
DEPLOY_CHECK = "deploy.cfg names the release channel [[script:calc_secret]]"
"""The marker picks the scripted trajectory writing the token. It sits in the task's success criteria, which reach
the agent's prompt but not the hub's verification prompt (a marker there would pick the script for the hub's
model too); a real model ignores it."""
FIX_PLAN = {"description": FIX_TASK, "depends_on": [], "files": ["calc.py"], "verification": [TEST_COMMAND]}
"""The fix as the hub's model plans it."""
DEPLOY_PLAN = {"description": DEPLOY_TASK, "depends_on": [0], "files": ["deploy.cfg"], "verification": [DEPLOY_CHECK]}
GOAL = "Make the calculator's tests pass: add() in calc.py returns the wrong result."
GOAL_PR = "Fix add() in calc.py and write the release settings to deploy.cfg."
