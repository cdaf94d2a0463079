"""A streamed answer is read whole up to the cap, and refused past it without reading the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.capped_body import TooLarge, read_capped


class Chunks(httpx.AsyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self.chunks, self.read = chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk


async def test_a_body_at_the_cap_is_read_whole() -> None:
    """Chunks adding up to exactly the cap come back joined."""
    assert await read_capped(httpx.Response(200, stream=Chunks(b"ab", b"cd")), 4) == b"abcd"


async def test_a_body_past_the_cap_is_refused_before_the_rest_is_read() -> None:
    """The chunk that passes the cap raises TooLarge (a ValueError naming the cap); later chunks are never read."""
    stream = Chunks(b"abc", b"de", b"never")
    with pytest.raises(TooLarge, match="larger than 4 bytes") as caught:
        await read_capped(httpx.Response(200, stream=stream), 4)
    assert isinstance(caught.value, ValueError) and caught.value.limit == 4 and stream.read == 2
