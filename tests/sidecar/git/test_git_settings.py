"""The ``git`` settings group: the https token is a secret like the agent's, the mirrors default beside the state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar.settings import SettingsError, load_settings

GIT_TOKEN = "ghp_SETTINGSSECRET0123456789abcdefgh"


def test_the_git_token_comes_from_the_env_and_leaves_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENTCOM_SIDECAR_GIT__HTTPS_TOKEN is read, then removed from the environment, and never shown."""
    monkeypatch.setenv("AGENTCOM_SIDECAR_GIT__HTTPS_TOKEN", GIT_TOKEN)
    s = load_settings(None, agent_id="a", token="t", hub_url="http://h:1", state_dir=tmp_path / "state")
    assert s.git.https_token is not None and s.git.https_token.get_secret_value() == GIT_TOKEN
    assert "AGENTCOM_SIDECAR_GIT__HTTPS_TOKEN" not in os.environ
    for text in (repr(s), str(s), s.model_dump_json()):
        assert GIT_TOKEN not in text
    assert s.mirror_root == tmp_path / "mirrors"


def test_a_bad_git_token_is_reported_without_its_value(tmp_path: Path) -> None:
    """An invalid git.https_token is named in the error without echoing the value; other git fields are listed."""
    with pytest.raises(SettingsError) as info:
        load_settings(None, agent_id="a", token="t", hub_url="http://h:1",
                      git={"https_token": ["s3cr3t-in-a-list"], "fetch_timeout_s": -1})  # fmt: skip
    text = str(info.value)
    assert "git.https_token" in text and "s3cr3t" not in text
    assert "git.fetch_timeout_s: Input should be greater than 0 (got -1)" in text


def test_an_explicit_mirror_root_wins(tmp_path: Path) -> None:
    """git.mirror_root, when set, is where the mirrors go."""
    s = load_settings(None, agent_id="a", token="t", hub_url="http://h:1", git={"mirror_root": tmp_path / "m"})
    assert s.mirror_root == tmp_path / "m"
