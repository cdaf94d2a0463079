"""Reading a streamed HTTP answer with a cap: the body, or :class:`TooLarge` as soon as it passes the cap (the rest
is never read), so a peer cannot make us hold more than we chose to."""

from __future__ import annotations

import httpx


class TooLarge(ValueError):
    """The answer's body passed ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole body of a streamed ``response``; :class:`TooLarge` once more than ``limit`` bytes have come."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
