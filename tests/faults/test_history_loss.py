"""Issue 10, point 4: when Redis restarts without persistence, every connected user who had received events gets one
``cartsnitch.resync {reason: history_lost}`` and then every event of the new history, from its start: the events
accepted between the restart and the moment the processes subscribed again are not lost (a client that had
received nothing gets them too, without a resync). A client that reconnects
later with an id of the old history gets the same. Before: the events accepted in that gap (about 1.3 s) were never
delivered, though they were in the new history."""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis.asyncio import Redis

from channels import bus
from channels.publish import publish
from tests.cluster import create_users, sync_payload
from tests.conftest import make_settings
from tests.faults.conftest import Hubs
from tests.faults.follower import Follower
from tests.services import RedisProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BEFORE = 3
IN_GAP = 5
AFTER = 2


async def test_after_a_history_loss_the_new_history_is_replayed_from_its_start(
    pg_url: str, redis_process: RedisProcess, hubs: Hubs
) -> None:
    settings = make_settings(pg_url, redis_process.url)
    users = await create_users(settings, 4)
    first_hub, second_hub = await hubs.start(settings, 2)
    on_first, on_second, quiet, offline = (Follower(user.id, user.token) for user in users)
    await on_first.connect(first_hub.url)
    await on_second.connect(second_hub.url)
    await quiet.connect(first_hub.url)  # connected, but no event before the restart
    await offline.connect(second_hub.url)
    talkative = (on_first, on_second, offline)
    redis = Redis.from_url(redis_process.url)
    try:
        for n in range(BEFORE):
            for follower in talkative:
                await publish(redis, "cartsnitch.sync.progress", sync_payload(follower.user_id, n), service="test")
        for follower in talkative:
            await follower.wait_items(BEFORE)
        await offline.close()
        await redis.aclose()

        # the processes are held still from the restart until the gap's events are in: with a reconnect every
        # second, one could otherwise subscribe again before them, and the gap would not be one
        for hub in (first_hub, second_hub):
            hub.process.send_signal(signal.SIGSTOP)
        try:
            redis_process.stop(signal.SIGKILL)
            redis_process.start()
            redis = Redis.from_url(redis_process.url)
            everyone = (on_first, on_second, quiet, offline)
            channels = [bus.live_channel(bus.user_audience(f.user_id)) for f in everyone]
            assert all(n == 0 for _, n in await redis.pubsub_numsub(*channels))  # no process subscribed yet
            for n in range(BEFORE, BEFORE + IN_GAP):
                for follower in everyone:
                    await publish(redis, "cartsnitch.sync.progress", sync_payload(follower.user_id, n), service="test")
        finally:
            for hub in (first_hub, second_hub):
                hub.process.send_signal(signal.SIGCONT)
        for follower in (on_first, on_second):
            await follower.wait(lambda f: f.resyncs() != [], timeout=10)
        for n in range(BEFORE + IN_GAP, BEFORE + IN_GAP + AFTER):
            for follower in everyone:
                await publish(redis, "cartsnitch.sync.progress", sync_payload(follower.user_id, n), service="test")
        new_history = list(range(BEFORE, BEFORE + IN_GAP + AFTER))
        for follower in (on_first, on_second):
            await follower.wait_items(BEFORE + len(new_history))
        await quiet.wait_items(len(new_history))
        # a client that was away during the restart comes back with an id of the lost history
        await offline.connect(first_hub.url)
        await offline.wait_items(BEFORE + len(new_history))
        await asyncio.sleep(0.5)
    finally:
        await redis.aclose()
        for follower in (on_first, on_second, quiet, offline):
            await follower.close()
    for follower in (on_first, on_second, offline):
        assert follower.resyncs() == ["history_lost"]
        assert follower.items() == list(range(BEFORE)) + new_history
        resync_at = [name for _, name, _ in follower.events].index("cartsnitch.resync")
        assert resync_at == BEFORE  # after the old history's events, before the new one's
        assert len(set(follower.ids())) == len(follower.ids())
    # it had received nothing, so nothing it holds came from the lost history: no resync, every event since it
    # subscribed (no client of the user on its process knew the old history's epoch to compare)
    assert quiet.resyncs() == []
    assert quiet.items() == new_history
