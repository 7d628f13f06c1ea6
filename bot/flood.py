"""Per-user flood guard: a token bucket per sender, so one noisy resident slows only themself."""

from __future__ import annotations

import time
from collections import OrderedDict


class FloodGuard:
    def __init__(self, burst: int, rate: float, max_tracked: int = 100_000) -> None:
        self.burst = burst
        self.rate = rate
        self._buckets: OrderedDict[str, tuple[float, float, bool]] = OrderedDict()
        self._max = max_tracked

    def check(self, key: str, now: float | None = None) -> tuple[bool, bool]:
        """(allowed, warn): `warn` is True once per burst of refusals, to tell the user."""
        now = time.monotonic() if now is None else now
        tokens, last, warned = self._buckets.pop(key, (float(self.burst), now, False))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            allowed, warn, warned = True, False, False
            tokens -= 1
        else:
            allowed, warn = False, not warned
            warned = True
        self._buckets[key] = (tokens, now, warned)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed, warn
