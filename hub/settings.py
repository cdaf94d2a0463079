"""Hub settings: one pydantic model, read once in ``main`` from flags and ``AGENTCOM_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class HubSettings(BaseSettings):
    """Every setting of the hub; ``agentcom hub --print-config`` shows them with their effective values."""

    model_config = SettingsConfigDict(env_prefix="AGENTCOM_", extra="ignore", use_attribute_docstrings=True)

    @model_validator(mode="after")
    def _tls_pair(self) -> HubSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: give both (or neither)")
        for path in (self.tls_certfile, self.tls_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"the TLS file {path} does not exist or is not a file")
        return self

    host: str = "127.0.0.1"
    """Address the hub binds (HTTP, /ws and /ws/dashboard share it)."""
    port: int = Field(4000, ge=0, le=65535)
    """Port; 0 picks a free one (the bound URL is printed and written to DATA_DIR/hub.url)."""
    data_dir: Path = Path.home() / ".agentcom" / "hub"
    """Directory holding the SQLite database, the admin token and backups."""
    tls_certfile: Path | None = None
    """TLS certificate chain (PEM): the hub then serves https:// and wss:// (sidecars use ``wss://``)."""
    tls_keyfile: Path | None = None
    """The certificate's private key (PEM); keep it 0600."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line (for log shippers); ``text``: for people."""
    admin_token: SecretStr | None = None
    """Admin token; when unset one is generated on first start and written to DATA_DIR/admin.token (0600)."""
    sqlite_synchronous: str = Field("FULL", pattern="^(FULL|NORMAL)$")
    """SQLite durability: FULL survives power loss, NORMAL survives a process crash."""

    acceptance_timeout_s: float = Field(60.0, gt=0)
    """An assigned task not accepted within this time is reclaimed (the attempt counts)."""
    reconnect_grace_s: float = Field(15.0, ge=0)
    """A task whose agent disconnected is reclaimed if the agent has not come back within this time."""
    restart_grace_s: float = Field(90.0, ge=0)
    """After a hub restart, a task's agent has this long to come back (longer than a sidecar's backoff cap)."""
    stuck_after_timeout_grace_s: float = Field(120.0, ge=0)
    """A task with ``metadata.timeout_ms`` is only stuck once that timeout plus this grace has passed quietly."""
    presence_ttl_s: float = Field(60.0, gt=0)
    """An agent socket silent (no frame, no ping) for this long is evicted."""
    stuck_after_s: float = Field(600.0, gt=0)
    """An assigned task with no update for this long is reclaimed."""
    stuck_working_after_s: float = Field(1200.0, gt=0)
    """Like ``stuck_after_s`` while the agent reports it is working."""
    sweep_interval_s: float = Field(1.0, gt=0)
    """How often the timeout sweeps look at assigned tasks."""
    ws_ping_interval_s: float = Field(20.0, gt=0)
    """Protocol-level WebSocket pings from the hub, to notice dead TCP connections."""

    max_frame_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest WebSocket frame accepted; bigger ones close the socket with 1009."""
    violation_limit: int = Field(10, ge=1)
    """Invalid frames within ``violation_window_s`` before the socket is closed with 1008."""
    violation_window_s: float = Field(60.0, gt=0)
    violation_cooldowns_s: tuple[float, ...] = (30.0, 60.0, 300.0)
    """Cooldown after the 1st, 2nd and later violation disconnects of one agent."""
    max_history: int = Field(50, ge=5)
    """History entries kept per task (oldest dropped)."""
    dashboard_batch_ms: int = Field(100, ge=10)
    """Dashboard events are batched and flushed this often."""
    gc_freeze: bool = True
    """Freeze what survives each full garbage collection out of later ones (see hub/gc_policy.py)."""
    gc_thaw_interval_s: float = Field(3600.0, gt=0)
    """How often frozen objects are handed back to the collector, so dead reference cycles among them are freed."""
    backup_interval_s: float = Field(6 * 3600.0, ge=0)
    """How often the database is backed up into DATA_DIR/backups (online, checked); 0 turns scheduled backups off."""
    backup_keep: int = Field(3, ge=1, le=1000)
    """Backups kept (the newest)."""
    integrity_check: bool = True
    """Check the database (SQLite's quick check) at start; a damaged one is refused, naming the newest backup."""
    log_task_events: bool = True
    """Log one line per task state change (logger ``hub.tasks``): submitted, assigned, accepted, ended..."""
    metrics_public: bool = False
    """Serve ``/metrics`` without a token (for a Prometheus on a trusted network); else any role's token."""

    # --- sockets: send budgets and deadlines, identify deadline, connection and header bounds (issue 9) ---------
    send_buffer_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    """Bytes queued for one socket beyond what the network took; past this the peer is not reading and is dropped."""
    send_timeout_s: float = Field(10.0, gt=0)
    """One write to a socket not taken by the peer within this time drops the socket."""
    close_timeout_s: float = Field(5.0, gt=0)
    """A socket being closed whose peer has not let go within this time is aborted."""
    identify_timeout_s: float = Field(10.0, gt=0)
    """An agent socket that has not identified within this time of its handshake is closed (4408)."""
    state_report_timeout_s: float = Field(15.0, gt=0)
    """An agent that reconnects with a task in flight and does not report it within this time loses it."""
    max_connections: int = Field(4096, ge=1)
    """Open TCP connections (HTTP, agents and pages); one more is answered 503 and closed. The hub raises its open
    file limit to fit (up to the hard limit, with a warning when that is too low)."""
    header_timeout_s: float = Field(10.0, gt=0)
    """A request line and headers not complete within this time of their first byte (or the connection): 408."""
    max_header_bytes: int = Field(32 * 1024, ge=1024)
    """Largest request line plus headers; more is answered 431."""
    keep_alive_timeout_s: int = Field(5, ge=1)
    """An idle keep-alive HTTP connection is closed after this long."""
    dashboard_outbox_bytes: int = Field(2 * 1024 * 1024, ge=64 * 1024)
    """Bytes of events queued for one dashboard page; past this they are dropped for a fresh snapshot."""
    subscribe_page_events: int = Field(1000, ge=1, le=10_000)
    """Most trajectory events in one ``task_detail`` reply to ``subscribe_task`` (the page asks for the next)."""
    subscribe_page_bytes: int = Field(512 * 1024, ge=16 * 1024)
    """Most bytes of trajectory events in one ``task_detail`` reply (at least one event is always sent)."""
    # --- request limits, rate limits and retention (hub/limits.py, hub/rate_limit.py, hub/retention.py) ---------
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest request body accepted; a bigger one is refused with 413 before it is read into memory."""
    max_batch_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest body of ``POST /api/tasks/batch`` (up to 1,000 tasks)."""
    rate_limits_enabled: bool = True
    """Token buckets per token and per client address (429 with Retry-After when one runs dry)."""
    rate_limit_admin: tuple[float, float] = (0.0, 0.0)
    """Admin token: (burst, requests per second); a burst of 0 means unlimited."""
    rate_limit_agent: tuple[float, float] = (1000.0, 200.0)
    """Each agent token (all tokens of one agent id share it)."""
    rate_limit_viewer: tuple[float, float] = (300.0, 50.0)
    """Each viewer token."""
    rate_limit_anonymous: tuple[float, float] = (300.0, 50.0)
    """Requests without a valid token, per client address."""
    rate_limit_auth_failures: tuple[float, float] = (10.0, 0.2)
    """Failed authentications (HTTP 401, refused /ws identify) per client address; once spent, that address gets
    429 on anything without a valid token and cannot open sockets until it refills."""
    rate_limit_backoff_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    """Progressive backoff: a bucket that runs dry again stays shut this long (1st, 2nd... time)."""
    rate_limit_quiet_s: float = Field(60.0, gt=0)
    """A bucket not refused anything for this long starts its backoff over."""
    retention_completed_max: int = Field(10_000, ge=0)
    """Completed tasks kept (oldest pruned first, from memory and disk with their trajectories)."""
    retention_dead_letter_max: int = Field(10_000, ge=0)
    """Dead-letter tasks kept."""
    retention_cancelled_max: int = Field(10_000, ge=0)
    """Cancelled tasks kept."""
    retention_max_age_s: float = Field(7 * 24 * 3600.0, gt=0)
    """Finished tasks (any of the three) older than this are pruned whatever their number."""
    retention_interval_s: float = Field(60.0, gt=0)
    """How often the retention loop looks for tasks to prune."""
    retention_batch: int = Field(1000, ge=1)
    """Tasks pruned per commit (a backlog is pruned in several, letting other writes in between)."""
    # --- goals: the backlog, decomposition and verification, and the hub's own model client (hub/goals/) --------
    hub_model_url: str | None = None
    """Ollama base URL for the hub's own model calls (decomposing and verifying goals); unset: Claude only."""
    hub_model: str = "qwen2.5-coder:7b"
    """The local model the hub asks first (``/api/chat`` with ``format: json``)."""
    hub_claude_url: str = "https://api.anthropic.com"
    """Anthropic Messages API base URL: the fallback when the local model fails or is unset."""
    hub_claude_model: str = "claude-sonnet-4-5"
    hub_claude_api_key: SecretStr | None = None
    """Key for the fallback; when unset, ``ANTHROPIC_API_KEY`` from the environment; neither: no fallback."""
    hub_model_timeout_s: float = Field(120.0, gt=0)
    """One model call (connect to last byte) is abandoned after this long."""
    hub_model_max_output_bytes: int = Field(256 * 1024, ge=1024)
    """Largest model reply read; a longer one is refused as invalid (not cut and trusted)."""
    goals_loop: bool = True
    """Run the hub's own loop driving goals (event-driven); off when another driver calls ``advance_one``."""
    goal_rounds: int = Field(2, ge=0, le=10)
    """Follow-up rounds after a goal's first verification finds gaps; past them it needs human review."""
    goal_model_attempts: int = Field(3, ge=1, le=20)
    """Model calls a goal waits through while every model endpoint is down before it fails with the reason."""
    goal_model_backoff_s: tuple[float, ...] = (30.0, 120.0, 600.0)
    """Wait before a goal's next model attempt after the 1st, 2nd and later unavailability."""
    goal_tree_max_files: int = Field(400, ge=1, le=20_000)
    """Paths of the repository's file tree shown to the model when decomposing (all are used to check files)."""
    goal_git_timeout_s: float = Field(120.0, gt=0)
    """One git command fetching or listing a goal's repository is killed after this long."""
    goal_diff_max_chars: int = Field(60_000, ge=1000)
    """Characters of the goal's combined diff shown to the model verifying it."""
    goal_max_open: int = Field(1000, ge=1)
    """Goals not yet final at once; one more submission is refused (503 ``backlog_full``) until some finish."""
    goal_keep_final: int = Field(1000, ge=1)
    """Finished goals (complete, failed, needing review) kept; the oldest beyond this are deleted as others finish."""
    # --- repositories (hub/repos) ----------------------------------------------------------------------------
    repo_head_ttl_s: float = Field(30.0, gt=0)
    """A default branch's head resolved by the hub (``git ls-remote``) is reused for this long."""
    repo_heads_interval_s: float = Field(60.0, gt=0)
    """How often the hub resolves the heads of every registered repository again."""
    repo_git_timeout_s: float = Field(15.0, gt=0)
    """One ``git ls-remote`` run by the hub is abandoned (the repository counted unreachable) after this long."""
    repo_git_concurrency: int = Field(4, ge=1, le=64)
    """``git ls-remote`` runs at once, at most."""
    # --- endpoints: registry, health checks, capability probes, routing (issue 12, hub/endpoints/) -------------
    endpoint_max: int = Field(256, ge=1, le=256)
    """Endpoints the registry holds (reported by agents or added by admins); more are refused."""
    endpoint_health_interval_s: float = Field(30.0, gt=0)
    """How often each healthy endpoint is asked what it serves (``/api/tags`` or ``/v1/models``)."""
    endpoint_unhealthy_after: int = Field(3, ge=1)
    """Consecutive failed checks after which an endpoint is unhealthy."""
    endpoint_backoff_max_s: float = Field(600.0, gt=0)
    """Longest wait between checks of an unhealthy endpoint (the wait doubles from the interval up to this)."""
    endpoint_http_timeout_s: float = Field(10.0, gt=0)
    """Timeout of one health-check request to an endpoint."""
    endpoint_probe_enabled: bool = True
    """Probe each model's tool calling on discovery and every ``endpoint_probe_interval_s``."""
    endpoint_probe_interval_s: float = Field(24 * 3600.0, gt=0)
    """A model's probe result older than this is probed again."""
    endpoint_probe_concurrency: int = Field(1, ge=1, le=2)
    """Probes run at once (each loads a model on its server)."""
    endpoint_probe_timeout_s: float = Field(120.0, gt=0)
    """Timeout of one probe prompt (a cold model load included)."""
    # --- autonomy: the hub's state machine, watchdogs, healing, improving, webhook (hub/autonomy/) --------------
    autonomy_enabled: bool = True
    """Run the hub's state machine (resting, executing, improving, contemplating, healing)."""
    autonomy_submit_goals: bool = True
    """Scanner findings and a broken main become goals in the backlog; off, they are kept as records only."""
    autonomy_tick_s: float = Field(30.0, gt=0)
    """Longest wait between two ticks; task events, goals, webhooks and pause/resume wake it sooner."""
    autonomy_global_watchdog_s: float = Field(2 * 3600.0, gt=0)
    """Any state but resting held this long is forced back to resting with a critical alert."""
    autonomy_healing_watchdog_s: float = Field(300.0, gt=0)
    """Healing held this long is forced back to resting with a critical alert."""
    autonomy_healing_cooldown_s: float = Field(300.0, ge=0)
    """After a healing episode, no new one starts for this long."""
    autonomy_stuck_after_s: float = Field(300.0, gt=0)
    """An in-flight task with no update for this long counts as stuck; 3 or more stuck tasks start healing."""
    autonomy_stuck_threshold: int = Field(3, ge=1)
    """Stuck tasks that make the hub heal."""
    autonomy_reprobe_backoff_s: tuple[float, ...] = (5.0, 15.0, 45.0)
    """Waits between re-probes of unhealthy endpoints while healing."""
    autonomy_improve_cooldown_s: float = Field(3600.0, ge=0)
    """A repository is scanned again no sooner than this, and only when its HEAD moved (or a push woke it)."""
    autonomy_file_cooldown_s: float = Field(24 * 3600.0, ge=0)
    """A finding on a file raised (or touched by a goal) within this long is not raised again."""
    autonomy_review_wait_s: float = Field(24 * 3600.0, ge=0)
    """A broken main with a verified pull request awaiting review this long or less gets no new fix goal."""
    autonomy_max_findings: int = Field(5, ge=0, le=100)
    """Findings turned into goals per improving cycle (most severe first)."""
    autonomy_scan_paths: tuple[Path, ...] = ()
    """Local git checkouts the improving state scans (besides the registered repositories)."""
    autonomy_scan_test_command: tuple[str, ...] = ()
    """Test command run in each scanned checkout (argument list; empty: no test scan)."""
    autonomy_scan_timeout_s: float = Field(300.0, gt=0)
    """Timeout of each scanner subprocess (ruff, tests, git)."""
    autonomy_contemplate_cooldown_s: float = Field(6 * 3600.0, ge=0)
    """Contemplating (proposals and a scalability report) happens at most this often."""
    github_webhook_secret: SecretStr | None = None
    """Secret of the GitHub webhook (HMAC-SHA256 of the body); unset: every delivery is refused."""
    webhook_max_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest webhook body accepted."""

    # --- cost ledger, budgets and quotas (issue 12) --------------------------------------------------------------
    cost_retention_days: float = Field(30.0, gt=0, le=3650)
    """Cost ledger entries older than this are pruned (from the journal and from the rollups)."""
    cost_max_entries: int = Field(500_000, ge=1000)
    """Ledger entries kept in memory for ``since``/``until`` queries (the oldest leave first)."""
    cost_prices: dict[str, tuple[Annotated[float, Field(ge=0, le=1e6)], Annotated[float, Field(ge=0, le=1e6)]]] = {}
    """Price overrides: model name -> (input, output) USD per million tokens, over the built-in Claude table."""
    cost_reservation_ttl_s: float = Field(600.0, gt=0)
    """A budget reservation whose call never reports its usage is released after this long."""
    cost_max_reservations: int = Field(10_000, ge=1)
    """Budget reservations outstanding at once; past this, model calls are refused (``too_many_reservations``)."""
    cost_default_hub_state: str = "executing"
    """The hub state agents' calls for tasks are charged to (task work is executing); the hub's own model calls are
    charged to the state its FSM is in."""
    cost_sweep_interval_s: float = Field(5.0, gt=0)
    """How often expired reservations are released (the ledger is pruned about hourly)."""
    max_task_depth: int = Field(5, ge=0, le=100)
    """Depth of agent-made tasks (``metadata.parent_task_id`` chains); one deeper is refused 422 ``max_depth``."""
    goal_max_running: int = Field(0, ge=0)
    """Tasks of one goal assigned or working at once (0: no limit)."""
    goal_fail_fast_ratio: float = Field(0.5, gt=0, le=1)
    """A goal whose failed / finished tasks reach this ratio (after ``goal_fail_fast_min``) stops: its queued tasks
    are dead-lettered with reason ``goal_fail_fast``."""
    goal_fail_fast_min: int = Field(4, ge=1)
    """Finished tasks of a goal before its failure ratio is judged."""

    # --- retries (hub/retry_backoff.py) ---------------------------------------------------------------------------
    retry_backoff_base_s: float = Field(5.0, ge=0, le=3600)
    """Wait before a failed task's next attempt, doubled per attempt already ended (0: retry at once)."""
    retry_backoff_max_s: float = Field(300.0, ge=0, le=86_400)
    """Longest wait between two attempts of a task."""

    # --- repository affinity (hub/endpoints/affinity.py) ----------------------------------------------------------
    affinity_window_s: float = Field(7 * 86_400.0, gt=0)
    """An agent's work on a repository makes the ranker prefer it for that repository this long (and is kept
    across restarts this long)."""
    affinity_max_entries: int = Field(4096, ge=1, le=1_000_000)
    """(agent, repository) pairs remembered and stored; past this the least recently used leave first."""
