"""``python -m sidecar --config FILE``: run one agent's sidecar until SIGINT/SIGTERM or ``restart_sidecar``.

Wiring only: settings are read once, the sandbox is probed once, and the connection loop, the runner and the
resource reporter run in one TaskGroup. A crash in any of them stops the sidecar loudly (pm2 restarts it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from shared.protocol import (
    AgentRestarting,
    BudgetGrant,
    ErrorReply,
    HubMessage,
    Identify,
    RepoRegistry,
    RestartSidecar,
)
from sidecar.agent.agentic import AgenticConfig, AgenticExecutor, ClaudeExecutor, OllamaExecutor, OpenAIExecutor
from sidecar.agent.budget_gate import BudgetGate
from sidecar.git.credentials import secrets_of
from sidecar.git.mirror import Mirrors
from sidecar.git.prune import recovered_branch, sweep_all
from sidecar.git.publisher import wired_publisher
from sidecar.git.reach import answer_registries, offer
from sidecar.git.task import GitWork
from sidecar.host.resources import report_resources
from sidecar.runtime.connection import HubLink, IdentifyRejected, serve_hub
from sidecar.runtime.executor import Executor, ExecutorRegistry
from sidecar.runtime.runner import Runner
from sidecar.runtime.shell import ShellExecutor
from sidecar.runtime.state import LocalState
from sidecar.runtime.workspace import Workspaces
from sidecar.sandbox.base import Sandbox, SandboxLevel
from sidecar.sandbox.probe import probe_sandbox
from sidecar.settings import SettingsError, SidecarSettings, load_settings

logger = logging.getLogger("sidecar")

EXIT_RESTART = 75
"""Exit code after ``restart_sidecar``: the supervisor (pm2) starts a fresh process."""
EXIT_CONFIG = 78
"""Exit code for unusable settings or a token the hub refuses: restarting will not help."""
GOODBYE_TIMEOUT_S = 2.0


class Shutdown(Exception):
    """Raised inside the TaskGroup to stop every loop; carries the process exit code."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


class RedactSecret(logging.Filter):
    """Replaces a secret in every log record's text, whatever code logged it."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record's message with each secret replaced by ``***``."""
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def build_identify(settings: SidecarSettings, sandbox_level: str, executors: list[str]) -> Identify:
    """The ``identify`` message this sidecar sends on every connect; ``executors`` are those its registry holds."""
    return Identify(
        type="identify",
        agent_id=settings.agent_id,
        token=settings.token.get_secret_value(),
        name=settings.name or settings.agent_id,
        status="idle",
        capabilities=settings.capabilities,
        ollama_url=settings.ollama_url,
        client_type="sidecar",
        sandbox_level=sandbox_level,
        models=settings.models,
        executors=executors,
        pm2_info={"name": pm2} if (pm2 := os.environ.get("PM2_PROCESS_NAME") or os.environ.get("name")) else None,
    )


def build_registry(settings: SidecarSettings, sandbox: Sandbox) -> ExecutorRegistry:
    """The executors this sidecar offers: shell always, Ollama with an ``ollama_url``, ``openai`` with an
    ``openai_url``, Claude with an API key."""
    shell = ShellExecutor(
        sandbox,
        default_timeout_s=settings.limits.task_timeout_s,
        limits=settings.sandbox.to_limits(),
        network=settings.sandbox.network,
        batch_interval_s=settings.limits.progress_batch_ms / 1000,
    )
    executors: dict[str, Executor] = {"shell": shell}
    config = AgenticConfig(
        default_timeout_s=settings.limits.task_timeout_s,
        verification_timeout_s=settings.limits.verification_timeout_s,
        token_interval_s=settings.limits.progress_batch_ms / 1000,
    )
    if settings.ollama_url:
        executors["ollama"] = OllamaExecutor(
            sandbox,
            host=settings.ollama_url,
            default_model=settings.models[0] if settings.models else None,
            config=config,
        )
    if settings.openai_url:
        executors["openai"] = OpenAIExecutor(
            sandbox,
            base_url=settings.openai_url,
            api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key is not None else None,
            default_model=settings.openai_model or (settings.models[0] if settings.models else None),
            config=config,
            context_length=settings.openai_context_length,
        )
    if settings.anthropic_api_key is not None:
        executors["claude"] = ClaudeExecutor(
            sandbox,
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            config=config,
        )
    return ExecutorRegistry(executors)


async def run_sidecar(settings: SidecarSettings, sandbox: Sandbox | None = None) -> int:
    """Run the sidecar until told to stop; returns the process exit code."""
    if sandbox is None:
        sandbox = await probe_sandbox(settings.sandbox.level, uid_base=settings.uid_base)
    described = getattr(sandbox, "describe", lambda: str(sandbox.level))()
    if sandbox.level == SandboxLevel.BWRAP:
        logger.info("SANDBOX LEVEL: bwrap (%s)", described)
    else:
        logger.warning(
            "SANDBOX LEVEL: %s -- weaker isolation than bwrap; install bubblewrap (%s)", sandbox.level, described
        )
    state = LocalState.load(settings.state_dir)
    link = HubLink()
    registry = build_registry(settings, sandbox)
    limits = settings.limits
    gate = BudgetGate(link, limits.budget_timeout_s, limits.budget_output_tokens, limits.budget_pause_retry_s)
    for name in registry.names:  # every model call asks the hub's budgets first
        if isinstance(executor := registry.get(name), AgenticExecutor):
            executor.gate = gate
    runner = Runner(
        state=state,
        registry=registry,
        workspaces=Workspaces(settings.workspace_root, settings.workspace),
        sandbox=sandbox,
        link=link,
        limits=settings.limits,
        repos=GitWork(
            mirrors := Mirrors(settings.mirror_root, settings.git),
            sandbox,
            settings.agent_id,
            publisher=wired_publisher(settings.git, settings.mirror_root),
        ),  # fmt: skip
    )
    registries: asyncio.Queue[RepoRegistry] = asyncio.Queue(maxsize=1)
    stop: asyncio.Queue[Shutdown] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.put_nowait, Shutdown(signal.Signals(sig).name.lower(), 0))

    async def on_message(message: HubMessage) -> None:
        if isinstance(message, RestartSidecar):
            stop.put_nowait(Shutdown(f"restart_sidecar: {message.reason}", EXIT_RESTART))
        elif isinstance(message, RepoRegistry):
            offer(registries, message)  # answered by the repo-reach loop: probing must not stall the receive loop
        elif isinstance(message, BudgetGrant):
            gate.on_grant(message)
        elif isinstance(message, ErrorReply) and gate.on_error(message):
            pass
        else:
            await runner.handle(message)

    logger.info("sidecar %s starting: hub %s, state %s", settings.agent_id, settings.ws_url, settings.state_dir)
    exit_code = 0
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runner.run(), name="runner")
            tg.create_task(
                serve_hub(
                    settings.ws_url,
                    build_identify(settings, sandbox.level, runner.registry.names),
                    settings.limits,
                    link,
                    on_message,
                    runner.on_connected,
                    ssl_context=settings.hub_ssl_context(),
                ),
                name="connection",
            )
            tg.create_task(
                report_resources(link, settings.limits.resource_report_interval_s, settings.ollama_url),
                name="resources",
            )
            tg.create_task(_stop_when_asked(stop, link), name="shutdown")
            tg.create_task(answer_registries(registries, link, settings), name="repo-reach")
            tg.create_task(sweep_all(mirrors, recovered_branch(state)), name="mirror-prune")  # once, at start
    except* Shutdown as group:
        shutdown = group.exceptions[0]
        assert isinstance(shutdown, Shutdown)
        logger.info("sidecar %s stopped (%s)", settings.agent_id, shutdown.reason)
        exit_code = shutdown.exit_code
    except* IdentifyRejected as group:
        logger.error("the hub refused this agent (%s); check agent_id and token", group.exceptions[0])
        exit_code = EXIT_CONFIG
    # The signal handlers stay until the loop closes: a second SIGTERM during the last cleanup is absorbed instead
    # of killing the process half-way.
    return exit_code


async def _stop_when_asked(stop: asyncio.Queue[Shutdown], link: HubLink) -> None:
    shutdown = await stop.get()
    logger.info("stopping: %s", shutdown.reason)
    try:
        async with asyncio.timeout(GOODBYE_TIMEOUT_S):
            await link.send(AgentRestarting(type="agent_restarting", reason=shutdown.reason))
    except TimeoutError:
        pass
    raise shutdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The sidecar's command-line options."""
    parser.add_argument("--config", type=Path, help="TOML or JSON config file (env AGENTCOM_SIDECAR_* overrides)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="overrides log_level")
    parser.add_argument("--doctor", action="store_true", help="check this machine and the hub, then exit")


def run(args: argparse.Namespace) -> int:
    """Load settings, set up logging and run the sidecar (or the doctor)."""
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"agentcom sidecar: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=args.log_level or settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
    openai_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    redact = RedactSecret(settings.token.get_secret_value(), api_key, openai_key, *secrets_of(settings.git))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    if args.doctor:
        from sidecar.host.doctor import run_doctor

        return 0 if run_doctor(settings).ok else 1
    return asyncio.run(run_sidecar(settings))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sidecar``."""
    parser = argparse.ArgumentParser(prog="agentcom sidecar", description="Run an AgentCom sidecar.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
