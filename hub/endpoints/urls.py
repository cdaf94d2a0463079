"""Endpoint URLs: the one spelling an endpoint is keyed by, its id, and what a loopback URL from afar means."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Literal
from urllib.parse import urlsplit

Kind = Literal["ollama", "openai"]
MAX_URL_CHARS = 512


class BadUrl(ValueError):
    """A URL the registry refuses; ``str(exc)`` says why without repeating the URL (it may hold a secret)."""


def normalise_url(raw: str, kind: Kind = "ollama") -> str:
    """``scheme://host[:port][/path]`` in lower case without a trailing slash (nor, for OpenAI-compatible servers,
    a trailing ``/v1``). Raises :class:`BadUrl` for credentials, a scheme other than http(s), a query or fragment,
    control characters, or more than :data:`MAX_URL_CHARS` characters."""
    if len(raw) > MAX_URL_CHARS:
        raise BadUrl(f"longer than {MAX_URL_CHARS} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in raw):
        raise BadUrl("contains whitespace or control characters")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise BadUrl("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadUrl("the scheme must be http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise BadUrl("must not carry credentials")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise BadUrl("must not have a query or fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise BadUrl("has no host")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    if kind == "openai" and path.endswith("/v1"):
        path = path[:-3]
    return f"{parts.scheme.lower()}://{netloc}{path}"


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def localise(url: str, peer: str | None) -> str:
    """``url`` (normalised) as the hub reaches it: a loopback host reported by an agent connected from another
    machine (``peer``, its address) is that machine's address; otherwise ``url`` unchanged."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not peer or not _loopback(host) or _loopback(peer):
        return url
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return url
    netloc = (f"[{peer_ip}]" if peer_ip.version == 6 else str(peer_ip)) + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{netloc}{parts.path}"


def endpoint_id(url: str) -> str:
    """A short stable id for a normalised URL (the same URL always gets the same id)."""
    return "ep-" + hashlib.sha256(url.encode()).hexdigest()[:12]
