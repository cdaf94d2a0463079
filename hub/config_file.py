"""The hub's configuration file (TOML) and ``agentcom hub --print-config``.

Every setting of :class:`hub.settings.HubSettings` may be given in the file under its own name. Precedence, highest
first: command-line flags, ``AGENTCOM_*`` environment variables, the file, the defaults. Unknown names in the file
are an error naming them (a typo must not silently leave a default in place).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hub.settings import HubSettings

SECRET = "<redacted>"


class ConfigError(Exception):
    """The config file is unreadable, not TOML, or names a setting that does not exist."""


def read(path: Path) -> dict[str, Any]:
    """The settings in the TOML file ``path``, without those an ``AGENTCOM_*`` variable overrides."""
    try:
        values = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(values) - set(HubSettings.model_fields))
    if unknown:
        raise ConfigError(
            f"the config file {path} names unknown settings: {', '.join(unknown)} "
            f"(`agentcom hub --print-config` lists every setting)"
        )
    return {k: v for k, v in values.items() if f"AGENTCOM_{k.upper()}" not in os.environ}


def _toml_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return f'"{SECRET}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def render(settings: HubSettings) -> str:
    """The effective settings as a TOML file, each with its description; secrets redacted, unset ones commented."""
    lines = ["# AgentCom hub configuration (agentcom hub --config FILE). Every setting, with its effective value."]
    for name, field in HubSettings.model_fields.items():
        lines.append("")
        for line in (field.description or "").splitlines():
            lines.append(f"# {line.strip()}")
        value = getattr(settings, name)
        lines.append(f"# {name} =  (unset)" if value is None else f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
