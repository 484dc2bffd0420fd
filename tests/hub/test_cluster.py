"""Several hub processes on one PostgreSQL and one Redis: per-connection delivery, failover without loss or
duplicates, interest routing, and exactly one history entry for a legacy PUBLISH."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from redis.asyncio import Redis

from channels import bus
from channels.publish import publish
from hub.infra.security import TokenCodec, random_id
from hub.settings import Settings
from hub.store import tokens
from hub.store.engine import build_engine, build_sessionmaker
from tests import factories
from tests.cluster import HubProcess, envelope_ids, start_hub, stop_hubs
from tests.conftest import make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def cluster_settings(pg_url: str, redis_url: str) -> Settings:
    return make_settings(pg_url, redis_url)


@pytest.fixture
async def hubs(cluster_settings: Settings) -> AsyncIterator[list[HubProcess]]:
    started = await asyncio.gather(start_hub(cluster_settings), start_hub(cluster_settings))
    yield list(started)
    await stop_hubs(list(started))


async def _users(settings: Settings, n: int) -> list[tuple[str, str]]:
    """(user id, access token) for n new users."""
    engine = build_engine(settings.database_url)
    codec = TokenCodec(settings.jwt_secret_key, settings.jwt_algorithm, 3600, 86400)
    out = []
    try:
        async with build_sessionmaker(engine).begin() as session:
            for _ in range(n):
                user = await factories.create_user(session)
                family = random_id(16)
                await tokens.insert_family(session, family_id=family, user_id=user.id)
                out.append((user.id, codec.issue("access", user_id=user.id, family_id=family).token))
    finally:
        await engine.dispose()
    return out


class Follower:
    """A client of one user that follows the events, and on losing its hub reconnects to another with
    last_event_id."""

    def __init__(self, user_id: str, token: str) -> None:
        self.user_id = user_id
        self.token = token
        self.events: list[tuple[str, Any]] = []
        self.client: socketio.AsyncClient | None = None
        self.lost = asyncio.Event()
        self.changed = asyncio.Event()

    @property
    def namespace(self) -> str:
        return f"/users/{self.user_id}"

    def last_id(self) -> str | None:
        ids = envelope_ids(self.events)
        return ids[-1] if ids else None

    async def connect(self, hub: HubProcess) -> None:
        client = socketio.AsyncClient(reconnection=False)

        def record(event: str, *args: Any) -> None:
            self.events.append((event, args[0] if args else None))
            self.changed.set()

        client.on("*", record, namespace=self.namespace)
        client.on("disconnect", lambda *_: self.lost.set(), namespace=self.namespace)
        auth: dict[str, Any] = {"token": self.token}
        if self.last_id():
            auth["last_event_id"] = self.last_id()
        self.lost.clear()
        await client.connect(hub.url, namespaces=[self.namespace], auth=auth, transports=["websocket"], wait_timeout=10)
        self.client = client

    async def wait_for(self, count: int, timeout: float = 30) -> None:
        async def until() -> None:
            while len(envelope_ids(self.events)) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.disconnect()


def _payload(user_id: str, n: int) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "store_slug": "kroger",
        "job_id": f"job-{n}",
        "status": "running",
        "progress": 0.5,
        "items_synced": n,
        "message": "",
    }


async def test_a_user_on_two_processes_gets_each_event_once_per_connection(
    hubs: list[HubProcess], cluster_settings: Settings
) -> None:
    [(user_id, token)] = await _users(cluster_settings, 1)
    followers = [Follower(user_id, token), Follower(user_id, token)]
    await followers[0].connect(hubs[0])
    await followers[1].connect(hubs[1])
    redis = Redis.from_url(cluster_settings.redis_url or "")
    try:
        published = [
            await publish(redis, "cartsnitch.sync.progress", _payload(user_id, n), service="test") for n in range(50)
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
    users = await _users(cluster_settings, 4)
    followers = [Follower(user_id, token) for user_id, token in users]
    for follower in followers:
        await follower.connect(hubs[0])  # the process that will die
    redis = Redis.from_url(cluster_settings.redis_url or "")
    published: dict[str, list[str]] = {user_id: [] for user_id, _ in users}

    async def publisher() -> None:
        for n in range(total):
            for user_id, _token in users:
                published[user_id].append(
                    await publish(redis, "cartsnitch.sync.progress", _payload(user_id, n), service="test")
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
    (first_user, first_token), (second_user, second_token) = await _users(cluster_settings, 2)
    on_a, on_b = Follower(first_user, first_token), Follower(second_user, second_token)
    await on_a.connect(hubs[0])
    await on_b.connect(hubs[1])
    before_b = await hubs[1].metric("hub_live_messages_received_total", audience="user")
    redis = Redis.from_url(cluster_settings.redis_url or "")
    try:
        for n in range(100):
            await publish(redis, "cartsnitch.sync.progress", _payload(first_user, n), service="test")
        await on_a.wait_for(100)
        await publish(redis, "cartsnitch.sync.progress", _payload(second_user, 0), service="test")
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
    [(user_id, token)] = await _users(cluster_settings, 1)
    follower = Follower(user_id, token)
    await follower.connect(hubs[1])
    redis = Redis.from_url(cluster_settings.redis_url or "")
    try:
        envelope = {
            "event_type": "cartsnitch.sync.progress",
            "timestamp": "2026-11-26T12:00:00+00:00",
            "service": "receiptwitness",
            "payload": _payload(user_id, 7),
        }
        receivers = await redis.publish("cartsnitch.sync.progress", json.dumps(envelope))
        assert receivers >= 2  # both processes consume the platform's channel
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
    await follower.close()
