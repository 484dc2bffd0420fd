"""Issue 10, point 1: a dependency that is down is a 503 problem (SERVICE_UNAVAILABLE, Retry-After), never a 500,
on REST and on socket connects, and each outage is logged once (not once per request, not once a second)."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from typing import Any

import aiohttp
import orjson
import pytest
import redis as redis_sync
import socketio

from channels import bus
from hub.realtime.fanout import HELD_RETRY_SECONDS
from hub.store.engine import build_engine, build_sessionmaker
from hub.store.models import User
from tests import factories
from tests.cluster import create_users, sync_payload
from tests.conftest import make_settings
from tests.faults.conftest import Hubs, database_url, eventually, repeated_lines
from tests.faults.follower import Follower
from tests.services import PostgresCluster, RedisProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

OUTAGE_SECONDS = 4.0


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
    async with http.request(method, url, timeout=aiohttp.ClientTimeout(total=10), **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, dict(response.headers), body


def _assert_unavailable(status: int, headers: dict[str, str], body: Any, dependency: str) -> None:
    assert status == 503, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert int(headers["Retry-After"]) > 0
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert body["status"] == 503
    assert dependency in body["detail"]


async def _refusal(url: str, follower: Follower) -> dict[str, Any]:
    """The problem a refused socket connect carries."""
    with pytest.raises(Exception, match="namespaces failed to connect"):
        await follower.connect(url, timeout=5)
    [refusal] = follower.refusals
    problem: dict[str, Any] = refusal.get("data", refusal)
    return problem


async def test_redis_down_is_a_503_problem_and_one_log_line(
    pg_url: str, redis_process: RedisProcess, hubs: Hubs
) -> None:
    settings = make_settings(pg_url, redis_process.url)
    [user] = await create_users(settings, 1)
    engine = build_engine(pg_url)
    async with build_sessionmaker(engine).begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        await factories.create_price(session, product=product, store=store, observed=date.today(), regular="2.50")
    await engine.dispose()
    # the rate limiter on (with a limit no test reaches): its Redis path is part of every public read
    [hub] = await hubs.start(settings, CARTSNITCH_RATE_LIMIT_ENABLED="true", CARTSNITCH_RATE_LIMIT_REQUESTS="1000000")
    service = {"X-Service-Key": settings.service_key}
    bearer = {"Authorization": f"Bearer {user.token}"}
    trend = f"{hub.url}/api/v1/public/trends/{product.id}"
    publish = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user.id, 1)}
    async with aiohttp.ClientSession() as http:
        status, _, _ = await _call(http, "POST", hub.url + "/internal/events", json=publish, headers=service)
        assert status == 202
        redis_process.stop()
        started = time.monotonic()
        statuses: list[int] = []
        while time.monotonic() - started < OUTAGE_SECONDS:
            status, headers, body = await _call(
                http, "POST", hub.url + "/internal/events", json=publish, headers=service
            )
            _assert_unavailable(status, headers, body, "redis")
            status, headers, body = await _call(http, "GET", hub.url + "/api/v1/me/events", headers=bearer)
            _assert_unavailable(status, headers, body, "redis")
            status, _, body = await _call(http, "GET", trend)
            assert status == 200, body  # read from the database when the cache does not answer
            statuses.append(status)
            await asyncio.sleep(0.1)
        problem = await _refusal(hub.url, Follower(user.id, user.token))
        assert problem["status"] == 503
        assert problem["code"] == "SERVICE_UNAVAILABLE"
        status, headers, body = await _call(http, "GET", hub.url + "/ready")
        assert status == 503
        assert body["checks"]["redis"] != "ok"
        redis_process.start()
        status, _, _ = await _call(http, "POST", hub.url + "/internal/events", json=publish, headers=service)
        assert status == 202
    assert len(statuses) >= 10
    log = hubs.log(hub)
    assert log.count("hub.outages: redis unavailable (") == 1, log
    assert repeated_lines(log) == {}, log


async def test_a_redis_still_loading_its_data_is_a_503_not_a_500(
    aof_redis: RedisProcess, pg_url: str, hubs: Hubs
) -> None:
    """After a restart, Redis answers LOADING until its append-only file is read (seconds for a large one). Before:
    POST /internal/events answered 500 with a traceback for every publish in that window."""
    settings = make_settings(pg_url, aof_redis.url)
    [user] = await create_users(settings, 1)
    [hub] = await hubs.start(settings)
    with redis_sync.Redis.from_url(aof_redis.url) as filler:  # about two seconds of loading (the delay is per key)
        filler.eval("for i = 1, 2000 do redis.call('SET', 'filler:' .. i, i) end", 0)
        filler.bgrewriteaof()  # into the AOF's RDB part, which is what Redis's load delay slows
        while any(filler.info("persistence")[f"aof_rewrite_{s}"] for s in ("in_progress", "scheduled")):
            await asyncio.sleep(0.05)
    service = {"X-Service-Key": settings.service_key}
    bearer = {"Authorization": f"Bearer {user.token}"}
    publish = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user.id, 1)}
    loading = 0
    async with aiohttp.ClientSession() as http:
        aof_redis.stop()
        aof_redis.start(key_load_delay_us=1000)
        while True:
            status, headers, body = await _call(
                http, "POST", hub.url + "/internal/events", json=publish, headers=service
            )
            if status == 202:
                break
            _assert_unavailable(status, headers, body, "redis")
            status, headers, body = await _call(http, "GET", hub.url + "/api/v1/me/events", headers=bearer)
            if status != 200:
                _assert_unavailable(status, headers, body, "redis")
            loading += 1
            await asyncio.sleep(0.05)
    assert loading >= 3  # the publishes met Redis while it was loading
    log = hubs.log(hub)
    assert "Traceback" not in log, log
    assert repeated_lines(log) == {}, log


async def test_postgres_stopped_is_a_503_problem_and_one_log_line(
    postgres_cluster: PostgresCluster, redis_process: RedisProcess, hubs: Hubs
) -> None:
    settings = make_settings(database_url(postgres_cluster), redis_process.url)
    first, second = await create_users(settings, 2)
    [hub] = await hubs.start(settings)
    bearer = {"Authorization": f"Bearer {first.token}"}
    routes = ("/api/v1/purchases", "/api/v1/alerts", "/api/v1/me/stores", "/api/v1/me/events")
    async with aiohttp.ClientSession() as http:
        for route in routes:
            status, _, body = await _call(http, "GET", hub.url + route, headers=bearer)
            assert status == 200, (route, body)
        postgres_cluster.stop()
        started = time.monotonic()
        refused = 0
        while time.monotonic() - started < OUTAGE_SECONDS:
            for route in routes:
                status, headers, body = await _call(http, "GET", hub.url + route, headers=bearer)
                if route.endswith("/me/events") and status == 200:
                    continue  # the history is in Redis; the token's session was checked less than 5 s ago
                _assert_unavailable(status, headers, body, "database")
                refused += 1
            await asyncio.sleep(0.1)
        # a token this process has not seen: the connect needs the database to check it
        problem = await _refusal(hub.url, Follower(second.id, second.token))
        assert problem["status"] == 503
        assert problem["code"] == "SERVICE_UNAVAILABLE"
        postgres_cluster.start()
        # the gate opens at the first answer to its probe (every 0.5 s)
        await eventually(lambda: _all_ok(http, hub.url, routes, bearer), timeout=3)
    assert refused >= 20
    log = hubs.log(hub)
    assert log.count("hub.outages: database unavailable (") == 1, log
    assert repeated_lines(log) == {}, log


async def test_postgres_frozen_costs_the_first_requests_a_bounded_wait_and_the_others_none(
    postgres_cluster: PostgresCluster, redis_process: RedisProcess, hubs: Hubs
) -> None:
    """A frozen server (SIGSTOP: connections open, nothing answers) is the worst outage for a pool: without a bound
    on the ping of a pooled connection each request waited the statement timeout (30 s) for its 503. The first
    requests wait for the ping and a fresh connection (the database timeout each), then the gate refuses the
    rest at once until a probe gets an answer."""
    wait = 1.0
    settings = make_settings(database_url(postgres_cluster), redis_process.url)
    [user] = await create_users(settings, 1)
    [hub] = await hubs.start(settings, CARTSNITCH_DATABASE_TIMEOUT_SECONDS=str(wait), CARTSNITCH_LOG_LEVEL="INFO")
    bearer = {"Authorization": f"Bearer {user.token}"}
    routes = ("/api/v1/purchases", "/api/v1/alerts", "/api/v1/me/stores", "/api/v1/products?q=milk")

    async def timed(http: aiohttp.ClientSession, route: str) -> tuple[float, int]:
        started = time.monotonic()
        status, headers, body = await _call(http, "GET", hub.url + route, headers=bearer)
        if status != 200:
            _assert_unavailable(status, headers, body, "database")
        return time.monotonic() - started, status

    async with aiohttp.ClientSession() as http:
        for route in routes:
            assert (await timed(http, route))[1] == 200
        postgres_cluster.freeze()
        try:
            waits = []
            for _ in range(5):  # concurrent waves, as requests arrive in production
                waits += await asyncio.gather(*(timed(http, route) for route in routes * 3))
                await asyncio.sleep(0.2)
        finally:
            postgres_cluster.thaw()
        back = await eventually(lambda: _all_ok(http, hub.url, routes, bearer), timeout=5)
    durations = sorted(duration for duration, _ in waits)
    assert {status for _, status in waits} == {503}
    assert durations[-1] < 2 * wait + 1.0, durations  # a ping, then a connection attempt, each bounded
    assert durations[len(durations) // 2] < 0.25, durations  # after the first wave, refused at once
    assert back < 2.0
    log = hubs.log(hub)
    assert log.count("hub.outages: database unavailable (") == 1, log
    assert "hub.database: the database answers again" in log, log


async def _all_ok(http: aiohttp.ClientSession, url: str, routes: tuple[str, ...], headers: dict[str, str]) -> bool:
    for route in routes:
        if (await _call(http, "GET", url + route, headers=headers))[0] != 200:
            return False
    return True


async def test_a_price_update_while_postgres_is_stopped_reaches_its_room_without_a_snapshot(
    postgres_cluster: PostgresCluster, redis_process: RedisProcess, hubs: Hubs
) -> None:
    """The room's snapshot comes from the database; the price change itself does not. While PostgreSQL is down a
    room member still gets the event (``snapshot`` null: the dashboard then applies the event's own observation),
    and once it is back the snapshots are fresh again."""
    settings = make_settings(database_url(postgres_cluster), redis_process.url)
    engine = build_engine(settings.database_url)
    async with build_sessionmaker(engine).begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        await factories.create_price(session, product=product, store=store, observed=date.today(), regular="2.50")
    await engine.dispose()
    [hub] = await hubs.start(settings)
    member = socketio.AsyncClient(reconnection=False)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    member.on("cartsnitch.prices.updated", events.put, namespace="/public")
    publisher = redis_sync.Redis.from_url(redis_process.url)

    def price(value: str) -> None:
        payload = {
            "product_id": str(product.id),
            "store_id": str(store.id),
            "store_slug": store.slug,
            "observed_date": date.today().isoformat(),
            "regular_price": value,
            "sale_price": None,
        }
        event = {"event_type": "cartsnitch.prices.updated", "service": "test", "payload": payload}
        publisher.publish("cartsnitch.prices.updated", orjson.dumps(event))

    try:
        await member.connect(hub.url, namespaces=["/public"], transports=["websocket"])
        ack = await member.call("subscribe", {"room": f"trend:{product.id}"}, namespace="/public", timeout=5)
        assert ack["ok"] is True
        price("2.40")
        before = await asyncio.wait_for(events.get(), 10)
        assert before["payload"]["snapshot"]["data_points"]
        postgres_cluster.stop()
        price("2.30")
        during = await asyncio.wait_for(events.get(), 10)
        assert during["payload"]["regular_price"] == "2.30"
        assert during["payload"]["snapshot"] is None
        postgres_cluster.start()
        async with aiohttp.ClientSession() as http:  # the pool's connections to the old server are replaced
            await eventually(lambda: _ready(http, hub.url), 30)
        price("2.20")
        after = await asyncio.wait_for(events.get(), 10)
        assert after["payload"]["snapshot"]["data_points"]
        assert [e["id"] for e in (before, during, after)] == sorted(e["id"] for e in (before, during, after))
    finally:
        await member.disconnect()
        publisher.close()
    log = hubs.log(hub)
    assert "Traceback" not in log, log
    assert log.count("hub.outages: database unavailable (") == 1, log
    assert repeated_lines(log) == {}, log


async def _ready(http: aiohttp.ClientSession, url: str) -> bool:
    status, _, _ = await _call(http, "GET", url + "/ready")
    return status == 200


@pytest.mark.parametrize("broker", ["redis", "in-process"])
async def test_an_alert_for_buyers_while_postgres_is_stopped_waits_and_reaches_them_once_it_is_back(
    postgres_cluster: PostgresCluster, broker: str, request: pytest.FixtureRequest, hubs: Hubs
) -> None:
    """A shrinkflation alert goes to the product's buyers, whom only the database knows. While PostgreSQL is down
    the queued events are kept, not acknowledged and dropped; once it is back the buyer gets each, once (with Redis,
    two processes share the queue)."""
    redis_process: RedisProcess | None = request.getfixturevalue("redis_process") if broker == "redis" else None
    settings = make_settings(database_url(postgres_cluster), redis_process.url if redis_process else None)
    [buyer] = await create_users(settings, 1)
    engine = build_engine(settings.database_url)
    async with build_sessionmaker(engine).begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        user = await session.get(User, buyer.id)
        await factories.create_purchase(
            session, user=user, store=store, purchased=date.today(), items=[(product, "1", "4.49")]
        )
    await engine.dispose()
    processes = await hubs.start(settings, 2 if redis_process else 1)
    hub, publishing = processes[0], processes[-1]
    follower = Follower(buyer.id, buyer.token)
    events = [
        {
            "event_type": "cartsnitch.alerts.shrinkflation",
            "service": "test",
            "payload": factories.shrinkflation_payload(product, new_size=size),
        }
        for size in (17, 16, 15, 14, 13, 12)
    ]

    def alerts() -> list[Any]:
        return [arg for _, name, arg in follower.events if name == "cartsnitch.alerts.shrinkflation"]

    service = {"X-Service-Key": settings.service_key}
    try:
        await follower.connect(hub.url)
        postgres_cluster.stop()
        async with aiohttp.ClientSession() as http:
            for event in events:
                status, _, body = await _call(
                    http, "POST", publishing.url + "/internal/events", json=event, headers=service
                )
                assert status == 202, body
        await asyncio.sleep(3)
        assert alerts() == []
        postgres_cluster.start()
        await follower.wait(lambda _: len(alerts()) == len(events), timeout=30)
        await asyncio.sleep(2 * HELD_RETRY_SECONDS)
        assert sorted(a["payload"]["new_size"] for a in alerts()) == [12, 13, 14, 15, 16, 17]  # each once
        if redis_process is not None:
            with redis_sync.Redis.from_url(redis_process.url) as redis:
                assert redis.xpending(bus.INGEST_STREAM, bus.INGEST_GROUP)["pending"] == 0
    finally:
        await follower.close()
    logs = [hubs.log(process) for process in processes]
    for log in logs:
        assert "Traceback" not in log, log
        assert "dropped" not in log, log
        assert log.count("hub.outages: database unavailable (") <= 1, log
        assert repeated_lines(log) == {}, log
    assert any("hub.outages: database unavailable (" in log for log in logs)
