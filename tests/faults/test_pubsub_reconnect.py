"""Issue 10, point 6: after Redis comes back, every process is subscribed again within about a second: the event
bus's live channels and the Socket.IO adapter's channel (revocations). Before: the bus took 1.28 s with a back-off
that grew to 5 s; python-socketio's adapter waits 1, 2, 4 … up to 60 s between attempts."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from channels import bus
from tests.cluster import create_users
from tests.conftest import make_settings
from tests.faults.conftest import Hubs, eventually
from tests.faults.follower import Follower
from tests.services import RedisProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

DOWN_SECONDS = 4.0
"""Long enough for the old back-offs to reach 2 s (bus) and 4 s (adapter)."""
BACK_WITHIN = 1.5


async def test_every_process_subscribes_again_within_a_second_and_a_half(
    pg_url: str, redis_process: RedisProcess, hubs: Hubs
) -> None:
    settings = make_settings(pg_url, redis_process.url)
    users = await create_users(settings, 2)
    started = await hubs.start(settings, 2)
    followers = [Follower(user.id, user.token) for user in users]
    for follower, hub in zip(followers, started, strict=True):
        await follower.connect(hub.url)
    live = [bus.live_channel(bus.user_audience(user.id)) for user in users]
    redis = Redis.from_url(redis_process.url)

    async def subscribed(channels: list[str], each: int) -> bool:
        try:
            counts = await redis.pubsub_numsub(*channels)
        except Exception:  # Redis is still starting
            return False
        return all(n >= each for _, n in counts)

    try:
        await eventually(lambda: subscribed([bus.SOCKETIO_CHANNEL], 2), 10)
        await eventually(lambda: subscribed(live, 1), 10)
        redis_process.stop()
        await asyncio.sleep(DOWN_SECONDS)
        redis_process.start()
        back = time.monotonic()
        await eventually(lambda: subscribed(live, 1), 10)
        bus_back = time.monotonic() - back
        await eventually(lambda: subscribed([bus.SOCKETIO_CHANNEL], 2), 70)
        adapter_back = time.monotonic() - back
        assert bus_back <= BACK_WITHIN, bus_back
        assert adapter_back <= BACK_WITHIN, adapter_back
    finally:
        await redis.aclose()
        for follower in followers:
            await follower.close()
    for hub in started:
        log = hubs.log(hub)
        assert "pub/sub reconnected to Redis" in log, log
