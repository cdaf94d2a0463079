"""``HttpChatModel``: the part of a ``chat`` call that :mod:`sidecar.agent.ollama` and
:mod:`sidecar.agent.openai_compat` do the same way, over ``httpx``.

Each client keeps its wire format (how messages go out, the request body, how the reply is read, how an error answer
is classified). This base does the rest once: the HTTP client and its timeouts, tools wrapped as
``{"type": "function", "function": tool}``, the request's estimated size checked against the context window before
anything is sent, retries through :func:`sidecar.agent.models.with_retries`, and transport failures translated into
``ModelUnavailable`` (:func:`transport_errors`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from sidecar.agent.models import (
    ContextOverflow,
    Message,
    ModelTurn,
    ModelUnavailable,
    ProgressCallback,
    RetryCallback,
    ToolSpec,
    estimate_tokens,
    with_retries,
)


class HttpChatModel(ABC):
    """A ``ChatModel`` over HTTP; a client defines ``provider``, its wire message, its window's name and one call."""

    provider: str
    """``ollama`` or ``openai``; with ``model`` it names the client in retry logs."""

    def __init__(
        self, url: str, model: str, num_ctx: int, *, connect_timeout_s: float, read_timeout_s: float,
        max_retries: int, retry_delay_s: float, headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> None:  # fmt: skip
        self.model, self.num_ctx = model, num_ctx
        self.max_retries, self.retry_delay_s = max_retries, retry_delay_s
        timeout = httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=60.0, pool=connect_timeout_s)
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout, follow_redirects=follow_redirects,
                                         headers={"Accept": "application/json", **(headers or {})})  # fmt: skip

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, on_progress: ProgressCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> ModelTurn:  # fmt: skip
        """The ``ChatModel`` call: a request too large for the window raises ``ContextOverflow`` before it is sent."""
        wire = [self._wire_message(m) for m in messages]
        wire_tools = [{"type": "function", "function": dict(t)} for t in tools]
        estimate = estimate_tokens([wire, wire_tools])
        if estimate > self.num_ctx:
            raise ContextOverflow(f"the request is about {estimate} tokens, more than {self._window()}")

        async def once() -> ModelTurn:
            return await self._chat_once(wire, wire_tools, on_progress)

        return await with_retries(once, name=f"{self.provider} {self.model}", max_retries=self.max_retries,
                                  retry_delay_s=self.retry_delay_s, on_retry=on_retry)  # fmt: skip

    @abstractmethod
    def _wire_message(self, message: Message) -> dict[str, Any]:
        """One neutral history message as this server expects it."""

    @abstractmethod
    def _window(self) -> str:
        """The context window as error messages name it."""

    @abstractmethod
    async def _chat_once(
        self, wire: list[dict[str, Any]], tools: list[dict[str, Any]], on_progress: ProgressCallback | None
    ) -> ModelTurn:
        """Send one request and read the reply, raising ``ModelError`` (retried when ``retryable``)."""


@contextmanager
def transport_errors(where: str) -> Iterator[None]:
    """Translate ``httpx`` (and socket) failures raised inside into retryable ``ModelUnavailable`` naming ``where``."""
    try:
        yield
    except (ConnectionError, httpx.ConnectError) as exc:
        raise ModelUnavailable(f"cannot connect to {where}: {exc}", retryable=True) from None
    except httpx.TimeoutException as exc:
        raise ModelUnavailable(f"{where} timed out ({type(exc).__name__})", retryable=True) from None
    except httpx.HTTPError as exc:
        raise ModelUnavailable(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from None


def count(value: Any) -> int:
    """A token counter from a reply: a positive integer as sent, anything else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
