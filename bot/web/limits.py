"""Limits a web feature puts on its callers: a body size, and a request rate per caller."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


class BodyTooLarge(Exception):
    pass


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, refused (BodyTooLarge) past `max_bytes`, declared or not: a
    Content-Length over the limit is refused unread, a chunked body once it passes it."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge
    body = await request.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise BodyTooLarge
    return body


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per caller: `burst` requests at once, then `per_minute` a minute.
    In memory, per process: several processes behind one address each allow the rate."""

    def __init__(self, per_minute: float, burst: int,
                 clock: Callable[[], float] = time.monotonic, max_callers: int = 100_000) -> None:
        self.rate, self.burst, self.clock = per_minute / 60.0, burst, clock
        self.max_callers = max_callers
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, caller: str) -> float:
        """0 when the request may go now, else the seconds until it may."""
        now = self.clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self.max_callers:  # forget the idle ones
                self._buckets = {k: b for k, b in self._buckets.items()
                                 if b.tokens + (now - b.at) * self.rate < self.burst}
            bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate
