"""Token-bucket rate limits, in memory and shared through the Redis running on this machine."""

from __future__ import annotations

import uuid

import pytest
import redis

from imgclf.gateway.rate_limit import MemoryRateLimiter, RedisRateLimiter


def test_memory_bucket_allows_a_burst_then_refills():
    now = [100.0]
    limiter = MemoryRateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("k").allowed for _ in range(3)] == [True, True, True]
    refused = limiter.acquire("k")
    assert not refused.allowed and refused.retry_after == pytest.approx(0.5)
    assert limiter.acquire("other").allowed  # buckets are per key
    now[0] += 0.5
    assert limiter.acquire("k").allowed
    assert not limiter.acquire("k").allowed


def test_redis_buckets_are_shared_between_workers(redis_url):
    prefix = f"imgclf:test:{uuid.uuid4().hex}:"
    workers = [RedisRateLimiter(redis.Redis.from_url(redis_url), rate=0.5, burst=5, prefix=prefix) for _ in range(2)]
    decisions = [workers[i % 2].acquire("key").allowed for i in range(8)]
    assert decisions == [True] * 5 + [False] * 3  # one budget of 5 across both workers
    refused = workers[0].acquire("key")
    assert 0 < refused.retry_after <= 2.0
    assert workers[1].acquire("another key").allowed
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.ttl(prefix + "key") <= 11  # buckets expire on their own
    client.delete(prefix + "key", prefix + "another key")
