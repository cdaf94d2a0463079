"""Sidecar settings: config files, env overrides, clear errors, secrets kept secret."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sidecar.settings import ENV_PREFIX, SettingsError, load_settings

TOKEN = "tok-very-secret-123"


def write_toml(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    return write_toml(
        tmp_path / "sidecar.toml",
        f'agent_id = "gcu-one"\ntoken = "{TOKEN}"\nhub_url = "http://127.0.0.1:4000"\n'
        '[limits]\nheartbeat_interval_s = 5\n[workspace]\ncleanup = "on_success"\nkeep_last_n = 2\n',
    )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_toml_file_is_loaded_with_defaults(toml_file: Path) -> None:
    """A TOML file sets its fields; the rest take their documented defaults."""
    s = load_settings(toml_file)
    assert s.agent_id == "gcu-one"
    assert s.token.get_secret_value() == TOKEN
    assert s.limits.heartbeat_interval_s == 5
    assert s.limits.pong_timeout_s == 10
    assert (s.limits.backoff_initial_s, s.limits.backoff_max_s) == (1, 60)
    assert s.workspace.cleanup == "on_success" and s.workspace.keep_last_n == 2


def test_json_file_is_loaded(tmp_path: Path) -> None:
    """A JSON file works the same way as TOML."""
    path = tmp_path / "sidecar.json"
    path.write_text(json.dumps({"agent_id": "a", "token": TOKEN, "hub_url": "ws://hub:4000/ws", "models": ["m"]}))
    s = load_settings(path)
    assert s.models == ["m"]
    assert s.ws_url == "ws://hub:4000/ws"
    assert s.http_url == "http://hub:4000"


@pytest.mark.parametrize(
    ("hub_url", "ws_url", "http_url"),
    [
        ("http://127.0.0.1:4000", "ws://127.0.0.1:4000/ws", "http://127.0.0.1:4000"),
        ("http://127.0.0.1:4000/", "ws://127.0.0.1:4000/ws", "http://127.0.0.1:4000"),
        ("https://hub.lan", "wss://hub.lan/ws", "https://hub.lan"),
        ("ws://hub:9/ws", "ws://hub:9/ws", "http://hub:9"),
        ("wss://hub/prefix", "wss://hub/prefix/ws", "https://hub/prefix"),
    ],
)
def test_hub_url_forms(tmp_path: Path, hub_url: str, ws_url: str, http_url: str) -> None:
    """Any of the hub URL forms yields the agent socket URL and the HTTP base URL."""
    s = load_settings(None, agent_id="a", token=TOKEN, hub_url=hub_url)
    assert (s.ws_url, s.http_url) == (ws_url, http_url)


def test_env_overrides_file_including_nested(toml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENTCOM_SIDECAR_* variables win over the file, nested fields through ``__``."""
    monkeypatch.setenv("AGENTCOM_SIDECAR_AGENT_ID", "from-env")
    monkeypatch.setenv("AGENTCOM_SIDECAR_LIMITS__PONG_TIMEOUT_S", "3")
    s = load_settings(toml_file)
    assert s.agent_id == "from-env"
    assert s.limits.pong_timeout_s == 3
    assert s.limits.heartbeat_interval_s == 5, "the file's other nested values stay"


def test_token_from_env_is_removed_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token may come from the environment; it is then removed so child processes cannot inherit it."""
    path = write_toml(tmp_path / "s.toml", 'agent_id = "a"\nhub_url = "http://h:1"\n')
    monkeypatch.setenv("AGENTCOM_SIDECAR_TOKEN", TOKEN)
    s = load_settings(path)
    assert s.token.get_secret_value() == TOKEN
    assert "AGENTCOM_SIDECAR_TOKEN" not in os.environ


def test_relative_paths_resolve_against_the_config_file(toml_file: Path) -> None:
    """Relative state_dir and workspace_root are relative to the config file's directory."""
    s = load_settings(toml_file)
    assert s.state_dir == toml_file.parent / "state"
    assert s.workspace_root == toml_file.parent / "workspaces"


def test_token_never_in_repr_str_or_dump(toml_file: Path) -> None:
    """The token does not appear in repr, str or a JSON dump of the settings."""
    s = load_settings(toml_file)
    for text in (repr(s), str(s), s.model_dump_json()):
        assert TOKEN not in text


def test_every_bad_field_is_listed(tmp_path: Path) -> None:
    """One error message names each bad field, with the offending value, and each missing one with its env var."""
    path = write_toml(
        tmp_path / "bad.toml",
        'token = ""\nhub_url = "ftp://x"\n[limits]\npong_timeout_s = -1\nheartbeat_interval_s = "often"\n'
        '[workspace]\ncleanup = "sometimes"\n',
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    text = str(info.value)
    assert "agent_id: required" in text and "AGENTCOM_SIDECAR_AGENT_ID" in text
    assert "hub_url: " in text and "ftp://x" in text
    assert "limits.pong_timeout_s: Input should be greater than 0 (got -1)" in text
    assert "limits.heartbeat_interval_s:" in text and "'often'" in text
    assert "workspace.cleanup:" in text and "'sometimes'" in text
    assert "token:" in text


def test_bad_token_value_is_not_echoed(tmp_path: Path) -> None:
    """A token that fails validation is reported without its value."""
    long_token = "s3cr3t" * 50
    path = write_toml(tmp_path / "t.toml", f'agent_id = "a"\nhub_url = "http://h:1"\ntoken = "{long_token}"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert "token:" in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_unknown_keys_are_rejected(toml_file: Path) -> None:
    """A misspelt key is an error instead of being silently ignored."""
    toml_file.write_text(toml_file.read_text() + "[limitz]\nx = 1\n")
    with pytest.raises(SettingsError, match="limitz: unknown field"):
        load_settings(toml_file)


def test_backoff_cap_must_not_be_below_initial(toml_file: Path) -> None:
    """backoff_max_s below backoff_initial_s is refused."""
    toml_file.write_text(
        toml_file.read_text().replace("[limits]\n", "[limits]\nbackoff_initial_s = 10\nbackoff_max_s = 5\n")
    )
    with pytest.raises(SettingsError, match="backoff_max_s must be at least backoff_initial_s"):
        load_settings(toml_file)


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("s.toml", "agent_id = ", "not valid TOML"),
        ("s.json", "{", "not valid JSON"),
        ("s.json", "[1]", "must be a table/object"),
        ("s.yaml", "a: 1", "use a .toml or .json file"),
    ],
)
def test_unreadable_files_give_clear_errors(tmp_path: Path, name: str, body: str, message: str) -> None:
    """Syntax errors, wrong top-level types and unknown formats are reported by file."""
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(SettingsError, match=message):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    """A config path that does not exist is reported as such."""
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml")


def test_sandbox_limits_map_to_sandbox_limits(toml_file: Path) -> None:
    """The sandbox section becomes the sandbox's Limits."""
    toml_file.write_text(toml_file.read_text() + "[sandbox]\ncpu_s = 7\nnetwork = true\n")
    s = load_settings(toml_file)
    assert s.sandbox.to_limits().cpu_s == 7 and s.sandbox.network is True
