"""Sidecar settings: one pydantic model, read once in ``main`` from a config file and ``AGENTCOM_SIDECAR_*`` variables.

The config file is TOML (``.toml``) or JSON (``.json``)::

    agent_id = "gcu-sleeper-service"
    token = "..."                       # or AGENTCOM_SIDECAR_TOKEN
    hub_url = "http://127.0.0.1:4000"   # http(s):// or ws(s)://; the socket is <hub_url>/ws
    capabilities = ["shell"]

    [limits]
    task_timeout_s = 600

    [workspace]
    cleanup = "keep_last"
    keep_last_n = 10

Environment variables win over the file; nested fields use ``__``, e.g.
``AGENTCOM_SIDECAR_LIMITS__HEARTBEAT_INTERVAL_S=5``. Relative paths are relative to the config file's directory.
"""

from __future__ import annotations

import json
import os
import ssl
import tomllib
import zlib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sidecar.sandbox.base import Limits, SandboxLevel
from sidecar.sandbox.uids import DEFAULT_UID_BASE

ENV_PREFIX = "AGENTCOM_SIDECAR_"
UID_RANGES = 64
SECRET_FIELDS = frozenset(
    {"token", "anthropic_api_key", "git__https_token", "git.https_token", "git__forge_token", "git.forge_token"}
)


class SettingsError(Exception):
    """The configuration is unusable; the message lists every bad field (never a secret's value)."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitSettings(_Group):
    task_timeout_s: float = Field(default=600.0, gt=0)
    """Wall-clock limit of one task's execution when the task does not set ``metadata.timeout_ms``."""
    verification_timeout_s: float = Field(default=120.0, gt=0)
    """Limit for the whole verification run when the task does not set ``verification_timeout_ms``."""
    heartbeat_interval_s: float = Field(default=30.0, gt=0)
    """A ``ping`` goes to the hub this often."""
    pong_timeout_s: float = Field(default=10.0, gt=0)
    """No ``pong`` within this time after a ping: the connection is dropped and re-opened."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """Limit for opening the socket and for the ``identify`` → ``identified`` exchange."""
    state_report_timeout_s: float = Field(default=10.0, gt=0)
    """How long to wait for ``state_report_ack`` before leaving the decision to the next connection."""
    backoff_initial_s: float = Field(default=1.0, gt=0)
    """First reconnect delay; delays double up to ``backoff_max_s``."""
    backoff_max_s: float = Field(default=60.0, gt=0)
    """Cap of the reconnect delay."""
    backoff_jitter: float = Field(default=0.3, ge=0, le=1)
    """Each delay is shortened by up to this fraction, at random, so a fleet does not reconnect in step."""
    resource_report_interval_s: float = Field(default=30.0, gt=0)
    """A ``resource_report`` goes to the hub this often while connected."""
    progress_batch_ms: int = Field(default=100, ge=1)
    """Command output is gathered for this long before one ``task_progress`` event is sent."""
    # --- budgets (issue 12) ---
    budget_timeout_s: float = Field(default=10.0, gt=0)
    """A model call waits this long for the hub's ``budget_grant``; no answer refuses the call (fail closed)."""
    budget_output_tokens: int = Field(default=2048, ge=1)
    """Completion tokens a ``budget_request`` reserves when the model sets no output limit of its own."""
    budget_pause_retry_s: float = Field(default=30.0, gt=0)
    """A model call refused by a pausing budget asks again this often (until granted or out of time)."""

    @model_validator(mode="after")
    def _check_backoff(self) -> LimitSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self


class SandboxSettings(_Group):
    level: SandboxLevel | None = None
    """Force one sandbox level (``bwrap``, ``landlock``, ``rlimits``); by default the strongest that works."""
    uid_base: int | None = Field(default=None, ge=1000, le=2**31 - 2000)
    """First of 1000 uids the sandbox runs commands as (when the sidecar is root). Sidecars on one host need
    disjoint ranges; by default the range is derived from the agent id (see :meth:`SidecarSettings.uid_base`)."""
    network: bool = False
    """Whether shell commands may use the network."""
    cpu_s: int = Field(default=Limits.cpu_s, gt=0)
    memory_bytes: int = Field(default=Limits.memory_bytes, gt=0)
    file_size_bytes: int = Field(default=Limits.file_size_bytes, gt=0)
    nproc: int = Field(default=Limits.nproc, gt=0)
    output_bytes: int = Field(default=Limits.output_bytes, gt=0)
    """Per stream; longer output keeps its head and tail (half of this each) around a marker."""

    def to_limits(self) -> Limits:
        """The sandbox's resource limits for one command."""
        return Limits(
            cpu_s=self.cpu_s,
            memory_bytes=self.memory_bytes,
            file_size_bytes=self.file_size_bytes,
            nproc=self.nproc,
            output_bytes=self.output_bytes,
        )


class WorkspaceSettings(_Group):
    cleanup: Literal["keep_last", "on_success", "never"] = "keep_last"
    """``keep_last``: keep the newest ``keep_last_n`` task directories; ``on_success``: delete a task's directory
    as soon as it succeeded (failed ones are kept, at most ``keep_last_n``); ``never``: keep everything."""
    keep_last_n: int = Field(default=10, ge=0)


# --- git repositories (sidecar/git) ---
class GitSettings(_Group):
    mirror_root: Path | None = None
    """Where the bare mirror of each repository is cached; by default ``mirrors`` beside ``state_dir``."""
    https_token: SecretStr | None = None
    """A token for https remotes, handed to git through ``GIT_ASKPASS`` for fetch, ls-remote and push only (or
    ``AGENTCOM_SIDECAR_GIT__HTTPS_TOKEN``). Never logged, never in a sandboxed command's environment."""
    https_username: str = Field(default="x-access-token", min_length=1, max_length=256)
    """The user name sent with ``https_token``."""
    ssh_key_path: Path | None = None
    """A private key for ssh remotes (``GIT_SSH_COMMAND``), used outside the sandbox only."""
    fetch_timeout_s: float = Field(default=300.0, gt=0)
    """Limit of one clone, fetch or push."""
    reach_timeout_s: float = Field(default=20.0, gt=0)
    """Limit of one ``git ls-remote`` when answering ``repo_registry``."""
    reach_concurrency: int = Field(default=4, ge=1, le=64)
    hardlinks: bool = True
    forge_token: SecretStr | None = None
    """Token for the forge API that opens pull requests (GitHub: a fine-grained token with pull-request write);
    ``AGENTCOM_SIDECAR_GIT__FORGE_TOKEN`` is read and removed from the environment."""
    forge_url: str = Field(default="https://api.github.com", max_length=512)
    """The forge API's base URL (GitHub Enterprise: ``https://host/api/v3``)."""
    """Task trees share the mirror's object files through hard links (safe when the sandbox runs commands as
    another uid, which cannot write the read-only object files); False copies them."""
    # Task branches in the mirrors (sidecar/git/prune.py): swept after each task and once at start.
    branch_keep_days: float = Field(default=14.0, gt=0)
    """A task branch whose tip was committed longer ago than this is deleted from the mirror."""
    branch_keep_max: int = Field(default=200, ge=0)
    """At most this many task branches stay in a mirror; the oldest beyond it are deleted."""
    branch_prune_batch: int = Field(default=500, ge=1, le=100_000)
    """At most this many task branches are deleted by one sweep (the oldest first); the next sweep goes on."""


class SidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    agent_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    """This agent's id, as registered on the hub (``POST /admin/tokens``)."""
    token: SecretStr = Field(min_length=1, max_length=256)
    """The agent's token. Never logged, never put into a command's environment."""
    hub_url: str
    """The hub's address: ``http://host:port`` or ``ws://host:port[/ws]`` (``https``/``wss`` for a hub with TLS)."""
    hub_ca_file: Path | None = None
    """CA certificate (PEM) that signed the hub's TLS certificate, when it is not one the system trusts."""
    name: str | None = Field(default=None, max_length=256)
    """Display name; defaults to the agent id."""
    capabilities: list[str] = ["shell"]
    """What this agent can do, matched against a task's ``needed_capabilities``."""
    models: list[str] = []
    """Model names this agent can serve (reported at identify)."""
    ollama_url: str | None = None
    """A local Ollama (``http://127.0.0.1:11434``): enables the ``ollama`` executor; also read for VRAM use."""
    anthropic_api_key: SecretStr | None = None
    """Enables the ``claude`` executor (or ``AGENTCOM_SIDECAR_ANTHROPIC_API_KEY``). Never logged or passed on."""
    anthropic_base_url: str | None = None
    """Another Anthropic-compatible endpoint (tests and the demo point this at the shipped fake)."""
    state_dir: Path = Path("state")
    """Durable local state: the active task and the outbox of unacknowledged results."""
    workspace_root: Path = Path("workspaces")
    """One directory per task attempt is made under this directory."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    limits: LimitSettings = Field(default_factory=LimitSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    workspace: WorkspaceSettings = Field(default_factory=WorkspaceSettings)
    git: GitSettings = Field(default_factory=GitSettings)
    """Repositories: mirror cache and credentials (``sidecar/git``)."""

    @property
    def mirror_root(self) -> Path:
        """The mirrors' directory: ``git.mirror_root`` or ``mirrors`` beside ``state_dir``."""
        return self.git.mirror_root or self.state_dir.parent / "mirrors"

    # OpenAI-compatible local model server (llama.cpp, vLLM, LM Studio, Ollama's /v1): the ``openai`` executor.
    openai_url: str | None = None
    """Its address (``http://127.0.0.1:8080`` or ``.../v1``): enables the ``openai`` executor."""
    openai_api_key: SecretStr | None = None
    """Sent as a bearer token when the server wants one. Never logged or passed on."""
    openai_model: str | None = Field(default=None, max_length=256)
    """The model id to ask for when the task's routing names none (default: the first of ``models``)."""
    openai_context_length: int = Field(default=8192, ge=512, le=1_048_576)
    """The server's context window in tokens; 16384 or less gets the compact tool descriptions."""

    @field_validator("hub_url")
    @classmethod
    def _check_hub_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError("must look like http://host:port or ws://host:port/ws")
        return value.rstrip("/")

    @property
    def uid_base(self) -> int:
        """The sandbox's uid range: ``sandbox.uid_base`` or, by default, one of 64 ranges from 100000 picked by
        the agent id (so several sidecars on one host rarely share a range; set it explicitly to be sure)."""
        if self.sandbox.uid_base is not None:
            return self.sandbox.uid_base
        return DEFAULT_UID_BASE + 1000 * (zlib.crc32(self.agent_id.encode()) % UID_RANGES)

    def hub_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for a ``wss://`` hub with :attr:`hub_ca_file`; None otherwise (system CAs)."""
        if self.hub_ca_file is None or not self.ws_url.startswith("wss://"):
            return None
        return ssl.create_default_context(cafile=str(self.hub_ca_file))

    @property
    def ws_url(self) -> str:
        """The agent socket's URL (``ws://host:port/ws``)."""
        parts = urlsplit(self.hub_url)
        scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
        path = parts.path if parts.path.endswith("/ws") else parts.path + "/ws"
        return urlunsplit((scheme, parts.netloc, path, "", ""))

    @property
    def http_url(self) -> str:
        """The hub's HTTP base URL (``http://host:port``)."""
        parts = urlsplit(self.ws_url)
        scheme = {"ws": "http", "wss": "https"}[parts.scheme]
        return urlunsplit((scheme, parts.netloc, parts.path.removesuffix("/ws"), "", ""))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file's values, which arrive as init arguments.
        return env_settings, init_settings


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict.

    Raises:
        SettingsError: the file is missing, unreadable or not a table/object.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(raw)
        elif path.suffix == ".toml":
            data = tomllib.loads(raw.decode())
        else:
            raise SettingsError(f"config file {path}: use a .toml or .json file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: the top level must be a table/object")
    return data


def load_settings(path: Path | None = None, **overrides: Any) -> SidecarSettings:
    """Build the settings from ``path`` (optional), ``AGENTCOM_SIDECAR_*`` variables and ``overrides``.

    Relative ``state_dir``/``workspace_root`` are resolved against the file's directory (else the cwd). The token
    variable is then removed from this process's environment so no child process can inherit it.

    Raises:
        SettingsError: listing every invalid or missing field.
    """
    data = read_config_file(path) if path is not None else {}
    data.update(overrides)
    try:
        settings = SidecarSettings(**data)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc, path)) from None
    base = path.parent if path is not None else Path.cwd()
    resolved = {
        name: (base / value).resolve()
        for name in ("state_dir", "workspace_root")
        if not (value := getattr(settings, name)).is_absolute()
    }
    for field in SECRET_FIELDS:
        os.environ.pop(ENV_PREFIX + field.upper(), None)
    return settings.model_copy(update=resolved)


def describe_errors(exc: ValidationError, path: Path | None = None) -> str:
    """One line per bad field: ``limits.pong_timeout_s: Input should be greater than 0 (got -1)``."""
    lines = [f"invalid sidecar settings{f' in {path}' if path else ''}:"]
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(file)"
        msg = "unknown field (check the spelling)" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "missing":
            env = ENV_PREFIX + loc.upper().replace(".", "__")
            msg = f"required: set it in the config file or in {env}"
        shown = "" if err["type"] in ("missing", "extra_forbidden") or loc in SECRET_FIELDS else _shown(err["input"])
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    text = repr(value)
    return f" (got {text[:80]})"
