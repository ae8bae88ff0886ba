"""Per-key rate limits: a token bucket, in memory or shared through Redis.

Each API key gets ``burst`` tokens, refilled at ``rate`` per second; a request takes one, and
with none left it is refused with the seconds until the next token (the gateway's 429 and
``Retry-After``). In memory by default; with ``IMGCLF_REDIS_URL`` every gateway worker shares one
bucket per key, updated atomically by a Lua script that uses Redis' own clock. If Redis does not
answer, requests are allowed (and a warning logged): the limiter never takes the service down.

Example:
    >>> limiter = MemoryRateLimiter(rate=10, burst=20)
    >>> limiter.acquire("ik_3fa9c2d1").allowed
    True
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a token is available (0 when allowed)
    remaining: float


class RateLimiter(Protocol):
    blocking: bool  # True: acquire waits on the network (call it from a worker thread)

    def acquire(self, key: str) -> Decision: ...


class MemoryRateLimiter:
    """One process's buckets (the embedded default)."""

    blocking = False

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> Decision:
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return Decision(True, 0.0, tokens - 1)
            self._buckets[key] = (tokens, now)
            return Decision(False, (1 - tokens) / self.rate, tokens)


_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {allowed, tostring(retry), tostring(tokens)}
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every worker that uses the same Redis and prefix."""

    blocking = True

    def __init__(self, client, rate: float, burst: int, prefix: str = "imgclf:ratelimit:") -> None:  # type: ignore[no-untyped-def]
        self.rate, self.burst, self.prefix = rate, burst, prefix
        self._script = client.register_script(_TOKEN_BUCKET)
        self._ttl = max(1, math.ceil(burst / rate) + 1)

    def acquire(self, key: str) -> Decision:
        try:
            allowed, retry, remaining = self._script(keys=[self.prefix + key], args=[self.rate, self.burst, self._ttl])
        except redis.RedisError as error:
            # Fail open: an outage of the limiter must not become an outage of the service.
            log.warning("rate limiter unavailable, request allowed: %s", error)
            return Decision(True, 0.0, -1.0)
        return Decision(bool(int(allowed)), float(retry), float(remaining))


def create_rate_limiter(rate_per_minute: float, burst: int, redis_url: str | None) -> RateLimiter:
    if redis_url:
        client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        return RedisRateLimiter(client, rate_per_minute / 60, burst)
    return MemoryRateLimiter(rate_per_minute / 60, burst)
