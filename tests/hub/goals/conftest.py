"""Goal tests never reach a real model: an Anthropic key in the environment is hidden from the hubs they start."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import browser  # noqa: F401 (Chromium for the Goals panel test)


@pytest.fixture(autouse=True)
def _no_real_claude(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
