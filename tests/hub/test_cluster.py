"""Several hub processes on one PostgreSQL and one Redis, or one Redis Cluster (every test runs on both):
per-connection delivery, failover without loss or duplicates, interest routing, and exactly one history entry for
a legacy PUBLISH."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster

from channels import bus, rooms
from channels.publish import publish
from hub.realtime.fanout import AnyRedis, redis_client
from hub.settings import Settings
from hub.store.engine import build_engine, build_sessionmaker
from tests import factories
from tests.cluster import Follower, HubProcess, envelope_ids, start_hub, stop_hubs, sync_payload, users_with_tokens
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(params=["redis", "redis-cluster"])
def cluster_settings(request: pytest.FixtureRequest, pg_url: str) -> Settings:
    """Settings for hub processes on a single Redis, or on a Redis Cluster (sharded pub/sub)."""
    redis_url = request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    return make_settings(pg_url, redis_url)


def redis_for(settings: Settings) -> AnyRedis:
    """A client of the test's Redis: redis-py's cluster client on a cluster, as a service would use."""
    return redis_client(settings.redis_url or "", timeout=10)


async def pattern_subscribers(redis: AnyRedis) -> int:
    """Connections subscribed to a pattern, on every node (a classic subscription sits on one node of a cluster)."""
    if isinstance(redis, RedisCluster):
        clients = await redis.client_list(target_nodes=RedisCluster.ALL_NODES)
        listed = [entry for replies in clients.values() for entry in replies] if isinstance(clients, dict) else clients
    else:
        listed = await redis.client_list()
    return sum(1 for entry in listed if int(entry.get("psub", 0)) > 0)


@pytest.fixture
async def hubs(cluster_settings: Settings, tmp_path: Path) -> AsyncIterator[list[HubProcess]]:
    started = await asyncio.gather(
        start_hub(cluster_settings, tmp_path / "hub-a.log"), start_hub(cluster_settings, tmp_path / "hub-b.log")
    )
    yield list(started)
    await stop_hubs(list(started))


async def test_a_user_on_two_processes_gets_each_event_once_per_connection(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    [(user_id, token)] = await users_with_tokens(cluster_settings, 1)
    followers = [Follower(user_id, token), Follower(user_id, token)]
    await followers[0].connect(hubs[0])
    await followers[1].connect(hubs[1])
    redis = redis_for(cluster_settings)
    try:
        published = [
            await publish(redis, "cartsnitch.sync.progress", sync_payload(user_id, n), service="test")
            for n in range(50)
        ]
    finally:
        await redis.aclose()
    for follower in followers:
        await follower.wait_for(50)
    await asyncio.sleep(0.3)
    for follower in followers:
        assert envelope_ids(follower.events) == published
        await follower.close()


async def test_failover_after_sigkill_loses_and_duplicates_nothing(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    total = 1200
    users = await users_with_tokens(cluster_settings, 4)
    followers = [Follower(user_id, token) for user_id, token in users]
    for follower in followers:
        await follower.connect(hubs[0])  # the process that will die
    redis = redis_for(cluster_settings)
    published: dict[str, list[str]] = {user_id: [] for user_id, _ in users}

    async def publisher() -> None:
        for n in range(total):
            for user_id, _token in users:
                published[user_id].append(
                    await publish(redis, "cartsnitch.sync.progress", sync_payload(user_id, n), service="test")
                )
            if n % 50 == 0:
                await asyncio.sleep(0.01)

    async def failover(follower: Follower) -> None:
        await follower.lost.wait()
        await asyncio.sleep(0.05)
        await follower.connect(hubs[1])

    try:
        publishing = asyncio.ensure_future(publisher())
        await followers[0].wait_for(300)
        hubs[0].kill()
        await asyncio.gather(*(failover(f) for f in followers))
        await publishing
        for follower in followers:
            await follower.wait_for(total, timeout=60)
        await asyncio.sleep(0.5)
    finally:
        await redis.aclose()
    for follower in followers:
        received = envelope_ids(follower.events)
        assert len(received) == total
        assert received == published[follower.user_id]
        assert len(set(received)) == total
        await follower.close()


async def test_a_process_receives_only_the_events_of_its_own_connections(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    (first_user, first_token), (second_user, second_token) = await users_with_tokens(cluster_settings, 2)
    on_a, on_b = Follower(first_user, first_token), Follower(second_user, second_token)
    await on_a.connect(hubs[0])
    await on_b.connect(hubs[1])
    before_b = await hubs[1].metric("hub_live_messages_received_total", audience="user")
    redis = redis_for(cluster_settings)
    try:
        for n in range(100):
            await publish(redis, "cartsnitch.sync.progress", sync_payload(first_user, n), service="test")
        await on_a.wait_for(100)
        await publish(redis, "cartsnitch.sync.progress", sync_payload(second_user, 0), service="test")
        await on_b.wait_for(1)
    finally:
        await redis.aclose()
    assert await hubs[0].metric("hub_live_messages_received_total", audience="user") >= 100
    assert await hubs[1].metric("hub_live_messages_received_total", audience="user") - before_b == 1
    assert await hubs[1].metric("hub_bus_subscriptions", audience="user") == 1
    await on_a.close()
    await on_b.close()


async def test_legacy_publish_gets_one_history_entry_with_two_processes(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    [(user_id, token)] = await users_with_tokens(cluster_settings, 1)
    follower = Follower(user_id, token)
    await follower.connect(hubs[1])
    redis = redis_for(cluster_settings)
    try:
        envelope = {
            "event_type": "cartsnitch.sync.progress",
            "timestamp": "2026-11-26T12:00:00+00:00",
            "service": "receiptwitness",
            "payload": sync_payload(user_id, 7),
        }
        assert await pattern_subscribers(redis) >= 2  # both processes consume the platform's channels
        # refused as the HTTP routes refuse it: a NUL anywhere in the envelope (PostgreSQL cannot store one)
        nul = {**envelope, "payload": {**envelope["payload"], "note": "a\u0000b"}}  # type: ignore[dict-item]
        await redis.publish("cartsnitch.sync.progress", json.dumps(nul))
        await redis.publish("cartsnitch.sync.progress", json.dumps(envelope))
        await follower.wait_for(1)
        await asyncio.sleep(0.5)
        assert await redis.xlen(bus.history_key(bus.user_audience(user_id))) == 1
    finally:
        await redis.aclose()
    assert len(envelope_ids(follower.events)) == 1
    ingested = [
        await hub.metric("hub_events_ingested_total", event_type="cartsnitch.sync.progress", source="redis")
        for hub in hubs
    ]
    assert sum(ingested) == 1
    assert [await hub.metric("hub_events_invalid_total", source="redis") for hub in hubs] == [1, 1]
    await follower.close()


@pytest.mark.parametrize("cluster_settings", ["redis"], indirect=True)
async def test_what_an_older_hub_publishes_is_recorded_once_in_the_current_history(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    """During a rolling upgrade (and for services on an older ``channels``) events still arrive on the live channels
    of hubs before hash tags (``hub:v1:live:user:<id>``, with the old id): they get one place in the new history."""
    [(user_id, token)] = await users_with_tokens(cluster_settings, 1)
    follower = Follower(user_id, token)
    await follower.connect(hubs[1])
    redis = redis_for(cluster_settings)
    try:
        for n in range(3):
            old = {
                "id": f"1700000000{n:03d}-0-ab12cd34",
                "event_type": "cartsnitch.sync.progress",
                "timestamp": "2026-11-26T12:00:00+00:00",
                "service": "receiptwitness",
                "payload": sync_payload(user_id, n),
            }
            assert await redis.publish(f"hub:v1:live:user:{user_id}", json.dumps(old)) >= 2  # both processes bridge
        await follower.wait_for(3)
        await asyncio.sleep(0.5)
        assert await redis.xlen(bus.history_key(bus.user_audience(user_id))) == 3
    finally:
        await redis.aclose()
    received = [envelope for name, envelope in follower.events if name == "cartsnitch.sync.progress"]
    assert [e["payload"]["items_synced"] for e in received] == [0, 1, 2]
    assert all(not e["id"].endswith("ab12cd34") for e in received)  # ids of the current history
    await follower.close()


@pytest.mark.parametrize("cluster_settings", ["redis-cluster"], indirect=True)
async def test_queued_events_keep_their_order_and_the_queue_changes_hands_at_shutdown(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    """A service publishes a product's price updates one after the other, through either process: its trend room
    records them in that order (with both processes reading the queue in turns, 75 of 300 were recorded out of
    order). One process reads the queue; when it shuts down, the other reads on within the lease's renewal period.
    On the cluster only: the lease is the same script on a single Redis, where test_expansion_retry takes it over
    from a killed process."""
    engine = build_engine(cluster_settings.database_url)
    async with build_sessionmaker(engine).begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
    await engine.dispose()
    history = bus.history_key(bus.room_audience(rooms.trend(str(product.id))))
    headers = {"X-Service-Key": cluster_settings.service_key or ""}
    redis = redis_for(cluster_settings)

    async def publish_update(hub: HubProcess, cents: int) -> None:
        update = {
            "product_id": str(product.id),
            "store_id": str(store.id),
            "store_slug": store.slug,
            "observed_date": "2026-12-01",
            "regular_price": f"{cents / 100:.2f}",
        }
        body = {"event_type": "cartsnitch.prices.updated", "service": "test", "payload": update}
        async with http.post(hub.url + "/internal/events", json=body, headers=headers) as response:
            assert response.status == 202

    async def recorded(count: int) -> list[int]:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            entries = await redis.xrange(history)
            if len(entries) >= count or asyncio.get_running_loop().time() > deadline:
                return [round(float(json.loads(e[b"e"])["payload"]["regular_price"]) * 100) for _id, e in entries]
            await asyncio.sleep(0.05)

    try:
        async with aiohttp.ClientSession() as http:
            for cents in range(100, 220):
                await publish_update(hubs[cents % 2], cents)
            assert await recorded(120) == list(range(100, 220))
            holder = (await redis.get(bus.INGEST_LEASE)).decode()
            [leader] = [hub for hub in hubs if f"-{hub.process.pid}-" in holder]
            [other] = [hub for hub in hubs if hub is not leader]
            await stop_hubs([leader])
            started = asyncio.get_running_loop().time()
            await publish_update(other, 220)
            assert await recorded(121) == list(range(100, 221))
            assert asyncio.get_running_loop().time() - started < 2.5  # the lease was handed over, not left to lapse
            assert f"-{other.process.pid}-" in (await redis.get(bus.INGEST_LEASE)).decode()
    finally:
        await redis.aclose()


@pytest.mark.parametrize("cluster_settings", ["redis"], indirect=True)
async def test_a_legacy_burst_keeps_its_order_with_batches_in_flight_and_scripts_flushed(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    """Several legacy batches are awaiting Redis at once (single Redis): a burst keeps its publish order in the
    history and on the socket from its first batches (sent while the process connects) on, and when Redis forgets
    the scripts in the middle of it (as after a restart: no batch may be run again after a later one ran)."""
    [(user_id, token)] = await users_with_tokens(cluster_settings, 1)
    follower = Follower(user_id, token)
    await follower.connect(hubs[1])
    redis = redis_for(cluster_settings)
    count = 3000
    try:
        for start in range(0, count, 250):
            pipe = redis.pipeline(transaction=False)
            for n in range(start, start + 250):
                envelope = {
                    "event_type": "cartsnitch.sync.progress",
                    "timestamp": "2026-11-26T12:00:00+00:00",
                    "service": "receiptwitness",
                    "payload": sync_payload(user_id, n),
                }
                pipe.publish("cartsnitch.sync.progress", json.dumps(envelope))
            await pipe.execute()
            if start % 1000 == 500:
                await redis.script_flush()
        await follower.wait_for(count, timeout=60)
        history = await redis.xrange(bus.history_key(bus.user_audience(user_id)))
    finally:
        await redis.aclose()
    recorded = [json.loads(fields[b"e"])["payload"]["items_synced"] for _id, fields in history]
    assert len(recorded) >= 1000  # the newest events (the history is capped)
    assert recorded == list(range(count - len(recorded), count))
    received = [data["payload"]["items_synced"] for event, data in follower.events if event != "cartsnitch.resync"]
    assert received == list(range(count))
    await follower.close()
