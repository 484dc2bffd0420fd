"""Issue 10, point 5: after Redis restarts with its data (append-only file), the pooled connections of every process
are dead; the first read on each is retried on a fresh connection, so clients resume exactly (no resync at all)
and REST reads answer. Before: the replay read failed on a dead pooled connection and the user got
``cartsnitch.resync {reason: history_unavailable}`` and lost an event."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest
from redis.asyncio import Redis

from channels.publish import publish
from tests.cluster import create_users, sync_payload
from tests.conftest import make_settings
from tests.faults.conftest import Hubs
from tests.faults.follower import Follower
from tests.services import RedisProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BEFORE = 3
AFTER = 3


async def test_a_restart_with_persistence_is_an_exact_resume(pg_url: str, aof_redis: RedisProcess, hubs: Hubs) -> None:
    settings = make_settings(pg_url, aof_redis.url)
    users = await create_users(settings, 2)
    started = await hubs.start(settings, 2)
    followers = [Follower(user.id, user.token) for user in users]
    redis = Redis.from_url(aof_redis.url)
    try:
        for follower, hub in zip(followers, started, strict=True):
            await follower.connect(hub.url)
        for n in range(BEFORE):
            for follower in followers:
                await publish(redis, "cartsnitch.sync.progress", sync_payload(follower.user_id, n), service="test")
        for follower, hub in zip(followers, started, strict=True):
            await follower.wait_items(BEFORE)
            # a resume reads the history: each process now holds pooled Redis connections
            await follower.close()
            await follower.connect(hub.url)
        await redis.aclose()

        aof_redis.stop(signal.SIGKILL)  # a crash: with appendfsync always nothing is lost
        aof_redis.start()
        redis = Redis.from_url(aof_redis.url)
        for n in range(BEFORE, BEFORE + AFTER):  # before the processes subscribed again: replayed from the history
            for follower in followers:
                await publish(redis, "cartsnitch.sync.progress", sync_payload(follower.user_id, n), service="test")
        async with aiohttp.ClientSession() as http:
            for user, hub in zip(users, started, strict=True):
                headers = {"Authorization": f"Bearer {user.token}"}
                async with http.get(hub.url + "/api/v1/me/events", headers=headers) as response:
                    assert response.status == 200, await response.text()
                    page = await response.json()
                assert [e["payload"]["items_synced"] for e in page["events"]] == list(range(BEFORE + AFTER))
        for follower in followers:
            await follower.wait_items(BEFORE + AFTER)
        await asyncio.sleep(0.5)
    finally:
        await redis.aclose()
        for follower in followers:
            await follower.close()
    for follower in followers:
        assert follower.resyncs() == []
        assert follower.items() == list(range(BEFORE + AFTER))
        assert len(set(follower.ids())) == len(follower.ids())
