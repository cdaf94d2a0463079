"""Request limits at the edge (hub/limits.py, hub/api_limits.py): body caps before reading, rate limits per token
and per address with failed authentications counted, and the admin's overrides. Raw HTTP against a real hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import HubHandle

MakeHub = Callable[..., Awaitable[HubHandle]]


async def raw_request(
    handle: HubHandle,
    head: str,
    body_parts: Sequence[bytes] = (),
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send a hand-written HTTP/1.1 request (headers, then each body part as written) and read the answer."""
    host, port = handle.url.split("//", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.replace("\n", "\r\n").encode())
        await writer.drain()
        for part in body_parts:
            writer.write(part)
            try:
                await writer.drain()
            except ConnectionError:
                break  # the hub answered and closed: the rest is never read
        async with asyncio.timeout(10):
            status = int((await reader.readline()).split()[1])
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            data = await reader.readexactly(int(headers["content-length"]))
        return status, headers, json.loads(data)
    finally:
        writer.close()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def post_head(handle: HubHandle, path: str, extra: str) -> str:
    return (
        f"POST {path} HTTP/1.1\nHost: hub\nAuthorization: Bearer {handle.admin_token}\n"
        f"Content-Type: application/json\n{extra}\n"
    )


async def test_declared_oversized_body_is_refused_before_it_is_sent(make_hub: MakeHub) -> None:
    """A Content-Length over the cap gets 413 payload_too_large at once, though not one body byte was sent."""
    handle = await make_hub(max_body_bytes=4096)
    status, headers, body = await raw_request(handle, post_head(handle, "/api/tasks", "Content-Length: 5000000\n"))
    assert status == 413 and body == {"error": "payload_too_large", "limit_bytes": 4096}
    assert headers["content-type"] == "application/json"
    assert handle.hub.queue.stats()["total"] == 0


async def test_chunked_body_is_counted_as_it_streams(make_hub: MakeHub) -> None:
    """A chunked body with no Content-Length is cut off with 413 once its bytes pass the cap; none is queued."""
    handle = await make_hub(max_body_bytes=4096)
    description = "x" * 3000
    payload = json.dumps({"description": description}).encode()
    parts = [chunk(payload[i : i + 1000]) for i in range(0, len(payload), 1000)] + [b"0\r\n\r\n"]
    status, _, body = await raw_request(handle, post_head(handle, "/api/tasks", "Transfer-Encoding: chunked\n"), parts)
    assert status == 201, body  # under the cap: accepted
    big = json.dumps({"description": "y" * 8000}).encode()
    parts = [chunk(big[i : i + 1000]) for i in range(0, len(big), 1000)] + [b"0\r\n\r\n"]
    status, _, body = await raw_request(handle, post_head(handle, "/api/tasks", "Transfer-Encoding: chunked\n"), parts)
    assert status == 413 and body == {"error": "payload_too_large", "limit_bytes": 4096}
    assert handle.hub.queue.stats()["total"] == 1


async def test_batch_endpoint_has_its_own_larger_cap(make_hub: MakeHub) -> None:
    """The same 40 KB body is refused by POST /api/tasks and accepted by the batch endpoint (its cap is larger)."""
    handle = await make_hub(max_body_bytes=16 * 1024, max_batch_body_bytes=256 * 1024)
    batch = {"tasks": [{"description": "z" * 2000} for _ in range(20)]}
    r = await handle.http.post("/api/tasks", json={"description": "z" * 40_000})
    assert r.status_code == 413 and r.json()["limit_bytes"] == 16 * 1024
    r = await handle.http.post("/api/tasks/batch", json=batch)
    assert r.status_code == 201 and r.json()["count"] == 20
    r = await handle.http.post(
        "/api/tasks/batch", content=b"[" + b" " * (300 * 1024) + b"]", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json() == {"error": "payload_too_large", "limit_bytes": 256 * 1024}


async def test_default_caps_are_one_and_sixteen_mebibytes(make_hub: MakeHub) -> None:
    """Out of the box: 1 MiB for a request body, 16 MiB for the batch endpoint."""
    handle = await make_hub()
    head = "Content-Length: {}\n"
    status, _, body = await raw_request(handle, post_head(handle, "/api/tasks", head.format(2**20 + 1)))
    assert (status, body["limit_bytes"]) == (413, 2**20)
    status, _, body = await raw_request(handle, post_head(handle, "/api/tasks/batch", head.format(16 * 2**20 + 1)))
    assert (status, body["limit_bytes"]) == (413, 16 * 2**20)


async def test_each_agent_token_has_its_bucket_and_admin_is_unlimited(make_hub: MakeHub) -> None:
    """An agent past its burst gets 429 rate_limited with Retry-After; another agent and the admin are unaffected."""
    handle = await make_hub(rate_limit_agent=(3.0, 0.01))
    tokens = [await handle.mint_token(name) for name in ("busy", "calm")]
    async with httpx.AsyncClient(base_url=handle.url, headers={"Authorization": f"Bearer {tokens[0]}"}) as busy:
        codes = [(await busy.get("/api/tasks/stats")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await busy.get("/api/tasks/stats")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"] == "rate_limited" and r.json()["tier"] == "agent" and r.json()["scope"] == "token"
        assert r.json()["retry_after_ms"] > 0
    async with httpx.AsyncClient(base_url=handle.url, headers={"Authorization": f"Bearer {tokens[1]}"}) as calm:
        assert (await calm.get("/api/tasks/stats")).status_code == 200
    for _ in range(50):
        assert (await handle.http.get("/api/tasks/stats")).status_code == 200


async def test_anonymous_requests_share_their_address_bucket(make_hub: MakeHub) -> None:
    """Requests without a token draw on their address's bucket; a valid token from the same address still works."""
    handle = await make_hub(rate_limit_anonymous=(2.0, 0.01))
    async with httpx.AsyncClient(base_url=handle.url) as anonymous:
        codes = [(await anonymous.get("/health")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert (await anonymous.get("/health")).json()["scope"] == "address"
    assert (await handle.http.get("/health")).status_code == 200


async def test_failed_auth_spends_the_address_then_429_and_no_sockets(make_hub: MakeHub) -> None:
    """401s count against the client address: once spent, anything without a valid token gets 429 (not 401) and
    /ws handshakes are refused; the admin's valid token is still served."""
    handle = await make_hub(rate_limit_auth_failures=(3.0, 0.01))
    async with httpx.AsyncClient(base_url=handle.url, headers={"Authorization": "Bearer wrong"}) as guesser:
        codes = [(await guesser.get("/api/tasks")).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = await guesser.get("/api/tasks")
        assert r.json()["scope"] == "auth_failures" and "retry-after" in r.headers
    async with httpx.AsyncClient(base_url=handle.url) as anonymous:
        assert (await anonymous.get("/health")).status_code == 429
    assert (await handle.http.get("/api/tasks")).status_code == 200
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(handle.ws_url):
            pass
    assert refused.value.response.status_code == 429
    limits = (await handle.http.get("/admin/rate-limits")).json()
    assert limits["stats"]["auth_failures"] == 3 and limits["stats"]["refused"] >= 3


async def test_failed_identifies_count_against_the_address(make_hub: MakeHub) -> None:
    """Identifies with a bad token on /ws are failed authentications too: after them, a bad HTTP token gets 429."""
    handle = await make_hub(rate_limit_auth_failures=(2.0, 0.01))
    async with websockets.connect(handle.ws_url) as ws:
        for _ in range(2):
            await ws.send(json.dumps({"type": "identify", "agent_id": "intruder", "token": "guess"}))
            assert json.loads(await ws.recv())["error"] == "invalid_token"
    async with httpx.AsyncClient(base_url=handle.url, headers={"Authorization": "Bearer wrong"}) as guesser:
        r = await guesser.get("/api/tasks")
        assert r.status_code == 429 and r.json()["scope"] == "auth_failures"


async def test_admin_overrides_per_agent_and_address_persist(make_hub: MakeHub) -> None:
    """PUT sets an override that applies at once, GET lists it, it survives a restart, DELETE drops it."""
    handle = await make_hub()
    token = await handle.mint_token("throttled")
    r = await handle.http.put("/admin/rate-limits/agents/throttled", json={"capacity": 1, "refill_per_s": 0.01})
    assert r.status_code == 200 and r.json() == {"key": "agent:throttled", "capacity": 1.0, "refill_per_s": 0.01}
    r = await handle.http.put("/admin/rate-limits/addresses/127.0.0.1", json={"unlimited": True})
    assert r.status_code == 200
    async with httpx.AsyncClient(base_url=handle.url, headers={"Authorization": f"Bearer {token}"}) as agent:
        assert [(await agent.get("/api/tasks/stats")).status_code for _ in range(2)] == [200, 429]
    listed = (await handle.http.get("/admin/rate-limits")).json()
    assert {o["key"] for o in listed["overrides"]} == {"agent:throttled", "address:127.0.0.1"}
    assert listed["persisted"] is True and listed["tiers"]["admin"] == {"unlimited": True}

    await handle.server.stop()
    again = await make_hub(data_dir=handle.data_dir)
    listed = (await again.http.get("/admin/rate-limits")).json()
    assert {o["key"] for o in listed["overrides"]} == {"agent:throttled", "address:127.0.0.1"}
    r = await again.http.delete("/admin/rate-limits/agents/throttled")
    assert r.status_code == 200
    assert (await again.http.delete("/admin/rate-limits/agents/throttled")).status_code == 404
    async with httpx.AsyncClient(base_url=again.url, headers={"Authorization": f"Bearer {token}"}) as agent:
        assert [(await agent.get("/api/tasks/stats")).status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/admin/rate-limits/agents/a", {"capacity": 0, "refill_per_s": 1}, 422, "validation_failed"),
        ("/admin/rate-limits/agents/a", {"capacity": 5}, 422, "validation_failed"),
        (
            "/admin/rate-limits/agents/a",
            {"capacity": 5, "refill_per_s": 1, "unlimited": True},
            422,
            "validation_failed",
        ),
        ("/admin/rate-limits/addresses/not-an-ip", {"unlimited": True}, 422, "validation_failed"),
        ("/admin/rate-limits/agents/..bad", {"unlimited": True}, 422, "validation_failed"),
    ],
)
async def test_bad_overrides_are_refused(
    hub: HubHandle, path: str, body: dict[str, Any], status: int, error: str
) -> None:
    """Overrides are validated: both numbers in range or unlimited, a real address, a plausible agent id."""
    r = await hub.http.put(path, json=body)
    assert (r.status_code, r.json()["error"]) == (status, error), r.text


async def test_rate_limit_routes_are_admin_only(hub: HubHandle) -> None:
    """An agent token gets 403 on the rate-limit admin routes; no token gets 401."""
    token = await hub.mint_token("nosy")
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {token}"}) as agent:
        assert (await agent.get("/admin/rate-limits")).status_code == 403
        assert (await agent.put("/admin/rate-limits/agents/nosy", json={"unlimited": True})).status_code == 403
    async with httpx.AsyncClient(base_url=hub.url) as anonymous:
        assert (await anonymous.get("/admin/rate-limits")).status_code == 401
