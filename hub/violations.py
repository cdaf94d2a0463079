"""Protocol violation tracking: too many invalid frames close the socket, repeat offenders cool down."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hub.clock import Clock


@dataclass
class _Offender:
    recent_ms: deque[int] = field(default_factory=deque)
    disconnects: int = 0
    cooldown_until_ms: int = 0


class ViolationTracker:
    """Counts invalid frames per agent (or per connection before identify) within a sliding window."""

    def __init__(self, clock: Clock, limit: int, window_s: float, cooldowns_s: tuple[float, ...]) -> None:
        self._clock = clock
        self._limit = limit
        self._window_ms = int(window_s * 1000)
        self._cooldowns_ms = [int(c * 1000) for c in cooldowns_s]
        self._offenders: dict[str, _Offender] = {}
        self.n_violations = 0
        self.n_disconnects = 0

    def record(self, key: str) -> bool:
        """Count one violation for ``key``; True when the limit is reached and the socket must close."""
        self.n_violations += 1
        now = self._clock.now_ms()
        off = self._offenders.setdefault(key, _Offender())
        off.recent_ms.append(now)
        while off.recent_ms and off.recent_ms[0] < now - self._window_ms:
            off.recent_ms.popleft()
        return len(off.recent_ms) >= self._limit

    def disconnected(self, key: str) -> float:
        """Record a violation disconnect; returns the cooldown now in force, in seconds."""
        self.n_disconnects += 1
        off = self._offenders.setdefault(key, _Offender())
        cooldown = self._cooldowns_ms[min(off.disconnects, len(self._cooldowns_ms) - 1)]
        off.disconnects += 1
        off.recent_ms.clear()
        off.cooldown_until_ms = self._clock.now_ms() + cooldown
        return cooldown / 1000

    def cooldown_remaining_s(self, key: str) -> float:
        off = self._offenders.get(key)
        if off is None:
            return 0.0
        return max(0.0, (off.cooldown_until_ms - self._clock.now_ms()) / 1000)

    def stats(self) -> dict[str, int]:
        return {"violations": self.n_violations, "disconnects": self.n_disconnects}
