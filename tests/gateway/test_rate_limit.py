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


def _redis_behind_proxy(redis_url, on_failure: str, states: list[int], clock=None):  # type: ignore[no-untyped-def]
    import time

    from imgclf.gateway.rate_limit import redis_client
    from tests.gateway.tcp_proxy import TcpProxy

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy((real.get("host", "127.0.0.1"), real.get("port", 6379)))
    client = redis_client(f"redis://127.0.0.1:{proxy.port}/0", timeout=0.2)
    limiter = RedisRateLimiter(
        client, rate=0.01, burst=10, prefix=f"imgclf:test:{uuid.uuid4().hex}:", on_failure=on_failure,
        on_change=states.append, clock=clock or time.monotonic,
    )  # fmt: skip
    return proxy, limiter


def test_a_stopped_redis_falls_back_to_per_process_limits_and_says_so(redis_url):
    """Issue 17: with Redis stopped, 200 of 200 requests passed a limit of 10."""
    states: list[int] = []
    now = [0.0]
    proxy, limiter = _redis_behind_proxy(redis_url, "memory", states, clock=lambda: now[0])
    try:
        assert limiter.acquire("key").allowed and limiter.status() == "ok" and states == [1]
        proxy.cut()
        decisions = [limiter.acquire("key").allowed for _ in range(200)]
        assert decisions.count(True) == 10  # this process's own bucket (a fresh one: 10 of burst)
        assert limiter.status().startswith("unavailable: ") and limiter.status().endswith("limits memory")
        assert states == [1, 0]
        proxy.restore()
        now[0] += 6  # past the breaker: Redis is asked again, and its bucket (9 left) decides
        assert limiter.acquire("key").allowed and limiter.status() == "ok" and states == [1, 0, 1]
    finally:
        proxy.cut()


@pytest.mark.parametrize("mode, allowed", [("open", 50), ("closed", 0)])
def test_a_paused_redis_costs_one_timeout_then_the_breaker_decides(redis_url, mode, allowed):
    """Issue 17: a paused Redis added 1 s to every request; now one short timeout per breaker period."""
    import time

    states: list[int] = []
    proxy, limiter = _redis_behind_proxy(redis_url, mode, states)
    try:
        limiter.acquire("warm")  # the connection is open: a pause now is a hang, not a refusal
        proxy.pause()
        started = time.monotonic()
        decisions = [limiter.acquire("key") for _ in range(50)]
        elapsed = time.monotonic() - started
        assert sum(d.allowed for d in decisions) == allowed
        assert elapsed < 1.0, elapsed  # one 0.2 s timeout, not 50
        if mode == "closed":
            assert all(d.retry_after >= 1 for d in decisions)
    finally:
        proxy.resume()
        proxy.cut()


def test_the_gateway_reports_redis_and_keeps_limiting_without_it(cats_dogs_registry, photos, tmp_path, redis_url):
    from tests.gateway.conftest import gateway_settings, running_gateway
    from tests.gateway.tcp_proxy import TcpProxy
    from tests.helpers import bearer, upload

    real = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy((real.get("host", "127.0.0.1"), real.get("port", 6379)))
    settings = gateway_settings(tmp_path, cats_dogs_registry, f"sqlite:///{tmp_path / 'db.sqlite'}",
                                redis_url=f"redis://127.0.0.1:{proxy.port}/0", rate_limit_burst=3)  # fmt: skip
    try:
        with running_gateway(settings) as gw:
            key, files = gw.key(), upload(photos, 1)
            assert gw.client.get("/readyz").json()["checks"]["redis"] == "ok"
            assert gw.metric("imgclf_gateway_redis_up") == 1
            proxy.cut()
            codes = [gw.client.post("/v1/predict", files=files, headers=bearer(key)).status_code for _ in range(5)]
            assert codes == [200, 200, 200, 429, 429]  # this process's own bucket of 3
            ready = gw.client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["redis"].endswith("limits memory")
            assert str(proxy.port) not in ready.text
            assert gw.metric("imgclf_gateway_redis_up") == 0
    finally:
        proxy.cut()
