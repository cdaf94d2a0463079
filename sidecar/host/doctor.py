"""``agentcom doctor`` for an agent host: what sandbox this machine gives, which tools exist, and with a config
what the sidecar will need from outside: the hub answers, the hub accepts the token, the configured models exist on
the Ollama endpoint (``/api/tags``), and the hub's repositories answer ``git ls-remote`` with this host's credentials.

Every check reports; none stops the others. A missing sandbox, an unreachable hub, a refused token, a missing model
or an unreachable repository make the report fail; missing optional tools only warn.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from typing import Any

import httpx

from shared.doctor_report import Check, DoctorReport
from sidecar.sandbox.base import SandboxLevel
from sidecar.sandbox.probe import probe_sandbox
from sidecar.settings import SidecarSettings

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HTTP_TIMEOUT_S = 5.0


def run_doctor(settings: SidecarSettings | None = None, *, out: Callable[[str], object] = print) -> DoctorReport:
    """Check the sandbox, local tools and (with settings) the hub and Ollama; print and return the report.

    For synchronous callers (the CLI); from a running event loop use :func:`check_machine`.

    Args:
        settings: The sidecar's settings; without them only local checks run.
        out: Where the rendered report goes.
    """
    return asyncio.run(check_machine(settings, out=out))


async def check_machine(
    settings: SidecarSettings | None = None, *, out: Callable[[str], object] = print
) -> DoctorReport:
    """The checks of :func:`run_doctor`, as a coroutine."""
    report = DoctorReport()
    report.checks.append(await _sandbox_check(settings))
    report.checks.append(_tool_check("bwrap", ("bwrap",), "bubblewrap gives the strongest sandbox", required=False))
    report.checks.append(_tool_check("pm2", ("pm2",), "keeps the sidecar running", required=False))
    report.checks.append(_tool_check("chromium", CHROMIUM_NAMES, "for browser checks", required=False))
    if settings is not None:
        hub = await _http_check("hub", settings.http_url + "/health", required=True, verify=_verify(settings))
        report.checks.append(hub)
        if hub.ok:
            token, repos = await _token_check(settings)
            report.checks.append(token)
            if repos:
                report.checks += await _repo_checks(settings, repos)
        if settings.ollama_url:
            report.checks.append(await _models_check(settings))
        elif settings.models:
            report.checks.append(Check("models", False, "models are configured but no ollama_url", required=False))
    out(report.render())
    return report


def _verify(settings: SidecarSettings) -> Any:
    """What httpx verifies the hub's certificate with: the configured CA, else the system's."""
    if settings.hub_ca_file is not None and settings.http_url.startswith("https://"):
        return str(settings.hub_ca_file)
    return True


async def _token_check(settings: SidecarSettings) -> tuple[Check, list[dict[str, Any]]]:
    """Whether the hub accepts the agent's token (it lists its repositories with it); the repositories too."""
    url = settings.http_url + "/api/repos"
    headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"}
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, verify=_verify(settings)) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Check("token", False, f"{url} unreachable: {type(exc).__name__}"), []
    if response.status_code == 401:
        fix = f'mint a new one (POST /admin/tokens {{"agent_id": "{settings.agent_id}"}}) and put it in the config'
        return Check("token", False, f"the hub refused the token of {settings.agent_id}: {fix}"), []
    if response.status_code != 200:
        return Check("token", False, f"{url} answered HTTP {response.status_code}"), []
    try:
        repos = [r for r in response.json().get("repos", []) if isinstance(r, dict)]
    except (ValueError, AttributeError):
        repos = []
    return Check("token", True, f"accepted by the hub for {settings.agent_id}"), repos


async def _repo_checks(settings: SidecarSettings, repos: list[dict[str, Any]]) -> list[Check]:
    """``git ls-remote`` of each of the hub's repositories, with this host's credentials (as the sidecar does)."""
    from shared.protocol import RegistryRepo
    from sidecar.git.credentials import credential_env
    from sidecar.git.reach import probe

    env = credential_env(settings.git, settings.mirror_root)
    checks = []
    for raw in repos[:100]:
        try:
            repo = RegistryRepo.model_validate(
                {"name": raw.get("name"), "url": raw.get("url"), "default_branch": raw.get("default_branch") or "main"}
            )
        except ValueError:
            continue
        reason = await probe(repo, settings.git, env)
        detail = f"{repo.url} answers ({repo.default_branch})" if reason is None else f"{repo.url}: {reason}"
        checks.append(Check(f"repo {repo.name}", reason is None, detail))
    return checks


def _model_names(tags: Any) -> set[str]:
    names: set[str] = set()
    for model in tags.get("models", []) if isinstance(tags, dict) else []:
        for key in ("name", "model"):
            if isinstance(model, dict) and isinstance(model.get(key), str):
                names.add(model[key])
                names.add(model[key].removesuffix(":latest"))
    return names


async def _models_check(settings: SidecarSettings) -> Check:
    """The Ollama endpoint answers and serves every configured model (``/api/tags``)."""
    assert settings.ollama_url is not None
    url = settings.ollama_url.rstrip("/") + "/api/tags"
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            response = await client.get(url)
        tags = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        return Check("ollama", False, f"{url} unreachable: {type(exc).__name__}: {exc}", bool(settings.models))
    if tags is None:
        return Check("ollama", False, f"{url} answered HTTP {response.status_code}", bool(settings.models))
    served = _model_names(tags)
    missing = [m for m in settings.models if m not in served and m.removesuffix(":latest") not in served]
    if missing:
        pull = "; ".join(f"ollama pull {m}" for m in missing)
        return Check("ollama", False, f"{url} does not serve {', '.join(missing)} (run: {pull})")
    wanted = ", ".join(settings.models) or "no models configured"
    return Check("ollama", True, f"{url} answers; serves {wanted}", bool(settings.models))


async def _sandbox_check(settings: SidecarSettings | None) -> Check:
    try:
        if settings is None:
            sandbox = await probe_sandbox()
        else:
            sandbox = await probe_sandbox(settings.sandbox.level, uid_base=settings.uid_base)
    except Exception as exc:  # the probe failing is itself the finding
        return Check("sandbox", False, f"probe failed: {type(exc).__name__}: {exc}")
    if sandbox.level == SandboxLevel.BWRAP:
        return Check("sandbox", True, sandbox.describe())
    return Check("sandbox", True, f"{sandbox.describe()} -- weaker than bwrap; install bubblewrap")


def _tool_check(name: str, binaries: tuple[str, ...], why: str, *, required: bool) -> Check:
    for binary in binaries:
        if (path := shutil.which(binary)) is not None:
            return Check(name, True, path, required)
    return Check(name, False, f"not found ({why})", required)


async def _http_check(name: str, url: str, *, required: bool, verify: Any = True) -> Check:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, verify=verify) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return Check(name, False, f"{url} unreachable: {type(exc).__name__}: {exc}", required)
    if response.status_code >= 500:
        return Check(name, False, f"{url} answered HTTP {response.status_code}", required)
    return Check(name, True, f"{url} answered HTTP {response.status_code}", required)
