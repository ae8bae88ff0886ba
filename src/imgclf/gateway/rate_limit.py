"""Per-key rate limits: a token bucket, in memory or shared through Redis.

Each API key gets ``burst`` tokens, refilled at ``rate`` per second; a request takes one, and
with none left it is refused with the seconds until the next token (the gateway's 429 and
``Retry-After``). In memory by default; with ``IMGCLF_REDIS_URL`` every gateway worker shares one
bucket per key, updated atomically by a Lua script that uses Redis' own clock.

If Redis does not answer within ``IMGCLF_REDIS_TIMEOUT_SECONDS`` the limiter stops asking it for
``BREAKER_SECONDS`` (a circuit breaker: a paused Redis costs one timeout, not one per request) and
decides as ``IMGCLF_RATE_LIMIT_ON_REDIS_FAILURE`` says: ``memory`` (default: this process's own
buckets, so limits still hold per worker), ``open`` (allow everything) or ``closed`` (refuse
everything with 429). ``imgclf_gateway_redis_up`` and ``/readyz``'s ``redis`` field say which.

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


ON_REDIS_FAILURE = ("memory", "open", "closed")
BREAKER_SECONDS = 5.0


class RedisRateLimiter:
    """Buckets in Redis, shared by every worker that uses the same Redis and prefix."""

    blocking = True

    def __init__(  # type: ignore[no-untyped-def]
        self,
        client,
        rate: float,
        burst: int,
        prefix: str = "imgclf:ratelimit:",
        on_failure: str = "memory",
        breaker_seconds: float = BREAKER_SECONDS,
        on_change: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if on_failure not in ON_REDIS_FAILURE:
            raise ValueError(f"on_failure must be one of {ON_REDIS_FAILURE}, not {on_failure!r}")
        self.rate, self.burst, self.prefix = rate, burst, prefix
        self.on_failure, self.breaker_seconds, self.clock = on_failure, breaker_seconds, clock
        self._script = client.register_script(_TOKEN_BUCKET)
        self._ttl = max(1, math.ceil(burst / rate) + 1)
        self._fallback = MemoryRateLimiter(rate, burst, clock)
        self._on_change = on_change or (lambda _up: None)
        self._retry_at = 0.0  # while the clock is before it, Redis is not asked
        self._problem: str | None = None
        self._on_change(1)

    def acquire(self, key: str) -> Decision:
        if self._problem is None or self.clock() >= self._retry_at:
            try:
                allowed, retry, remaining = self._script(
                    keys=[self.prefix + key], args=[self.rate, self.burst, self._ttl]
                )
            except redis.RedisError as error:
                self._trip(error)
            else:
                if self._problem is not None:
                    log.info("Redis answers again: rate limits are shared again")
                    self._problem = None
                    self._on_change(1)
                return Decision(bool(int(allowed)), float(retry), float(remaining))
        # An outage of the limiter must not become an outage of the service (unless asked for).
        if self.on_failure == "memory":
            return self._fallback.acquire(key)
        if self.on_failure == "open":
            return Decision(True, 0.0, -1.0)
        return Decision(False, max(1.0, self._retry_at - self.clock()), 0.0)

    def _trip(self, error: Exception) -> None:
        if self._problem is None:
            log.warning("Redis does not answer (%s): rate limits fall back to %s for %g s at a time",
                        type(error).__name__, self.on_failure, self.breaker_seconds)  # fmt: skip
            self._on_change(0)
        self._problem = f"unavailable: {type(error).__name__}"
        self._retry_at = self.clock() + self.breaker_seconds

    def status(self) -> str:
        """``ok``, or what is wrong and what decides meanwhile (no hosts or ports)."""
        return "ok" if self._problem is None else f"{self._problem}; limits {self.on_failure}"


def redis_client(url: str, timeout: float) -> redis.Redis:
    """A client that gives up after ``timeout`` seconds, once: redis-py's default retries (with
    backoff) made one call to a paused Redis take about 6 s; the breaker decides when to ask again."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def create_rate_limiter(
    rate_per_minute: float,
    burst: int,
    redis_url: str | None,
    on_failure: str = "memory",
    timeout: float = 0.2,
    on_change: Callable[[int], None] | None = None,
) -> RateLimiter:
    if redis_url:
        client = redis_client(redis_url, timeout)
        return RedisRateLimiter(client, rate_per_minute / 60, burst, on_failure=on_failure, on_change=on_change)
    return MemoryRateLimiter(rate_per_minute / 60, burst)
