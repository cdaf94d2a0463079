"""The agent loop on a real model: fixed small coding tasks, each run by the sidecar's real model executor (the
``OpenAIExecutor`` the runner calls: real sandbox, real tools, real verification checks) against an
OpenAI-compatible server (llama.cpp's, vLLM, LM Studio, Ollama's ``/v1``). Not in CI.

    python -m bench.bench_agent --url http://127.0.0.1:8080 [--model NAME] [--tasks N]
    python -m bench.bench_agent --start-server [--llm-dir DIR] [--tasks N]

``--start-server`` runs ``llama_cpp.server`` from ``<llm-dir>/venv`` on ``<llm-dir>/model.gguf`` on a free
port (``scripts/setup_model.sh`` builds both) and stops it at the end; its log then also gives the prompt tokens the
server really evaluated per step (``prefix-match hit, remaining N prompt tokens to eval``), i.e. how well the loop
keeps the conversation prefix stable for the KV cache. Without a reachable server and without the setup, it prints
why and exits 0 (skipped). Prints one row per task (verified?, steps, tokens, seconds, termination reason, parser
paths) and the totals; ``--json FILE`` also writes the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.agent_tasks import TASKS, BenchTask
from shared.protocol import TaskAssign
from sidecar.agent.agentic import AgenticConfig, OpenAIExecutor
from sidecar.sandbox.probe import probe_sandbox

DEFAULT_LLM_DIR = Path(os.environ.get("AGENTCOM_LLM_DIR", Path.home() / ".cache" / "agentcom" / "llm"))
"""Where scripts/setup_model.sh builds the model server and assembles the model by default."""

LAUNCHER = """
import runpy, sys
import llama_cpp
import llama_cpp.llama
if "--repack" in sys.argv:
    sys.argv.remove("--repack")
else:  # the CPU's extra buffer types (AMX/repacked weights) crash on some virtual machines: use plain buffers
    default = llama_cpp.llama_model_default_params
    def plain():
        params = default()
        params.use_extra_bufts = False
        return params
    llama_cpp.llama_model_default_params = llama_cpp.llama.llama_cpp.llama_model_default_params = plain
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__")
"""
"""Runs llama_cpp.server; without ``--repack`` its weights stay in plain CPU buffers."""
PREFIX_HIT = re.compile(r"(\d+) prefix-match hit, remaining \d+ prompt tokens to eval")
PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


class Sink:
    """Keeps the executor's live events (the runner would send them to the hub)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    async def emit(self, event_type: str, text: str, **fields: Any) -> None:
        self.events.append((event_type, text, fields))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reachable(url: str) -> list[str] | None:
    """The model ids of the server at ``url`` (``/v1/models``), or ``None`` when it does not answer."""
    base = url.rstrip("/").removesuffix("/v1")
    try:
        response = httpx.get(f"{base}/v1/models", timeout=2.0)
        response.raise_for_status()
        return [m["id"] for m in response.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def start_server(
    llm_dir: Path, log_path: Path, ctx: int, threads: int, repack: bool
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [str(llm_dir / "venv/bin/python"), "-c", LAUNCHER, *(["--repack"] if repack else []),
               "--model", str(llm_dir / "model.gguf"),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(ctx), "--n_threads", str(threads),
               "--model_alias", "local"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while reachable(url) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the model server did not start; see {log_path}")
        time.sleep(1)
    return process, url


def log_offset(log_path: Path | None) -> int:
    return log_path.stat().st_size if log_path is not None and log_path.exists() else 0


def reevaluated_from_log(log_path: Path | None, offset: int) -> tuple[int, int] | None:
    """(prompt tokens reused from the KV cache, prompt tokens evaluated) over the server log since ``offset``."""
    if log_path is None or not log_path.exists():
        return None
    with log_path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    evaluated = [int(n) for n in PROMPT_EVAL.findall(text)]
    return (sum(int(n) for n in PREFIX_HIT.findall(text)), sum(evaluated)) if evaluated else None


async def run_task(executor: OpenAIExecutor, task: BenchTask, root: Path, timeout_s: float,
                   log_path: Path | None) -> dict[str, Any]:  # fmt: skip
    workspace = Path(tempfile.mkdtemp(prefix=f"{task.name}-", dir=root))
    workspace.chmod(0o777)
    for name, content in task.files.items():
        (workspace / name).write_text(content, encoding="utf-8")
        (workspace / name).chmod(0o666)
    assign = TaskAssign(task_id=f"bench-{task.name}", description=task.description, generation=1, assigned_at=0,
                        verification_steps=task.checks, max_verification_retries=1,
                        metadata={"timeout_ms": int(timeout_s * 1000)},
                        complexity={"effective_tier": "standard"})  # fmt: skip
    offset, started = log_offset(log_path), time.monotonic()
    outcome = await executor.run(assign, workspace, Sink())
    details = outcome.details or {}
    usage = details.get("usage")
    stats = next(iter((details.get("parse_stats") or {}).values()), {})
    paths = {k: v for k, v in stats.items() if k not in ("replies",) and v}
    cache = reevaluated_from_log(log_path, offset)
    return {
        "task": task.name, "verified": details.get("outcome") == "verified", "outcome": details.get("outcome"),
        "steps": details.get("iterations_used", 0), "tokens_in": getattr(usage, "tokens_in", 0),
        "tokens_out": getattr(usage, "tokens_out", 0), "seconds": round(time.monotonic() - started, 1),
        "termination": details.get("termination_reason", outcome.error_code if hasattr(outcome, "error_code") else "?"),
        "paths": paths, "reevaluated": details.get("prompt_tokens_reevaluated"),
        "log_cached": cache[0] if cache else None, "log_evaluated": cache[1] if cache else None,
    }  # fmt: skip


def print_table(rows: list[dict[str, Any]], label: str) -> None:
    print(f"\n{label}")
    header = f"{'task':<14} {'verified':<8} {'steps':>5} {'tok in':>7} {'tok out':>7} {'eval':>6} {'cached':>7} " \
             f"{'s':>6}  {'termination':<19} parser paths"  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        paths = ", ".join(f"{k}={v}" for k, v in r["paths"].items())
        evaluated = "-" if r["log_evaluated"] is None else r["log_evaluated"]
        cached = "-" if r["log_cached"] is None else r["log_cached"]
        verified = "yes" if r["verified"] else "no"
        print(f"{r['task']:<14} {verified:<8} {r['steps']:>5} {r['tokens_in']:>7} {r['tokens_out']:>7} "
              f"{evaluated:>6} {cached:>7} {r['seconds']:>6}  {r['termination']:<19} {paths}")  # fmt: skip
    done = sum(r["verified"] for r in rows)
    share = 100 * done / max(len(rows), 1)
    print(f"verified {done}/{len(rows)} ({share:.0f}%), steps {sum(r['steps'] for r in rows)}, "
          f"tokens {sum(r['tokens_in'] for r in rows)}+{sum(r['tokens_out'] for r in rows)}, "
          f"{sum(r['seconds'] for r in rows):.0f} s")  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    process, log_path = None, Path(args.log) if args.log else None
    url = args.url or os.environ.get("AGENTCOM_BENCH_MODEL_URL")
    if not url or reachable(url) is None:
        llm_dir = Path(args.llm_dir)
        if not args.start_server:
            print(f"skipped: no model server answers at {url or '(no --url)'}; use --start-server or --url")
            return 0
        if not (llm_dir / "model.gguf").exists() or not (llm_dir / "venv/bin/python").exists():
            print(f"skipped: {llm_dir}/model.gguf or {llm_dir}/venv is missing (run scripts/setup_model.sh)")
            return 0
        log_path = log_path or Path(tempfile.gettempdir()) / f"bench-agent-llm-{os.getpid()}.log"
        process, url = start_server(llm_dir, log_path, args.ctx, args.threads, args.repack)
    models = reachable(url) or []
    model = args.model or (models[0] if models else "local")
    try:
        sandbox = await probe_sandbox(uid_base=args.uid_base)
        config = AgenticConfig(default_timeout_s=args.timeout, verification_timeout_s=60)
        executor = OpenAIExecutor(sandbox, base_url=url, default_model=model, config=config,
                                  context_length=args.ctx, temperature=0.0, max_tokens=args.max_tokens)  # fmt: skip
        root = Path(tempfile.mkdtemp(prefix="bench-agent-"))
        root.chmod(0o755)
        rows = []
        chosen = [t for t in TASKS if t.name in args.only.split(",")] if args.only else TASKS[: args.tasks]
        for task in chosen:
            row = await run_task(executor, task, root, args.timeout, log_path)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        print_table(rows, f"{args.label} - model {model} at {url}")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an OpenAI-compatible server (http://host:port or .../v1)")
    parser.add_argument("--model", help="model id (default: the server's first)")
    parser.add_argument("--start-server", action="store_true", help="start llama_cpp.server from --llm-dir")
    parser.add_argument(
        "--llm-dir", default=str(DEFAULT_LLM_DIR), help=f"holds venv/ and model.gguf (default {DEFAULT_LLM_DIR}, "
        "where scripts/setup_model.sh puts them; env AGENTCOM_LLM_DIR)",
    )  # fmt: skip
    parser.add_argument("--log", help="the server's log file, to read its KV-cache reuse (prefix-match hits)")
    parser.add_argument("--tasks", type=int, default=len(TASKS), help=f"run the first N of {len(TASKS)} tasks")
    parser.add_argument("--only", help="comma-separated task names to run instead (see bench/agent_tasks.py)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per task")
    parser.add_argument("--ctx", type=int, default=8192, help="context window (server and client)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repack", action="store_true", help="let llama.cpp repack weights (AMX...); crashes on some VMs"
    )
    parser.add_argument("--max-tokens", type=int, default=768, help="output tokens per reply")
    parser.add_argument("--uid-base", type=int, default=300_000 + 1000 * (os.getpid() % 100))
    parser.add_argument("--label", default="bench_agent")
    parser.add_argument("--json", help="also write the rows to this file")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
