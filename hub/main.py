"""``agentcom hub``: run the hub until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from hub import config_file, log_format
from hub.server import HubServer, StartupError
from hub.settings import HubSettings

logger = logging.getLogger("hub")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; env AGENTCOM_HOST)")
    parser.add_argument("--port", type=int, help="port to bind, 0 for any free one (default 4000)")
    parser.add_argument("--data-dir", type=Path, help="directory for the database and admin token")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["text", "json"], help="log lines as text (default) or JSON")
    parser.add_argument("--config", type=Path, help="a TOML file with any hub setting (env AGENTCOM_CONFIG)")
    parser.add_argument("--tls-cert", type=Path, help="TLS certificate chain (PEM): serve https:// and wss://")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument("--print-config", action="store_true", help="print every setting's effective value, exit")


def settings_from(args: argparse.Namespace) -> HubSettings:
    """Flags over ``AGENTCOM_*`` variables over the config file over the defaults (see hub/config_file.py)."""
    path = getattr(args, "config", None) or (Path(p) if (p := os.environ.get("AGENTCOM_CONFIG")) else None)
    from_file = config_file.read(path) if path else {}
    flags = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "log_format": getattr(args, "log_format", None),
        "tls_certfile": getattr(args, "tls_cert", None),
        "tls_keyfile": getattr(args, "tls_key", None),
    }
    return HubSettings(**{**from_file, **{k: v for k, v in flags.items() if v is not None}})


FILES_BESIDE_SOCKETS = 256
"""Open files the hub needs besides its connections: the database, its WAL, the helper's pipes, logs."""


def raise_file_limit(max_connections: int) -> None:
    """Lift the soft open-file limit so ``max_connections`` sockets fit (it is often 1,024); warn if it cannot."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + FILES_BESIDE_SOCKETS
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            logger.warning(
                "open files limited to %d (hard limit): fewer than max_connections=%d sockets fit; raise "
                "it (ulimit -n) or lower AGENTCOM_MAX_CONNECTIONS",
                new,
                max_connections,
            )


async def serve(settings: HubSettings) -> int:
    # A thread waiting for the GIL held by the busy loop waits about one switch interval (Python's default: 5 ms).
    # Commits use no thread when the WAL sync helper runs (hub/store/wal_sync.py), but the store's fallbacks, its WAL
    # restarts and its reads do; 0.1 ms measured best when commits still went through the thread.
    sys.setswitchinterval(0.0001)
    raise_file_limit(settings.max_connections)
    server = HubServer(settings)
    starting = asyncio.ensure_future(server.start())

    def stop() -> None:  # SIGINT/SIGTERM: a start in progress is abandoned (and undone), a running hub stops
        if not starting.done():
            starting.cancel()
        server._fatal()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        url = await starting
    except asyncio.CancelledError:
        print("agentcom hub: stopped while starting; nothing was left running.", file=sys.stderr, flush=True)
        return 0
    except StartupError as exc:
        print(f"agentcom hub: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        logger.critical("the hub failed to start", exc_info=True)
        print(
            f"agentcom hub: cannot start: unexpected {type(exc).__name__}: {exc}. This is a bug (the traceback "
            f"is above); the start was undone, the data dir left as it was. Please report it.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    log_format.add_secret(server.hub.admin_token)  # a generated one too: never in a log line
    token_note = "from AGENTCOM_ADMIN_TOKEN" if settings.admin_token else f"in {settings.data_dir / 'admin.token'}"
    print(f"agentcom hub ready url={url}", flush=True)
    print(f"  dashboard: {url}/dashboard   admin token: {token_note}", flush=True)
    await server.wait()
    return 1 if server.hub.failed else 0


EXIT_CONFIG = 78
"""Exit code for settings that cannot work (EX_CONFIG): pm2 leaves the process stopped (ecosystem.config.js)."""


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except (config_file.ConfigError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"agentcom hub: invalid settings: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.print_config:
        print(config_file.render(settings), end="")
        return 0
    configured = settings.admin_token.get_secret_value() if settings.admin_token else ""
    log_format.configure(args.log_level, settings.log_format, [configured])
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every callback phase at INFO
    try:
        import uvloop  # faster event loop for the sockets (optional)
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    try:
        return uvloop.run(serve(settings)) if uvloop is not None else asyncio.run(serve(settings))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentcom hub", description="Run the AgentCom hub.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
