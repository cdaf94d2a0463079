"""Improving: deterministic scanners over Python checkouts, findings turned into low-priority goals.

A target is scanned only when its HEAD moved since its last scan (or a push asked) and its cooldown has passed; so
with nothing new the hub rests instead of rescanning. Scanners: ruff (skipped with a reason when not installed), the
repository's test command, TODO/FIXME markers, modules without a test module, and conflict markers. Failing tests
and conflict markers mark the target's main as broken (healing turns that into an urgent fix goal). A finding on a
file raised within the file cooldown is not raised again, so a fix and its undoing cannot oscillate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.autonomy.fsm import count, readable
from hub.autonomy.runtime import ScanTarget
from hub.autonomy.signals import goal_touched_files, submit_goal
from hub.store.records import PutRecord, RecordRow

if TYPE_CHECKING:
    from hub.autonomy.runtime import Runtime
    from hub.hub import Hub

logger = logging.getLogger(__name__)

SCAN_KIND = "scan"
FILE_KIND = "finding_file"
FINDING_KIND = "finding"
MAX_FILE_BYTES = 1024 * 1024
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
MARKER = re.compile(r"\b(TODO|FIXME)\b")
CONFLICT = re.compile(r"^(<<<<<<< |>>>>>>> )", re.MULTILINE)
SEVERITY = {"failing_tests": 0, "ruff": 1, "missing_tests": 2, "todo": 3}


@dataclass(frozen=True)
class Finding:
    scan: str
    file: str
    detail: str


async def read_bounded(stream: asyncio.StreamReader) -> bytes:
    """Everything until EOF, keeping at most :data:`MAX_OUTPUT_BYTES` (the rest is read and dropped)."""
    out = bytearray()
    while chunk := await stream.read(64 * 1024):
        out += chunk[: max(0, MAX_OUTPUT_BYTES - len(out))]
    return bytes(out)


async def run(argv: list[str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run a command (no shell, no inherited secrets), bounded in time and output; (returncode, stdout)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out = await read_bounded(proc.stdout) if proc.stdout else b""
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timed out"
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def head_of(target: ScanTarget, timeout_s: float) -> str | None:
    try:
        rc, out = await run(["git", "rev-parse", "HEAD"], target.path, timeout_s)
    except OSError:
        return None
    return out.strip() if rc == 0 else None


async def load_scanned(hub: Hub) -> dict[str, dict[str, Any]]:
    rows = await hub.store.load_records(SCAN_KIND)
    return {r.key: body for r in rows if isinstance(body := readable(r.body), dict)}


async def due(auto: Runtime, targets: list[ScanTarget]) -> list[ScanTarget]:
    now, cooldown_ms = auto.hub.clock.now_ms(), auto.hub.settings.autonomy_improve_cooldown_s * 1000
    out = []
    for target in targets:
        last = auto.scanned.get(target.name)
        if target.name in auto.forced_scans or last is None:
            out.append(target)
        elif now - count(last.get("ts")) >= cooldown_ms:
            head = await head_of(target, auto.hub.settings.autonomy_scan_timeout_s)
            if head is not None and head != last.get("head"):
                out.append(target)
    return out


def _python_files(listing: str) -> list[str]:
    return sorted(f for f in listing.splitlines() if f.endswith(".py"))


def _missing_tests(files: list[str]) -> list[Finding]:
    tested = {Path(f).name[5:] for f in files if Path(f).name.startswith("test_")}
    out = []
    for f in files:
        name = Path(f).name
        is_test = name.startswith("test_") or name in ("__init__.py", "conftest.py", "setup.py")
        if not is_test and "tests" not in Path(f).parts and name not in tested:
            out.append(Finding("missing_tests", f, f"module {f} has no test module test_{name}"))
    return out


async def scan(target: ScanTarget, timeout_s: float) -> tuple[list[Finding], list[str], dict[str, str]]:
    """(findings, skipped scanners with why, broken-main problems) of one target. A bare repository (what a hub
    registers as a shared remote) has no files to read or test: its HEAD is scanned in a throwaway clone."""
    rc, bare = await run(["git", "rev-parse", "--is-bare-repository"], target.path, timeout_s)
    if rc != 0 or bare.strip() != "true":
        return await scan_tree(target, target.path, timeout_s)
    with tempfile.TemporaryDirectory(prefix="agentcom-scan-") as tmp:
        tree = Path(tmp) / "tree"
        rc, out = await run(
            ["git", "clone", "--quiet", "--shared", "--", str(target.path), str(tree)], Path(tmp), timeout_s
        )
        if rc != 0:
            return [], [f"scan: clone of HEAD failed: {out.strip()[-200:]}"], {}
        return await scan_tree(target, tree, timeout_s)


async def scan_tree(
    target: ScanTarget, root: Path, timeout_s: float
) -> tuple[list[Finding], list[str], dict[str, str]]:
    """:func:`scan` of the files under ``root`` (the target's checkout, or a clone of its HEAD)."""
    findings: list[Finding] = []
    skipped: list[str] = []
    broken: dict[str, str] = {}
    rc, listing = await run(["git", "ls-files"], root, timeout_s)
    files = _python_files(listing) if rc == 0 else []
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        skipped.append("ruff: not installed")
    elif files:
        rc, out = await run([ruff, "check", "--output-format", "json", "--exit-zero", "--", *files], root, timeout_s)
        try:
            issues = json.loads(out) if rc == 0 else []
        except ValueError:
            issues = []
            skipped.append("ruff: unreadable output")
        per_file: dict[str, list[str]] = {}
        for issue in issues if isinstance(issues, list) else []:
            if not isinstance(issue, dict):
                continue
            rel = os.path.relpath(str(issue.get("filename", "")), root)
            per_file.setdefault(rel, []).append(str(issue.get("code")))
        findings += [
            Finding("ruff", f, f"ruff: {len(c)} issue(s) in {f} ({', '.join(sorted(set(c)))})")
            for f, c in sorted(per_file.items())
        ]
    if target.test_command:
        rc, out = await run(list(target.test_command), root, timeout_s)
        if rc != 0:
            broken[target.name] = f"tests failing (exit {rc}): {out.strip()[-300:]}"
    else:
        skipped.append("tests: no test command")
    for f in files:
        path = root / f
        try:
            text = path.read_bytes()[:MAX_FILE_BYTES].decode("utf-8", "replace")
        except OSError:
            continue
        if CONFLICT.search(text):
            broken[target.name] = f"merge conflict markers in {f}"
        if n := len(MARKER.findall(text)):
            findings.append(Finding("todo", f, f"{n} TODO/FIXME marker(s) in {f}"))
    findings += _missing_tests(files)
    return findings, skipped, broken


async def run_cycle(auto: Runtime) -> None:
    """Scan every due target and act on what it shows. A transition (goals beat improving) can cancel the cycle at
    any await, so each step is recorded before the next: the scan and a broken main first, then per finding its
    cooldown mark before its goal (a cut costs at most one hygiene goal, never a duplicate)."""
    hub, settings = auto.hub, auto.hub.settings
    for target in await auto.due_targets():
        head = await head_of(target, settings.autonomy_scan_timeout_s)
        findings, skipped, broken = await scan(target, settings.autonomy_scan_timeout_s)
        now = hub.clock.now_ms()
        raised = {r.key: b for r in await hub.store.load_records(FILE_KIND) if isinstance(b := readable(r.body), dict)}
        cooldown_ms = settings.autonomy_file_cooldown_s * 1000
        touched = goal_touched_files(hub, target.name, now - int(cooldown_ms))
        fresh = [
            f
            for f in findings
            if f.file not in touched and now - count(raised.get(f"{target.name}:{f.file}", {}).get("ts")) >= cooldown_ms
        ]
        fresh.sort(key=lambda f: (SEVERITY.get(f.scan, 9), f.file))
        fresh = fresh[: settings.autonomy_max_findings]
        scanned = {"head": head, "ts": now, "findings": len(findings), "raised": len(fresh), "submitted": 0}
        auto.scanned[target.name] = scanned | {"skipped": skipped}
        await hub.store.write(
            [PutRecord(RecordRow(SCAN_KIND, target.name, now, json.dumps(auto.scanned[target.name])))]
        )
        auto.forced_scans.discard(target.name)
        auto.broken_main.update(broken)
        if target.name not in broken:
            auto.broken_main.pop(target.name, None)
            auto.broken_handled.discard(target.name)
        logger.info(
            "scanned %s: %d findings, %d new; skipped %s", target.name, len(findings), len(fresh), skipped or "none"
        )
        for f in fresh:
            key = f"{target.name}:{f.file}"
            await hub.store.write([PutRecord(RecordRow(FILE_KIND, key, now, json.dumps({"ts": now, "scan": f.scan})))])
            result = await submit_goal(hub, f.detail, target.name, "low", "scanner")
            body = {"repo": target.name, "scan": f.scan, "file": f.file, "detail": f.detail, "goal": result, "ts": now}
            await hub.store.write([PutRecord(RecordRow(FINDING_KIND, f"{key}:{f.scan}", now, json.dumps(body)))])
            auto.scanned[target.name]["submitted"] += result == "submitted"
