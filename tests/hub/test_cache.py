from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from hub.infra.cache import PRICES, Cache
from hub.infra.outages import RedisSkip
from hub.realtime.fanout import redis_client


@pytest.fixture(params=["in-process", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "in-process":
        yield Cache(None, ttl_seconds=60)
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    yield Cache(client, ttl_seconds=60)
    await client.aclose()


async def test_concurrent_misses_share_one_computation(cache: Cache) -> None:
    calls = 0

    async def compute() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"value"

    results = await asyncio.gather(*(cache.get_or_compute(PRICES, "k", compute) for _ in range(50)))
    assert results == [b"value"] * 50
    assert calls == 1
    assert await cache.get_or_compute(PRICES, "k", compute) == b"value"
    assert calls == 1


async def test_concurrent_reads_of_a_cached_key_share_one_lookup(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    async def compute() -> bytes:
        return b"value"

    await cache.get_or_compute(PRICES, "k", compute)
    lookups = 0
    real_get = cache._get

    async def counted(scope: str, key: str) -> bytes | None:
        nonlocal lookups
        lookups += 1
        await asyncio.sleep(0.02)
        return await real_get(scope, key)

    monkeypatch.setattr(cache, "_get", counted)
    assert await asyncio.gather(*(cache.get_or_compute(PRICES, "k", compute) for _ in range(200))) == [b"value"] * 200
    assert lookups == 1


async def test_a_cancelled_lookup_does_not_fail_the_requests_that_joined_it(cache: Cache) -> None:
    started = asyncio.Event()

    async def slow() -> bytes:
        started.set()
        await asyncio.sleep(0.2)
        return b"value"

    async def quick() -> bytes:
        return b"value"

    first = asyncio.ensure_future(cache.get_or_compute(PRICES, "k", slow))
    await started.wait()
    joined = asyncio.ensure_future(cache.get_or_compute(PRICES, "k", quick))
    await asyncio.sleep(0.01)
    first.cancel()  # say, its client went away
    assert await joined == b"value"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_invalidation_during_a_computation_is_not_overwritten_by_it(cache: Cache) -> None:
    started = asyncio.Event()

    async def slow_old() -> bytes:
        started.set()
        await asyncio.sleep(0.1)
        return b"old"

    async def fresh() -> bytes:
        return b"new"

    stale = asyncio.ensure_future(cache.get_or_compute(PRICES, "k", slow_old))
    await started.wait()
    await cache.invalidate(PRICES)
    assert await cache.get_or_compute(PRICES, "k", fresh) == b"new"  # does not join the stale computation
    assert await stale == b"old"
    assert await cache.get_or_compute(PRICES, "k", slow_old) == b"new"  # the stale result was not stored


@pytest.mark.parametrize("refreshing", [False, True], ids=["miss", "refresh"])
@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_an_invalidation_by_another_process_during_a_computation_is_not_overwritten_by_it(
    request: pytest.FixtureRequest, backend: str, refreshing: bool
) -> None:
    """Process A computes an entry from what the database held before a change; process B handles the change's event
    and forgets the scope while A computes: A's result is not stored (it was, and B and every process then served it
    for the cache's whole lifetime)."""
    url = request.getfixturevalue("redis_url" if backend == "redis" else "redis_cluster_url")
    clients = [redis_client(url, timeout=5), redis_client(url, timeout=5)]
    a, b = (Cache(client, ttl_seconds=60) for client in clients)
    started, release = asyncio.Event(), asyncio.Event()

    async def before_the_change() -> bytes:
        started.set()
        await release.wait()
        return b"old"

    async def after_the_change() -> bytes:
        return b"new"

    try:
        if refreshing:
            await a.invalidate(PRICES)  # A's own event, whose fresh entry A is computing when B's event comes
            stale = asyncio.ensure_future(a.refresh(PRICES, "k", before_the_change))
        else:
            stale = asyncio.ensure_future(a.get_or_compute(PRICES, "k", before_the_change))
        await started.wait()
        await b.invalidate(PRICES)
        release.set()
        assert await stale == b"old"
        assert await b.get_or_compute(PRICES, "k", after_the_change) == b"new"
        assert await a.get_or_compute(PRICES, "k", after_the_change) == b"new"
    finally:
        for client in clients:
            await client.aclose()


async def test_refresh_computes_past_the_cached_entry_and_stores_what_it_computed(cache: Cache) -> None:
    async def old() -> bytes:
        return b"old"

    async def new() -> bytes:
        return b"new"

    assert await cache.get_or_compute(PRICES, "k", old) == b"old"
    assert await cache.refresh(PRICES, "k", new) == b"new"  # the cached entry was not read
    assert await cache.get_or_compute(PRICES, "k", old) == b"new"  # and the fresh one replaced it


async def test_refresh_alongside_an_invalidation_stores_its_result_but_not_across_a_later_one(cache: Cache) -> None:
    async def old() -> bytes:
        return b"old"

    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(value: bytes) -> bytes:
        started.set()
        await release.wait()
        return value

    assert await cache.get_or_compute(PRICES, "k", old) == b"old"
    forgotten = cache.invalidate(PRICES)  # this process forgets at once; the shared delete runs alongside
    refreshed = asyncio.ensure_future(cache.refresh(PRICES, "k", lambda: slow(b"fresh")))
    await forgotten
    release.set()
    assert await refreshed == b"fresh"
    assert await cache.get_or_compute(PRICES, "k", old) == b"fresh"

    started.clear()
    release.clear()
    stale = asyncio.ensure_future(cache.refresh(PRICES, "k", lambda: slow(b"stale")))
    await started.wait()
    await cache.invalidate(PRICES)  # a later event: what was computed before it is not stored
    release.set()
    assert await stale == b"stale"
    assert await cache.get_or_compute(PRICES, "k", old) == b"old"


async def test_a_failed_computation_is_not_cached(cache: Cache) -> None:
    async def boom() -> bytes:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get_or_compute(PRICES, "k", boom)

    async def ok() -> bytes:
        return b"fine"

    assert await cache.get_or_compute(PRICES, "k", ok) == b"fine"


def test_a_flapping_redis_is_reported_once_per_quiet_period(caplog: pytest.LogCaptureFixture) -> None:
    skip = RedisSkip(seconds=0.0, quiet_seconds=0.2)
    caplog.set_level(logging.INFO, "hub.outages")
    for _ in range(10):  # timeouts and late answers alternating (a process too busy to read its replies in time)
        skip.failed("cache", TimeoutError())
        skip.answered()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    time.sleep(0.25)
    skip.failed("cache", TimeoutError())  # a new outage after a quiet period is reported again
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING"]
