"""Health checks: a supervised loop asking every endpoint what it serves, with backoff for the ones that do not answer.

Ollama: ``GET /api/tags`` (models), ``POST /api/show`` for each model not yet known (capabilities such as ``tools``
and ``thinking``, context length), ``GET /api/ps`` (loaded models, VRAM). OpenAI-compatible: ``GET /v1/models``.
A check that fails counts; ``endpoint_unhealthy_after`` in a row make the endpoint unhealthy, and from then on it is
checked after ``interval * 2**k`` (capped at ``endpoint_backoff_max_s``) until it answers again. Newly discovered
models are handed to probing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from hub.endpoints.registry import MAX_MODEL_CHARS, MAX_MODELS, Endpoint, EndpointRegistry, ModelInfo, Warm
from shared.capped_body import TooLarge, read_capped

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Largest answer read from an endpoint (a model list, a show, a chat reply)."""
CHECK_CONCURRENCY = 8
"""Endpoints checked at once."""


class EndpointError(Exception):
    """A request to an endpoint failed; the message is short and holds no secret."""


async def fetch_json(client: httpx.AsyncClient, method: str, url: str, timeout_s: float, body: Any = None) -> Any:
    """One request with a timeout and a cap on the bytes read; the decoded JSON answer, or :class:`EndpointError`."""
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(method, url, json=body, timeout=timeout_s) as response:
                data = await read_capped(response, MAX_RESPONSE_BYTES)
                if response.status_code >= 400:
                    raise EndpointError(f"HTTP {response.status_code}")
    except TooLarge as exc:
        raise EndpointError(str(exc)) from None
    except TimeoutError:
        raise EndpointError(f"no answer within {timeout_s:g}s") from None
    except httpx.HTTPError as exc:
        raise EndpointError(type(exc).__name__) from None
    try:
        return json.loads(data)
    except ValueError:
        raise EndpointError("answer is not JSON") from None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _names(answer: Any, list_key: str, name_key: str) -> list[str]:
    items = answer.get(list_key) if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise EndpointError(f"answer has no {list_key} list")
    names = [i.get(name_key) for i in items if isinstance(i, dict)]
    return [n for n in names if isinstance(n, str) and 0 < len(n) <= MAX_MODEL_CHARS][:MAX_MODELS]


def model_info(show: Any) -> ModelInfo:
    """Capabilities and context length from an ``/api/show`` answer."""
    if not isinstance(show, dict):
        return ModelInfo()
    caps = show.get("capabilities")
    caps = [c for c in caps if isinstance(c, str)][:16] if isinstance(caps, list) else []
    info = show.get("model_info")
    info = info if isinstance(info, dict) else {}
    context = next((_int(v) for k, v in info.items() if isinstance(k, str) and k.endswith(".context_length")), None)
    details = show.get("details")
    details = details if isinstance(details, dict) else {}
    family = details.get("family") if isinstance(details.get("family"), str) else None
    return ModelInfo(capabilities=caps, context_length=context, family=family[:64] if family else None)


async def check(client: httpx.AsyncClient, registry: EndpointRegistry, ep: Endpoint) -> None:
    """Check one endpoint and record what it found (or that it failed)."""
    settings = registry.settings
    timeout = settings.endpoint_http_timeout_s
    new_models: list[str] = []
    try:
        if ep.kind == "ollama":
            names = _names(await fetch_json(client, "GET", ep.url + "/api/tags", timeout), "models", "name")
            models: dict[str, ModelInfo] = {}
            for name in names:
                known = ep.models.get(name)
                if known is None:
                    new_models.append(name)
                    known = model_info(await fetch_json(client, "POST", ep.url + "/api/show", timeout, {"model": name}))
                models[name] = known
            ps = await fetch_json(client, "GET", ep.url + "/api/ps", timeout)
            warm = _warm(ps)
        else:
            names = _names(await fetch_json(client, "GET", ep.url + "/v1/models", timeout), "data", "id")
            new_models = [n for n in names if n not in ep.models]
            models = {n: ep.models.get(n) or ModelInfo() for n in names}
            warm = {}
    except EndpointError as exc:
        await _failed(registry, ep, str(exc))
        return
    now = registry.now_ms()
    changed = ep.healthy is not True or models != ep.models
    warm_before = ep.warm
    ep.models, ep.warm = models, warm
    ep.vram_bytes = sum(w.size_vram or 0 for w in warm.values())
    ep.healthy, ep.failures, ep.last_error = True, 0, None
    ep.last_ok_at = ep.last_check_at = now
    ep.next_check_at = now + int(settings.endpoint_health_interval_s * 1000)
    if changed:
        await registry.save(ep)
    for name in new_models if settings.endpoint_probe_enabled else ():
        if (ep.id, name) not in registry.probes:
            registry.want_probe(ep.id, name)
    await registry.notify("endpoint_checked", ep, publish=changed or ep.warm != warm_before)


def _warm(ps: Any) -> dict[str, Warm]:
    items = ps.get("models") if isinstance(ps, dict) else None
    warm: dict[str, Warm] = {}
    for item in items if isinstance(items, list) else []:
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and len(name) <= MAX_MODEL_CHARS and len(warm) < MAX_MODELS:
            expires = item.get("expires_at")
            warm[name] = Warm(_int(item.get("size_vram")), _int(item.get("context_length")),
                              expires[:64] if isinstance(expires, str) else None)  # fmt: skip
    return warm


async def _failed(registry: EndpointRegistry, ep: Endpoint, error: str) -> None:
    settings = registry.settings
    now = registry.now_ms()
    ep.failures += 1
    ep.last_check_at, ep.last_error = now, error
    was = ep.healthy
    if ep.failures >= settings.endpoint_unhealthy_after:
        ep.healthy = False
        ep.warm, ep.vram_bytes = {}, 0
    over = max(0, ep.failures - settings.endpoint_unhealthy_after)
    wait_s = min(settings.endpoint_health_interval_s * 2 ** min(over, 30), settings.endpoint_backoff_max_s)
    ep.next_check_at = now + int(wait_s * 1000)
    if ep.healthy != was:
        logger.warning("endpoint %s (%s) is unhealthy: %s", ep.id, ep.url, error)
        await registry.save(ep)
    await registry.notify("endpoint_checked", ep, publish=ep.healthy != was)


async def run_health(registry: EndpointRegistry) -> None:
    """Check every endpoint when it is due, forever (owned by the hub's TaskGroup)."""
    limit = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def one(ep: Endpoint) -> None:
        async with limit:
            try:
                await check(client, registry, ep)
            except Exception:  # a bug in reading one answer must not stop the checks of every endpoint
                logger.exception("health check of %s failed", ep.id)
                await _failed(registry, ep, "internal error")

    async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
        while True:
            registry.check_soon.clear()
            now = registry.now_ms()
            due = [ep for ep in registry.endpoints.values() if ep.next_check_at <= now]
            if due:
                async with asyncio.TaskGroup() as tg:
                    for ep in due:
                        tg.create_task(one(ep))
                continue
            upcoming = min((ep.next_check_at for ep in registry.endpoints.values()), default=now + 60_000)
            try:
                async with asyncio.timeout(max(0.0, (upcoming - now) / 1000)):
                    await registry.check_soon.wait()
            except TimeoutError:
                pass


async def check_now(registry: EndpointRegistry, ep_id: str) -> bool:
    """Check endpoint ``ep_id`` at once (healing's re-probe); whether it answered healthy."""
    ep = registry.endpoints.get(ep_id)
    if ep is None:
        return False
    async with httpx.AsyncClient(timeout=registry.settings.endpoint_http_timeout_s) as client:
        await check(client, registry, ep)
    return bool(ep.healthy)
