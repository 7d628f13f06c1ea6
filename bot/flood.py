"""Per-user flood guard: a token bucket per sender, so one noisy resident slows only themself."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

log = logging.getLogger(__name__)


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

    async def allow(self, key: str) -> tuple[bool, bool]:
        return self.check(key)


# One bucket per sender in Redis, updated by one script (atomic, on Redis's clock, so every
# worker sees the same tokens whichever of them the sender's messages reach).
_BUCKET = """
local b = redis.call('HMGET', KEYS[1], 't', 'at', 'w')
local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
local warned = b[3] == '1'
tokens = math.min(burst, tokens + (now - at) / 1000 * rate)
local allowed, warn = 0, 0
if tokens >= 1 then
  allowed = 1; tokens = tokens - 1; warned = false
else
  if not warned then warn = 1 end
  warned = true
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', now, 'w', warned and '1' or '0')
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, warn}
"""


class SharedFloodGuard:
    """The same guard with its buckets in Redis (BOT_REDIS_URL), shared by every worker: with
    several, a sender's messages are spread over them, and a guard in each process's memory
    would let N times the burst through. Redis rather than PostgreSQL: the guard runs before
    an update touches the database (that is its point), on every update, and its buckets are
    worth nothing after a few seconds (they expire there by themselves). If Redis does not
    answer, messages are let through (logged): a resident is never refused for our outage."""

    def __init__(self, url: str, burst: int, rate: float, *, prefix: str = "flood:") -> None:
        import redis.asyncio as redis

        self.burst, self.rate, self.prefix = burst, rate, prefix
        self._redis = redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_BUCKET)
        self._complained = 0.0

    async def allow(self, key: str) -> tuple[bool, bool]:
        try:
            allowed, warn = await self._script(keys=[self.prefix + key],
                                               args=[self.burst, self.rate])
        except Exception as exc:  # redis.RedisError, OSError, timeouts: fail open
            now = time.monotonic()
            if now - self._complained > 60:
                self._complained = now
                log.warning("flood guard: Redis did not answer (%s); letting messages through",
                            exc)
            return True, False
        return bool(allowed), bool(warn)

    async def close(self) -> None:
        await self._redis.aclose()
