from __future__ import annotations

import pytest
from redis.crc import key_slot

from channels import bus, rooms
from channels.events import AUDIENCE, Audience, EventType, is_direct
from channels.payloads import SCHEMAS, InvalidPayload, build_envelope, json_schema, validate_payload

VALID = {
    EventType.SYNC_PROGRESS: {"user_id": "u1", "store_slug": "kroger", "job_id": "j", "status": "queued"},
    EventType.RECEIPTS_INGESTED: {
        "user_id": "u1",
        "store_slug": "kroger",
        "purchase_id": "",
        "purchase_date": "",
        "item_count": 3,
        "total": "12.50",
    },
    EventType.ALERTS_PRICE_INCREASE: {
        "product_id": "p1",
        "product_name": "Milk",
        "store_id": "s1",
        "store_slug": "kroger",
        "old_price": 3.49,
        "new_price": 3.99,
        "change_pct": 14.3,
        "old_date": "2026-10-01",
        "new_date": "2026-11-01",
    },
    EventType.ALERTS_SHRINKFLATION: {
        "product_id": "p1",
        "product_name": "Chips",
        "old_size": 16,
        "new_size": 14.5,
        "old_unit": "oz",
        "new_unit": "oz",
        "price_at_old_size": 3.99,
        "price_at_new_size": 3.99,
        "confidence": 0.9,
        "detected_date": "2026-11-01",
    },
    EventType.ALERTS_PRICE_TARGET: {
        "user_id": "u1",
        "alert_id": "a",
        "product_id": "p1",
        "product_name": "Milk",
        "store_slug": "kroger",
        "target_price": 3,
        "current_price": 2.99,
    },
    EventType.PRICES_UPDATED: {
        "product_id": "p1",
        "store_id": "s1",
        "store_slug": "kroger",
        "observed_date": "2026-11-26",
        "regular_price": 3.99,
        "sale_price": None,
    },
    EventType.COUPONS_UPDATED: {"store_slug": "kroger", "coupon_ids": ["c1", "c2"]},
    EventType.PRODUCTS_NORMALIZED: {"product_id": "p1"},
}


def test_every_catalog_event_has_a_schema_and_an_audience() -> None:
    assert set(SCHEMAS) == set(EventType) == set(AUDIENCE) == set(VALID)


@pytest.mark.parametrize("kind", list(EventType))
def test_valid_payloads_pass_and_keep_extra_fields(kind: EventType) -> None:
    payload = {**VALID[kind], "extra": {"kept": True}}
    assert validate_payload(kind, payload) == payload


@pytest.mark.parametrize(
    ("kind", "change", "field"),
    [
        (EventType.SYNC_PROGRESS, {"status": "done"}, "status"),
        (EventType.SYNC_PROGRESS, {"progress": 1.5}, "progress"),
        (EventType.SYNC_PROGRESS, {"user_id": "has space"}, "user_id"),
        (EventType.SYNC_PROGRESS, {"items_synced": -1}, "items_synced"),
        (EventType.SYNC_PROGRESS, {"items_synced": True}, "items_synced"),
        (EventType.RECEIPTS_INGESTED, {"purchase_date": "2026-02-30"}, "purchase_date"),
        (EventType.RECEIPTS_INGESTED, {"total": "lots"}, "total"),
        (EventType.ALERTS_PRICE_INCREASE, {"new_price": float("nan")}, "new_price"),
        (EventType.ALERTS_SHRINKFLATION, {"confidence": 2}, "confidence"),
        (EventType.PRICES_UPDATED, {"regular_price": None}, "regular_price"),
        (EventType.COUPONS_UPDATED, {"coupon_ids": "c1"}, "coupon_ids"),
    ],
)
def test_invalid_payloads_name_the_field(kind: EventType, change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        validate_payload(kind, {**VALID[kind], **change})
    assert [error["field"] for error in caught.value.errors] == [field]


def test_missing_fields_are_all_reported() -> None:
    with pytest.raises(InvalidPayload) as caught:
        validate_payload(EventType.PRICES_UPDATED, {})
    assert {e["field"] for e in caught.value.errors} == {
        "product_id",
        "store_id",
        "store_slug",
        "observed_date",
        "regular_price",
    }


def test_unknown_event_and_non_object_payloads() -> None:
    with pytest.raises(InvalidPayload):
        validate_payload("cartsnitch.unknown", {})
    with pytest.raises(InvalidPayload):
        validate_payload(EventType.SYNC_PROGRESS, ["not", "an", "object"])


def test_audiences_and_direct_routing() -> None:
    assert is_direct(EventType.SYNC_PROGRESS, VALID[EventType.SYNC_PROGRESS])
    assert not is_direct(EventType.ALERTS_PRICE_INCREASE, VALID[EventType.ALERTS_PRICE_INCREASE])
    assert is_direct(EventType.ALERTS_PRICE_INCREASE, {**VALID[EventType.ALERTS_PRICE_INCREASE], "user_id": "u"})
    assert AUDIENCE[EventType.PRICES_UPDATED] is Audience.TREND_ROOM


def test_json_schema_lists_required_fields() -> None:
    schema = json_schema(EventType.SYNC_PROGRESS)
    assert schema["required"] == ["user_id", "store_slug", "job_id", "status"]
    assert schema["properties"]["status"]["enum"] == ["queued", "running", "succeeded", "failed"]


def test_envelope_has_event_type_first() -> None:
    envelope = build_envelope(
        EventType.PRODUCTS_NORMALIZED, {"product_id": "p"}, service="s", timestamp="2026-12-01T00:00:00Z"
    )
    assert list(envelope) == ["event_type", "timestamp", "service", "payload"]


def test_room_and_key_grammar() -> None:
    assert rooms.user_namespace("u1") == "/users/u1"
    assert rooms.parse_user_namespace("/users/u1") == "u1"
    assert rooms.parse_user_namespace("/users/u1/x") is None
    assert rooms.parse_public_room("trend:abc-1") == "trend:abc-1"
    assert rooms.parse_public_room("trend:") is None
    assert rooms.parse_public_room("inflation") == "inflation"
    assert rooms.parse_public_room(42) is None
    assert bus.history_key(bus.user_audience("u1")) == "hub:v1:history:{user:u1}"
    assert bus.live_channel(bus.user_audience("u1")) == "hub:v1:live:{user:u1}"
    assert bus.audience_of_live_channel(bus.live_channel("room:inflation")) == "room:inflation"
    assert bus.audience_of_v1_channel("hub:v1:live:user:u1") == "user:u1"
    assert bus.audience_of_v1_channel("hub:v1:live:room:trend:p") == "room:trend:p"
    assert bus.audience_of_v1_channel(bus.live_channel("user:u1")) is None
    assert bus.audience_of_v1_channel("cartsnitch.sync.progress") is None
    assert bus.parse_event_id("1700000000000-3-ab12cd34") == bus.EventId(1700000000000, 3, "ab12cd34")
    assert bus.parse_event_id("x-1-a") is None
    # digits that str.isdigit() accepts and int() refuses ("²") or reads in another script ("٣")
    for foreign in ("\u00b2-0-x", "10-\u0663-ab12cd34", "1-0-\u00e9poque", "1-0-ab\u0663"):
        assert bus.parse_event_id(foreign) is None
    assert bus.with_id("1-0-e", '{"a":1}') == '{"id":"1-0-e","a":1}'


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


@pytest.mark.parametrize("audience", ["user:u1", "user:{odd}id", "room:trend:abc", "room:inflation"])
def test_every_key_of_one_audience_is_in_one_slot(audience: str) -> None:
    keys = [
        bus.history_key(audience),
        bus.epoch_key(audience),
        bus.live_channel(audience),
        bus.legacy_dedupe_key("d1", audience),
        bus.idempotency_key("k1", audience),
    ]
    assert len({_slot(key) for key in keys}) == 1
    assert bus.audience_of_live_channel(bus.live_channel(audience)) == audience


def test_queue_keys_share_the_queue_slot() -> None:
    slots = {_slot(bus.INGEST_STREAM), _slot(bus.legacy_dedupe_key("d1")), _slot(bus.idempotency_key("k1"))}
    assert len(slots) == 1
    assert _slot(bus.history_key("user:a")) != _slot(bus.history_key("user:b"))  # audiences spread over slots
