"""Token buckets with progressive backoff (hub/rate_limit.py), as pure tables over (bucket, limit, now)."""

from __future__ import annotations

import math

import pytest

from hub import rate_limit as RL

LIMIT = RL.Limit(capacity=3, refill_per_s=1.0)
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


def run(times: list[float], limit: RL.Limit = LIMIT, quiet_s: float = 60.0) -> list[tuple[bool, float]]:
    """Take one token at each time; (allowed, retry_after_s) for each."""
    bucket: RL.Bucket | None = None
    out = []
    for now in times:
        bucket, decision = RL.take(bucket, limit, now, BACKOFF, quiet_s)
        out.append((decision.allowed, round(decision.retry_after_s, 3)))
    return out


# case -> (request times, expected (allowed, retry_after_s) per request)
TABLE: dict[str, tuple[list[float], list[tuple[bool, float]]]] = {
    "a burst up to capacity passes": ([0, 0, 0], [(True, 0), (True, 0), (True, 0)]),
    "one over is refused for the first backoff step": ([0, 0, 0, 0], [(True, 0)] * 3 + [(False, 1.0)]),
    "refused again while shut: same deadline, no escalation": (
        [0, 0, 0, 0, 0.5],
        [(True, 0)] * 3 + [(False, 1.0), (False, 0.5)],
    ),
    "after the wait it has refilled": ([0, 0, 0, 0, 1.0], [(True, 0)] * 3 + [(False, 1.0), (True, 0)]),
    "refill is continuous": ([0, 0, 0, 2.0, 2.0, 2.0], [(True, 0)] * 5 + [(False, 1.0)]),
    "refill never exceeds capacity": ([0, 100.0, 100.0, 100.0, 100.0], [(True, 0)] * 4 + [(False, 1.0)]),
    "running dry again escalates the backoff": (
        [0, 0, 0, 0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0],
        [(True, 0)] * 3 + [(False, 1.0), (True, 0), (False, 2.0), (True, 0), (True, 0), (False, 5.0), (False, 5.0)],
    ),
    "quiet for quiet_s starts the backoff over": (
        [0, 0, 0, 0, 1.0, 1.0, 200.0, 200.0, 200.0, 200.0],
        [(True, 0)] * 3 + [(False, 1.0), (True, 0), (False, 2.0), (True, 0), (True, 0), (True, 0), (False, 1.0)],
    ),
}


@pytest.mark.parametrize("case", list(TABLE))
def test_take(case: str) -> None:
    """Each request pattern gets exactly the listed decisions."""
    times, want = TABLE[case]
    assert run(times) == want


def test_backoff_is_capped_at_its_last_step() -> None:
    """A client that keeps running its bucket dry waits 1, 2, 5, 10, then 30 s each time, never more."""
    bucket, now, waits = None, 0.0, []
    bucket, _ = RL.take(bucket, RL.Limit(1, 1000.0), now, BACKOFF)
    for _ in range(7):
        bucket, d = RL.take(bucket, RL.Limit(1, 1000.0), now, BACKOFF)
        if not d.allowed:
            waits.append(d.retry_after_s)
            now += d.retry_after_s
        bucket, d = RL.take(bucket, RL.Limit(1, 1000.0), now, BACKOFF)
        assert d.allowed
    assert waits == [1.0, 2.0, 5.0, 10.0, 30.0, 30.0, 30.0]


def test_slow_refill_reports_the_refill_time() -> None:
    """When one token takes longer to come back than the backoff step, Retry-After is the refill time."""
    slow = RL.Limit(1, 0.1)
    assert run([0, 0], slow) == [(True, 0), (False, 10.0)]


def test_unlimited_never_refuses_and_keeps_no_state() -> None:
    """A capacity of 0 means unlimited: no bucket is kept."""
    bucket, d = RL.take(None, RL.UNLIMITED, 0.0, BACKOFF)
    assert bucket is None and d.allowed and math.isinf(d.remaining)


def test_charge_shuts_a_dry_bucket_and_escalates() -> None:
    """Failures booked after the fact never refuse, but the one that empties the bucket shuts it (progressive)."""
    two = RL.Limit(2, 0.5)
    bucket = RL.charge(None, two, 0.0, BACKOFF)
    assert RL.wait_s(bucket, two, 0.0) == 0, "one failure left"
    bucket = RL.charge(bucket, two, 0.0, BACKOFF)
    assert RL.wait_s(bucket, two, 0.0) == 2.0, "dry: shut until a token is back (longer than the 1 s step)"
    assert RL.wait_s(bucket, two, 2.0) == 0
    one = RL.Limit(1, 0.5)  # one failure back every 2 s
    bucket, now, waits = None, 0.0, []
    for _ in range(5):
        bucket = RL.charge(bucket, one, now, BACKOFF)
        waits.append(RL.wait_s(bucket, one, now))
        now += waits[-1]
    assert waits == [2.0, 2.0, 5.0, 10.0, 30.0]
    assert RL.wait_s(RL.charge(bucket, one, now + 61, BACKOFF), one, now + 61) == 2.0, "quiet: starts over"


def test_retry_after_header_rounds_up() -> None:
    """Retry-After is whole seconds, at least 1."""
    assert [RL.retry_after_header(s) for s in (0.0, 0.2, 1.0, 1.01, 29.5)] == ["1", "1", "1", "2", "30"]
