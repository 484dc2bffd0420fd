"""The publish helper against real Redis: validate, record and route in one round trip."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from channels import bus
from channels.payloads import InvalidPayload
from channels.publish import publish
from hub.realtime.fanout import redis_client

pytestmark = pytest.mark.redis

PAYLOAD = {"user_id": "u1", "store_slug": "kroger", "job_id": "j", "status": "running"}


async def test_publish_records_then_routes_live(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(bus.live_channel(bus.user_audience("u1")))
    await pubsub.get_message(timeout=1)
    try:
        first = await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="receiptwitness")
        second = await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="receiptwitness")
        assert bus.parse_event_id(first) < bus.parse_event_id(second)  # type: ignore[operator]
        entries = await redis.xrange(bus.history_key(bus.user_audience("u1")))
        assert len(entries) == 2
        stored = json.loads(entries[0][1][b"e"])
        assert "id" not in stored and stored["payload"] == PAYLOAD
        live = []
        while len(live) < 2:
            message = await pubsub.get_message(timeout=2)
            if message and message["type"] == "message":
                live.append(json.loads(message["data"]))
        assert [m["id"] for m in live] == [first, second]
        assert list(live[0]) == ["id", "event_type", "timestamp", "service", "payload"]
        ttl = await redis.pttl(bus.history_key(bus.user_audience("u1")))
        week = 7 * 24 * 3600 * 1000
        assert week < ttl <= week + week // 16
    finally:
        await pubsub.aclose()
        await redis.aclose()


async def test_a_history_outlives_its_last_event_by_its_max_age_and_is_refreshed_only_when_due(
    redis_url: str,
) -> None:
    """The stream and its epoch key live max age + 1/16 after a refresh; an event refreshes them only once less
    than max age is left (max age 16 s here: they live 17 s, and the first event after a second refreshes)."""
    redis = Redis.from_url(redis_url)
    history, epoch = bus.history_key(bus.user_audience("u1")), bus.epoch_key(bus.user_audience("u1"))

    epochs = set()

    async def record() -> tuple[int, int]:
        event_id = await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="s", max_age_seconds=16)
        epochs.add(event_id.rsplit("-", 1)[1])
        return await redis.pttl(history), await redis.pttl(epoch)

    try:
        first, first_epoch = await record()
        assert 16_500 < first <= 17_000
        assert abs(first - first_epoch) < 50
        await asyncio.sleep(0.4)
        within, _ = await record()
        assert within < first - 300  # more than max age was left: not refreshed
        await asyncio.sleep(0.8)  # now less than 16 s is left
        refreshed, refreshed_epoch = await record()
        assert refreshed > 16_500
        assert abs(refreshed - refreshed_epoch) < 50
        assert await redis.xlen(history) == 3
        assert len(epochs) == 1  # one history throughout
    finally:
        await redis.aclose()


async def test_history_is_bounded_by_count(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        for _ in range(300):
            await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="s", max_events=50)
        length = await redis.xlen(bus.history_key(bus.user_audience("u1")))
        info = await redis.xinfo_stream(bus.history_key(bus.user_audience("u1")))
    finally:
        await redis.aclose()
    assert 50 <= length < 300  # approximate trimming (whole macro nodes)
    assert info["entries-added"] == 300


async def test_product_scoped_alerts_go_to_the_ingest_queue(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        entry = await publish(
            redis,
            "cartsnitch.alerts.shrinkflation",
            {
                "product_id": "p1",
                "product_name": "Chips",
                "old_size": 16,
                "new_size": 14,
                "old_unit": "oz",
                "new_unit": "oz",
                "price_at_old_size": 3.99,
                "price_at_new_size": 3.99,
                "confidence": 0.9,
                "detected_date": "2026-11-01",
            },
            service="shrinkray",
        )
        assert entry.startswith("ingest-")
        assert await redis.xlen(bus.INGEST_STREAM) == 1
    finally:
        await redis.aclose()


async def test_invalid_payload_records_nothing(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        with pytest.raises(InvalidPayload):
            await publish(redis, "cartsnitch.sync.progress", {**PAYLOAD, "status": "?"}, service="s")
        assert await redis.exists(bus.history_key(bus.user_audience("u1"))) == 0
    finally:
        await redis.aclose()


async def test_a_nul_anywhere_in_the_payload_is_invalid_and_records_nothing(redis_url: str) -> None:
    """As every HTTP route refuses it (PostgreSQL cannot store a NUL in text); a JSON escape alone is no NUL."""
    redis = Redis.from_url(redis_url)
    try:
        nul = {**PAYLOAD, "store_slug": "kro\x00ger", "extra": {"notes": ["ok", "a\x00b"]}}
        with pytest.raises(InvalidPayload) as refused:
            await publish(redis, "cartsnitch.sync.progress", nul, service="s")
        assert [e["field"] for e in refused.value.errors] == ["payload.store_slug", "payload.extra.notes.1"]
        assert await redis.exists(bus.history_key(bus.user_audience("u1"))) == 0
        assert await publish(redis, "cartsnitch.sync.progress", {**PAYLOAD, "extra": "\\u0000"}, service="s")
    finally:
        await redis.aclose()


def _nested(depth: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    inner = top
    for _ in range(depth):
        inner["x"] = {}
        inner = inner["x"]
    return top


@pytest.mark.parametrize("extra", [_nested(300), {1: "a key that is no string"}, object()])
async def test_a_payload_with_no_json_form_is_invalid_and_records_nothing(redis_url: str, extra: Any) -> None:
    redis = Redis.from_url(redis_url)
    try:
        with pytest.raises(InvalidPayload) as refused:
            await publish(redis, "cartsnitch.sync.progress", {**PAYLOAD, "extra": extra}, service="s")
        assert refused.value.errors[0]["field"] == "payload"
        assert await redis.exists(bus.history_key(bus.user_audience("u1"))) == 0
    finally:
        await redis.aclose()


async def test_publish_works_after_redis_forgot_its_scripts(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="s")
        await redis.script_flush()
        await asyncio.sleep(0)
        assert await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="s")
    finally:
        await redis.aclose()


async def test_on_a_cluster_publish_records_in_the_audience_slot_and_routes_sharded(redis_cluster_url: str) -> None:
    redis = redis_client(redis_cluster_url, timeout=5)
    assert isinstance(redis, RedisCluster)
    channel = bus.live_channel(bus.user_audience("u1"))
    await redis.initialize()
    owner = redis.get_node_from_key(channel)
    node = Redis(host=owner.host, port=owner.port)
    sharded, classic = node.pubsub(), node.pubsub()
    await sharded.ssubscribe(channel)
    await classic.subscribe(channel)
    try:
        first = await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="s", idempotency_key="k1")
        again = await publish(redis, "cartsnitch.sync.progress", PAYLOAD, service="s", idempotency_key="k1")
        assert again == first
        message = None
        for _ in range(20):
            message = await sharded.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None and message["type"] == "smessage":
                break
        assert message is not None and message["type"] == "smessage"
        assert json.loads(message["data"])["id"] == first
        assert await classic.get_message(ignore_subscribe_messages=True, timeout=0.3) is None  # SPUBLISH only
        assert await redis.xlen(bus.history_key(bus.user_audience("u1"))) == 1
        assert await redis.get(bus.epoch_key(bus.user_audience("u1")))  # the epoch lives in the same slot
        queued = await publish(redis, "cartsnitch.products.normalized", {"product_id": "p"}, service="s")
        assert queued.startswith("ingest-")
    finally:
        await sharded.aclose()
        await classic.aclose()
        await node.aclose()
        await redis.aclose()
