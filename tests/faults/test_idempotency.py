"""Issue 10, point 3: every publish path takes an idempotency key; a repeat within the retention window (a retry
after a timeout, on any process) records nothing and returns the first event's id; the key reused for another
event is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from channels import bus
from channels.publish import IdempotencyConflict, publish
from hub import keys
from hub.app import create_app
from tests import factories
from tests.cluster import create_users, sync_payload
from tests.conftest import make_settings
from tests.faults.conftest import Hubs
from tests.faults.follower import Follower
from tests.hub.test_cli import run, settings_env
from tests.services import RedisProcess


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _post(
    http: aiohttp.ClientSession, url: str, service_key: str, body: dict[str, Any], key: str
) -> tuple[int, dict[str, Any]]:
    headers = {"X-Service-Key": service_key, "Idempotency-Key": key}
    async with http.post(url + "/internal/events", json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_a_repeat_on_either_process_returns_the_first_id_and_records_nothing(
    pg_url: str, redis_process: RedisProcess, hubs: Hubs
) -> None:
    settings = make_settings(pg_url, redis_process.url)
    [user] = await create_users(settings, 1)
    first_hub, second_hub = await hubs.start(settings, 2)
    follower = Follower(user.id, user.token)
    await follower.connect(second_hub.url)
    service_key = settings.service_key or ""
    body = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user.id, 1)}
    coupons = {"event_type": "cartsnitch.coupons.updated", "payload": {"store_slug": "kroger", "coupon_ids": ["c1"]}}
    redis = Redis.from_url(redis_process.url)
    try:
        async with aiohttp.ClientSession() as http:
            status, first = await _post(http, first_hub.url, service_key, body, "order-17")
            assert status == 202
            for hub in (first_hub, second_hub, second_hub):
                status, again = await _post(http, hub.url, service_key, body, "order-17")
                assert (status, again) == (202, first)
            # the same key for another event: refused, naming the first one
            other = {**body, "payload": sync_payload(user.id, 2)}
            status, problem = await _post(http, second_hub.url, service_key, other, "order-17")
            assert status == 422
            assert problem["type"].endswith("/idempotency-key-reused")
            assert problem["first_id"] == first["id"]
            # an event the hub expands (queued first): the queue entry's id comes back
            status, queued = await _post(http, first_hub.url, service_key, coupons, "coupons-3")
            assert status == 202
            assert queued["id"].startswith("ingest-")
            status, again = await _post(http, second_hub.url, service_key, coupons, "coupons-3")
            assert (status, again) == (202, queued)
        await follower.wait_items(1)
        await asyncio.sleep(0.5)
        assert follower.ids() == [first["id"]]
        assert await redis.xlen(bus.history_key(bus.user_audience(user.id))) == 1
    finally:
        await redis.aclose()
        await follower.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_a_publish_retried_after_a_frozen_redis_is_recorded_once(
    pg_url: str, redis_process: RedisProcess, hubs: Hubs
) -> None:
    settings = make_settings(pg_url, redis_process.url)
    [user] = await create_users(settings, 1)
    [hub] = await hubs.start(settings)
    follower = Follower(user.id, user.token)
    await follower.connect(hub.url)
    service_key = settings.service_key or ""
    body = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user.id, 1)}
    history = bus.history_key(bus.user_audience(user.id))
    redis = Redis.from_url(redis_process.url)
    try:
        async with aiohttp.ClientSession() as http:
            warm_up = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user.id, 0)}
            assert (await _post(http, hub.url, service_key, warm_up, "warm-up"))[0] == 202  # Redis holds a connection
            redis_process.freeze()
            try:
                # the hub sent the command, then gave up waiting: Redis runs it when it wakes up
                status, problem = await _post(http, hub.url, service_key, body, "retry-me")
                assert status == 503, problem
            finally:
                redis_process.thaw()
            await follower.wait_items(2)
            warm_up, recorded = follower.ids()
            assert follower.items() == [0, 1]
            status, retried = await _post(http, hub.url, service_key, body, "retry-me")
            assert status == 202
            assert retried["id"] == recorded
        await asyncio.sleep(0.5)
        assert follower.ids() == [warm_up, recorded]
        assert await redis.xlen(history) == 2
    finally:
        await redis.aclose()
        await follower.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
async def test_the_publish_helper_and_the_cli_take_an_idempotency_key(pg_url: str, redis_process: RedisProcess) -> None:
    settings = make_settings(pg_url, redis_process.url)
    [user] = await create_users(settings, 1)
    redis = Redis.from_url(redis_process.url)
    try:
        first = await publish(
            redis, "cartsnitch.sync.progress", sync_payload(user.id, 1), service="test", idempotency_key="k1"
        )
        again = await publish(
            redis, "cartsnitch.sync.progress", sync_payload(user.id, 1), service="test", idempotency_key="k1"
        )
        assert again == first
        with pytest.raises(IdempotencyConflict) as conflict:
            await publish(
                redis, "cartsnitch.sync.progress", sync_payload(user.id, 2), service="test", idempotency_key="k1"
            )
        assert conflict.value.first_id == first
        env = settings_env(settings)
        args = ["publish", "cartsnitch.sync.progress", "--payload", _json(sync_payload(user.id, 3))]
        printed = [run([*args, "--idempotency-key", "cli-1"], env) for _ in range(2)]
        assert [p.returncode for p in printed] == [0, 0], printed
        assert printed[0].stdout == printed[1].stdout
        other = ["publish", "cartsnitch.sync.progress", "--payload", _json(sync_payload(user.id, 4))]
        reused = run([*other, "--idempotency-key", "cli-1"], env)
        assert reused.returncode == 2
        assert "different event" in reused.stderr
        assert await redis.xlen(bus.history_key(bus.user_audience(user.id))) == 2
    finally:
        await redis.aclose()


@pytest.fixture(params=["sqlite_url", "pg_url"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


async def test_without_redis_idempotency_keys_are_remembered_in_the_database(
    aiohttp_client: Any, database_url: str
) -> None:
    """The embedded default, and PostgreSQL without Redis (whose key column has a length: keys are hashed)."""
    settings = make_settings(database_url)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    headers = {"X-Service-Key": client.app[keys.settings].service_key or "", "Idempotency-Key": "local-1"}
    body = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user.id, 1)}
    ids = []
    for _ in range(3):
        response = await client.post("/internal/events", json=body, headers=headers)
        assert response.status == 202
        ids.append((await response.json())["id"])
    assert len(set(ids)) == 1
    other = {**body, "payload": sync_payload(user.id, 2)}
    assert (await client.post("/internal/events", json=other, headers=headers)).status == 422
    page = await (
        await client.get("/api/v1/me/events", headers=await factories.auth_headers(client.app, user.id))
    ).json()
    assert [event["id"] for event in page["events"]] == ids[:1]
