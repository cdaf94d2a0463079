"""Token buckets with progressive backoff, as a pure function over (bucket, limit, now).

A bucket holds up to ``capacity`` tokens and gains ``refill_per_s`` a second; each request takes one. When none
is left the request is refused, and the bucket stays shut for the next step of the backoff (1 s, 2 s, 5 s...):
a client that keeps running it dry waits longer each time, until it has been refused nothing for ``quiet_s``.
Refusals while it is shut do not escalate further (they are told the same wait). :func:`take` decides
(and :func:`charge` books a failure after the fact); :class:`RateLimiter` (hub/limits.py) keeps the buckets and
asks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    capacity: float
    """Burst size; 0 (or less) means unlimited."""
    refill_per_s: float

    @property
    def unlimited(self) -> bool:
        return self.capacity <= 0

    def view(self) -> dict[str, float | bool]:
        return {"unlimited": True} if self.unlimited else {"capacity": self.capacity, "refill_per_s": self.refill_per_s}


UNLIMITED = Limit(0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at: float
    """When ``tokens`` was last brought up to date (seconds, monotonic)."""
    strikes: int = 0
    """Times it ran dry since it was last quiet."""
    shut_until: float = 0.0
    last_refusal: float = -math.inf


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    remaining: float = math.inf


def full(limit: Limit, now: float) -> Bucket:
    return Bucket(tokens=limit.capacity, at=now)


def refilled(bucket: Bucket, limit: Limit, now: float) -> Bucket:
    tokens = min(limit.capacity, bucket.tokens + max(0.0, now - bucket.at) * limit.refill_per_s)
    return Bucket(tokens, now, bucket.strikes, bucket.shut_until, bucket.last_refusal)


def take(
    bucket: Bucket | None,
    limit: Limit,
    now: float,
    backoff_s: tuple[float, ...] = (),
    quiet_s: float = 60.0,
    cost: float = 1.0,
) -> tuple[Bucket | None, Decision]:
    """Spend ``cost`` from ``bucket`` (None: a fresh, full one) at ``now``; returns the new bucket and the decision."""
    if limit.unlimited:
        return None, Decision(True)
    b = refilled(bucket if bucket is not None else full(limit, now), limit, now)
    strikes = 0 if now - b.last_refusal >= quiet_s else b.strikes
    if now < b.shut_until:  # still shut from the last time it ran dry
        return Bucket(b.tokens, now, strikes, b.shut_until, now), Decision(False, b.shut_until - now, 0.0)
    if b.tokens >= cost:
        return Bucket(b.tokens - cost, now, strikes, b.shut_until, b.last_refusal), Decision(True, 0.0, b.tokens - cost)
    refill_s = (cost - b.tokens) / limit.refill_per_s if limit.refill_per_s > 0 else math.inf
    step = backoff_s[min(strikes, len(backoff_s) - 1)] if backoff_s else 0.0
    wait = max(refill_s, step)
    return Bucket(b.tokens, now, strikes + 1, now + wait, now), Decision(False, wait, 0.0)


def charge(
    bucket: Bucket | None,
    limit: Limit,
    now: float,
    backoff_s: tuple[float, ...] = (),
    quiet_s: float = 60.0,
    cost: float = 1.0,
) -> Bucket | None:
    """Spend ``cost`` for something that already happened (a failed authentication): never refused, but a bucket
    left dry is shut as :func:`take` shuts one, with the next step of the backoff."""
    if limit.unlimited:
        return None
    b = refilled(bucket if bucket is not None else full(limit, now), limit, now)
    strikes = 0 if now - b.last_refusal >= quiet_s else b.strikes
    tokens = max(0.0, b.tokens - cost)
    if tokens >= 1:
        return Bucket(tokens, now, strikes, b.shut_until, b.last_refusal)
    refill_s = (1 - tokens) / limit.refill_per_s if limit.refill_per_s > 0 else math.inf
    step = backoff_s[min(strikes, len(backoff_s) - 1)] if backoff_s else 0.0
    return Bucket(tokens, now, strikes + 1, max(b.shut_until, now + max(refill_s, step)), now)


def wait_s(bucket: Bucket | None, limit: Limit, now: float) -> float:
    """Seconds until ``bucket`` lets one request through (0 when it would now); it is not changed."""
    if limit.unlimited or bucket is None:
        return 0.0
    b = refilled(bucket, limit, now)
    if now < b.shut_until:
        return b.shut_until - now
    if b.tokens >= 1:
        return 0.0
    return (1 - b.tokens) / limit.refill_per_s if limit.refill_per_s > 0 else math.inf


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (at least 1)."""
    return str(max(1, math.ceil(min(seconds, 86_400.0))))
