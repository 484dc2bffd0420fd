"""The event pipeline end to end: trend rooms with snapshots, cache invalidation, target prices that fire once,
product-scoped alerts to buyers, coupon updates to the users they concern."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestServer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select

from channels.events import EventType
from channels.payloads import build_envelope
from channels.publish import encode_envelope
from hub import keys
from hub.realtime import fanout
from hub.realtime import ingest as ingest_module
from hub.realtime.fanout import RedisBus
from hub.realtime.ingest import Ingest
from hub.store import alerts
from hub.store.models import AlertSettings, HubAlertOutbox, PriceTargetAlert
from tests import factories
from tests.sse import SseStream

TODAY = date.today()


@pytest.fixture
async def world(server: TestServer) -> dict[str, Any]:
    """Two stores, a product with prices, a buyer (with a target price) and a user who never bought it."""
    async with server.app[keys.sessionmaker].begin() as session:
        kroger = await factories.create_store(session, slug="kroger", name="Kroger")
        target = await factories.create_store(session, slug="target", name="Target")
        cereal = await factories.create_product(session, canonical_name="Toasted Oats 18 oz", category="pantry")
        for days, price in ((20, "4.29"), (10, "4.49")):
            await factories.create_price(
                session, product=cereal, store=kroger, observed=TODAY - timedelta(days=days), regular=price
            )
        await factories.create_price(
            session, product=cereal, store=target, observed=TODAY - timedelta(days=5), regular="4.39"
        )
        buyer = await factories.create_user(session)
        bystander = await factories.create_user(session)
        picky = await factories.create_user(session)
        for user in (buyer, picky):
            await factories.create_purchase(
                session, user=user, store=kroger, purchased=TODAY - timedelta(days=3), items=[(cereal, "1", "4.49")]
            )
        session.add(
            AlertSettings(
                user_id=picky.id,
                price_increase_threshold_pct=Decimal("50"),
                shrinkflation_enabled=False,
                email_notifications=False,
            )
        )
        session.add(PriceTargetAlert(user_id=buyer.id, normalized_product_id=cereal.id, target_price=Decimal("3.99")))
    return {
        "kroger": kroger,
        "target": target,
        "cereal": cereal,
        "buyer": buyer,
        "bystander": bystander,
        "picky": picky,
    }


class Listener:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    async def connect(self, server: TestServer, namespace: str, auth: dict[str, Any] | None = None) -> None:
        def record(event: str, *args: Any) -> None:
            self.events.append((event, args[0] if args else None))
            self.changed.set()

        self.sio.on("*", record, namespace=namespace)
        await self.sio.connect(str(server.make_url("/")), namespaces=[namespace], auth=auth, transports=["websocket"])

    async def wait_for(self, count: int, timeout: float = 5) -> list[tuple[str, Any]]:
        async def until() -> None:
            while len(self.events) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.events


async def _user_listener(server: TestServer, user_id: str) -> tuple[Listener, dict[str, str]]:
    """A listener on the user's namespace, and the user's auth headers."""
    headers = await factories.auth_headers(server.app, user_id)
    listener = Listener()
    await listener.connect(server, f"/users/{user_id}", {"token": headers["Authorization"].split()[1]})
    return listener, headers


async def _publish(server: TestServer, event_type: str, payload: dict[str, Any]) -> str:
    return await server.app[keys.ingest].publish(event_type, payload, service="test", source="test")


async def _get(server: TestServer, path: str, **headers: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(server.make_url(path), headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_trend_room_snapshot_matches_rest_and_price_updates_arrive_with_a_fresh_one(
    server: TestServer, world: dict[str, Any]
) -> None:
    cereal, kroger = world["cereal"], world["kroger"]
    room = f"trend:{cereal.id}"
    listener = Listener()
    await listener.connect(server, "/public")
    try:
        ack = await listener.sio.call("subscribe", {"room": room}, namespace="/public", timeout=5)
        assert ack["ok"] is True
        assert ack["snapshot"] == await _get(server, f"/api/v1/public/trends/{cereal.id}")
        before = await _get(server, f"/api/v1/public/trends/{cereal.id}")  # now cached
        async with server.app[keys.sessionmaker].begin() as session:
            await factories.create_price(session, product=cereal, store=kroger, observed=TODAY, regular="3.89")
        assert await _get(server, f"/api/v1/public/trends/{cereal.id}") == before  # the cache still answers
        await _publish(
            server,
            "cartsnitch.prices.updated",
            {
                "product_id": str(cereal.id),
                "store_id": str(kroger.id),
                "store_slug": "kroger",
                "observed_date": TODAY.isoformat(),
                "regular_price": 3.89,
                "sale_price": None,
            },
        )
        [(name, envelope)] = await listener.wait_for(1)
    finally:
        await listener.sio.disconnect()
    assert name == "cartsnitch.prices.updated"
    assert envelope["payload"]["regular_price"] == 3.89
    fresh = await _get(server, f"/api/v1/public/trends/{cereal.id}")
    assert fresh != before  # the event invalidated the cache
    assert envelope["payload"]["snapshot"] == fresh
    assert fresh["data_points"][-1]["price"] == 3.89
    later = Listener()  # a member who joins after the event gets the snapshot the event carried
    await later.connect(server, "/public")
    try:
        ack = await later.sio.call("subscribe", {"room": room}, namespace="/public", timeout=5)
    finally:
        await later.sio.disconnect()
    assert ack["snapshot"] == fresh


async def test_a_met_target_price_fires_once(server: TestServer, world: dict[str, Any]) -> None:
    buyer, cereal, kroger = world["buyer"], world["cereal"], world["kroger"]
    listener, headers = await _user_listener(server, buyer.id)
    update = {
        "product_id": str(cereal.id),
        "store_id": str(kroger.id),
        "store_slug": "kroger",
        "observed_date": TODAY.isoformat(),
        "regular_price": 4.29,
        "sale_price": 3.79,
    }
    try:
        await _publish(server, "cartsnitch.prices.updated", update)
        [(name, envelope)] = await listener.wait_for(1)
        await _publish(server, "cartsnitch.prices.updated", {**update, "sale_price": 3.49})
        await asyncio.sleep(0.5)
    finally:
        await listener.sio.disconnect()
    assert name == "cartsnitch.alerts.price_target"
    assert envelope["payload"]["current_price"] == 3.79
    assert envelope["payload"]["target_price"] == 3.99
    assert envelope["payload"]["store_slug"] == "kroger"
    assert len(listener.events) == 1  # the second update finds the target triggered already
    async with server.app[keys.sessionmaker]() as session:
        target = (await session.execute(select(PriceTargetAlert))).scalar_one()
    assert target.triggered_at is not None and target.triggered_price == Decimal("3.79")
    feed = await _get(server, "/api/v1/alerts", Authorization=headers["Authorization"])
    assert "price_target" in {alert["alert_type"] for alert in feed}


async def test_a_loyalty_price_the_event_does_not_carry_meets_a_target(
    server: TestServer, world: dict[str, Any]
) -> None:
    """The platform's price update carries the regular and sale prices; the row it announces may also hold a loyalty
    price, which a target's current price counts. Kroger's new row: regular 4.29, loyalty 3.79, under the buyer's
    3.99 target: it fires at 3.79 (it used to wait, "watching" with a current price under its target)."""
    buyer, cereal, kroger = world["buyer"], world["cereal"], world["kroger"]
    async with server.app[keys.sessionmaker].begin() as session:
        await factories.create_price(
            session, product=cereal, store=kroger, observed=TODAY, regular="4.29", loyalty_price=Decimal("3.79")
        )
    listener, headers = await _user_listener(server, buyer.id)
    try:
        await _publish(server, "cartsnitch.prices.updated", _kroger_price(world, 4.29))
        [(name, envelope)] = await listener.wait_for(1)
    finally:
        await listener.sio.disconnect()
    assert name == "cartsnitch.alerts.price_target"
    assert (envelope["payload"]["current_price"], envelope["payload"]["store_slug"]) == (3.79, "kroger")
    [target] = await _get(server, "/api/v1/alerts/targets", Authorization=headers["Authorization"])
    assert (target["triggered"], target["current_price"]) == (True, 3.79)


def _kroger_price(world: dict[str, Any], regular: float, sale: float | None = None) -> dict[str, Any]:
    """A ``cartsnitch.prices.updated`` payload: the cereal's price at Kroger today."""
    return {
        "product_id": str(world["cereal"].id),
        "store_id": str(world["kroger"].id),
        "store_slug": "kroger",
        "observed_date": TODAY.isoformat(),
        "regular_price": regular,
        "sale_price": sale,
    }


def _first_publish_fails(ingest: Ingest, monkeypatch: pytest.MonkeyPatch, times: int = 1) -> list[str]:
    """The ingest's first ``times`` publishes find the history gone (the event type each was for is added to the
    list); the others go through."""
    publish = ingest.publish
    failed: list[str] = []

    async def fail_once(*args: Any, **kwargs: Any) -> str:
        if len(failed) < times:
            failed.append(str(args[0]))
            raise RedisConnectionError("Connection closed by server.")
        return await publish(*args, **kwargs)

    monkeypatch.setattr(ingest, "publish", fail_once)
    return failed


async def _create_target(server: TestServer, headers: dict[str, str], product_id: str, price: float) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.make_url("/api/v1/alerts/targets"),
            json={"product_id": product_id, "target_price": price},
            headers=headers,
        ) as response,
    ):
        assert response.status == 201, await response.text()
        return await response.json()


async def test_a_target_the_current_price_meets_already_fires_when_it_is_created(
    server: TestServer, world: dict[str, Any]
) -> None:
    """The cereal's lowest current price is Target's 4.39 (Kroger's is 4.49): a new target of 4.39 or more fires at
    once, with its event on the user's namespace, in the user's history and in the feed; one under it waits for a
    price update, and fires at the update as before."""
    bystander, cereal = world["bystander"], world["cereal"]
    listener, headers = await _user_listener(server, bystander.id)
    try:
        created = await _create_target(server, headers, str(cereal.id), 4.39)
        [(name, envelope)] = await listener.wait_for(1)
        assert created["triggered"] is True and created["triggered_at"] is not None
        assert created["current_price"] == 4.39
        assert name == "cartsnitch.alerts.price_target"
        assert envelope["payload"] == {
            "user_id": bystander.id,
            "alert_id": created["id"],
            "product_id": str(cereal.id),
            "product_name": "Toasted Oats 18 oz",
            "store_slug": "target",
            "target_price": 4.39,
            "current_price": 4.39,
        }
        waiting = await _create_target(server, headers, str(cereal.id), 4.38)  # the first one fired: a new may wait
        await asyncio.sleep(0.5)  # its alert would have arrived by now
        assert waiting["triggered"] is False and len(listener.events) == 1
    finally:
        await listener.sio.disconnect()
    assert await _outbox(server) == []
    page = await _get(server, "/api/v1/me/events", Authorization=headers["Authorization"])
    assert [event["payload"]["alert_id"] for event in page["events"]] == [created["id"]]
    feed = await _get(server, "/api/v1/alerts", Authorization=headers["Authorization"])
    assert [(alert["id"], alert["alert_type"]) for alert in feed] == [(f"tgt:{created['id']}", "price_target")]
    assert feed[0]["message"] == "Toasted Oats 18 oz costs $4.39 at Target, at or below your target of $4.39"


async def test_a_target_met_at_creation_while_redis_is_down_is_created_and_announced_by_the_sweep(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history does not answer when a new target fires: the creation still answers 201 (the target has fired
    in the database), the alert waits in the outbox, and the sweep records it once."""
    bystander, cereal = world["bystander"], world["cereal"]
    ingest = server.app[keys.ingest]
    failed = _first_publish_fails(ingest, monkeypatch)
    listener, headers = await _user_listener(server, bystander.id)
    try:
        created = await _create_target(server, headers, str(cereal.id), 5)
        assert created["triggered"] is True
        assert [row.alert_id for row in await _outbox(server)] == [uuid.UUID(created["id"])]
        assert await ingest.sweep_outbox(stale_seconds=0) == 1
        [(name, envelope)] = await listener.wait_for(1)
        assert await ingest.sweep_outbox(stale_seconds=0) == 0
        await asyncio.sleep(0.5)
    finally:
        await listener.sio.disconnect()
    assert failed == ["cartsnitch.alerts.price_target"]
    assert name == "cartsnitch.alerts.price_target" and envelope["payload"]["alert_id"] == created["id"]
    assert len(listener.events) == 1
    assert await _outbox(server) == []


async def test_a_target_met_at_creation_while_redis_is_down_is_announced_once_redis_answers(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process that fired the new target tries its alert again every 2 s while the history does not answer,
    and records it once it does: seconds after the outage, not at the outbox sweep a minute or more later."""
    bystander, cereal = world["bystander"], world["cereal"]
    ingest = server.app[keys.ingest]
    failed = _first_publish_fails(ingest, monkeypatch, times=2)  # the creation's attempt and the first retry
    listener, headers = await _user_listener(server, bystander.id)
    try:
        started = time.monotonic()
        created = await _create_target(server, headers, str(cereal.id), 5)
        [(name, envelope)] = await listener.wait_for(1, timeout=10)
        waited = time.monotonic() - started
        await asyncio.sleep(0.5)
        assert await ingest.sweep_outbox(stale_seconds=0) == 0  # the retry took it out of the outbox
    finally:
        await listener.sio.disconnect()
    assert failed == ["cartsnitch.alerts.price_target"] * 2
    assert name == "cartsnitch.alerts.price_target" and envelope["payload"]["alert_id"] == created["id"]
    assert 3.5 < waited < 10, waited  # the second retry, 2 s after the first (the sweep: a minute or more)
    assert len(listener.events) == 1
    assert await _outbox(server) == []


async def test_a_price_update_that_fails_midway_is_taken_up_where_it_stopped(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history stops answering after the room event is recorded and the target fired (in the database), when
    the target's alert is recorded: the queue hands the update over again, and the retry records the room event
    no second time and announces the target it had fired (firing it again would find it fired already)."""
    monkeypatch.setattr(fanout, "HELD_RETRY_SECONDS", 0.1)
    buyer, cereal = world["buyer"], world["cereal"]
    ingest = server.app[keys.ingest]
    record = ingest.bus.record
    failed: list[str] = []

    async def record_or_fail(audience: str, envelope_json: str, **options: Any) -> Any:
        if audience.startswith("user:") and not failed:
            failed.append(audience)
            if isinstance(ingest.bus, RedisBus):
                raise RedisConnectionError("Connection closed by server.")
            raise ConnectionRefusedError(111, "Connect call failed")
        return await record(audience, envelope_json, **options)

    monkeypatch.setattr(ingest.bus, "record", record_or_fail)
    listener, headers = await _user_listener(server, buyer.id)
    room = f"trend:{cereal.id}"
    member = Listener()
    await member.connect(server, "/public")
    try:
        assert (await member.sio.call("subscribe", {"room": room}, namespace="/public", timeout=5))["ok"] is True
        await _publish(server, "cartsnitch.prices.updated", _kroger_price(world, 3.79))
        [(name, envelope)] = await listener.wait_for(1)
        await asyncio.sleep(0.5)  # a second room event or alert would have arrived by now
    finally:
        await listener.sio.disconnect()
        await member.sio.disconnect()
    assert failed == [f"user:{buyer.id}"]
    assert name == "cartsnitch.alerts.price_target"
    assert envelope["payload"]["current_price"] == 3.79
    assert len(listener.events) == 1
    assert [event for event, _ in member.events] == ["cartsnitch.prices.updated"]
    page = await _get(server, "/api/v1/me/events", Authorization=headers["Authorization"])
    assert [event["event_type"] for event in page["events"]] == ["cartsnitch.alerts.price_target"]
    async with server.app[keys.sessionmaker]() as session:
        target = (await session.execute(select(PriceTargetAlert))).scalar_one()
    assert target.triggered_price == Decimal("3.79")


class _Died(BaseException):
    """The process stops here: nothing after it runs, nothing of its memory survives."""


def _target_met(world: dict[str, Any]) -> tuple[str, str]:
    """A queued price update (entry id, envelope) that meets the buyer's target."""
    envelope = build_envelope(EventType.PRICES_UPDATED, _kroger_price(world, 3.79), service="test")
    return f"{int(time.time() * 1000)}-0", encode_envelope(envelope)


async def _outbox(server: TestServer) -> list[HubAlertOutbox]:
    maker = server.app[keys.sessionmaker]
    while maker.gate is not None and maker.gate.closed:
        # a simulated outage was reported: the gate refuses requests until its probe hears from the (real) database
        await asyncio.sleep(0.01)
    async with maker() as session:
        return list((await session.execute(select(HubAlertOutbox))).scalars())


async def test_a_target_fired_by_a_process_that_died_before_announcing_it_is_announced_once(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process handling a price update fires the target (in the database) and dies before recording its alert:
    the process that takes the update over (a pipeline of its own, none of the first one's memory) records the
    alert, once, and leaves nothing in the outbox. (Kept in memory, the second process found the target fired and
    announced nothing.)"""
    buyer = world["buyer"]
    first = server.app[keys.ingest]

    async def die(*args: Any, **kwargs: Any) -> str:
        raise _Died

    monkeypatch.setattr(first, "publish", die)
    entry, envelope_json = _target_met(world)
    listener, headers = await _user_listener(server, buyer.id)
    try:
        with pytest.raises(_Died):
            await first.handle_queued(entry, envelope_json)
        assert [row.entry_id for row in await _outbox(server)] == [entry]
        app = server.app
        second = Ingest(app[keys.settings], app[keys.bus], app[keys.sessionmaker], app[keys.cache], app[keys.metrics])
        await second.handle_queued(entry, envelope_json)
        [(name, envelope)] = await listener.wait_for(1)
        assert await second.sweep_outbox(stale_seconds=0) == 0
        await asyncio.sleep(0.5)  # a second alert would have arrived by now
    finally:
        await listener.sio.disconnect()
    assert name == "cartsnitch.alerts.price_target"
    assert envelope["payload"]["current_price"] == 3.79
    assert len(listener.events) == 1
    assert await _outbox(server) == []
    page = await _get(server, "/api/v1/me/events", Authorization=headers["Authorization"])
    assert [event["event_type"] for event in page["events"]] == ["cartsnitch.alerts.price_target"]


async def test_the_sweep_records_an_alert_whose_update_was_given_up_once(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording a fired target's alert fails and its update is not handed over again (given up): the periodic
    sweep of the outbox records the alert, once; a late retry of the update then records nothing twice."""
    buyer = world["buyer"]
    ingest = server.app[keys.ingest]
    failed = _first_publish_fails(ingest, monkeypatch)
    entry, envelope_json = _target_met(world)
    listener, _ = await _user_listener(server, buyer.id)
    try:
        with pytest.raises(RedisConnectionError):
            await ingest.handle_queued(entry, envelope_json)
        assert failed == ["cartsnitch.alerts.price_target"]
        assert await ingest.sweep_outbox() == 0  # not stale yet: the attempt that fired it may still record it
        assert await ingest.sweep_outbox(stale_seconds=0) == 1
        [(name, _envelope)] = await listener.wait_for(1)
        await ingest.handle_queued(entry, envelope_json)
        assert await ingest.sweep_outbox(stale_seconds=0) == 0
        await asyncio.sleep(0.5)
    finally:
        await listener.sio.disconnect()
    assert name == "cartsnitch.alerts.price_target"
    assert len(listener.events) == 1
    assert await _outbox(server) == []


async def test_an_alert_recorded_while_the_database_went_away_stays_in_the_outbox_and_is_not_recorded_twice(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The alert is recorded, then the database stops answering before it leaves the outbox: the update completes
    (the user has the alert), the outage is reported without a traceback, and the sweep that finds the alert later
    records it no second time. A sweep that meets the outage itself reports it and tries again at the next."""
    monkeypatch.setattr(ingest_module, "OUTBOX_SWEEP_SECONDS", 0.05)
    buyer = world["buyer"]
    ingest = server.app[keys.ingest]
    unstage = alerts.unstage_alerts
    staged = alerts.staged_alerts
    gone = ConnectionRefusedError(111, "Connect call failed")

    async def database_gone(*args: Any, **kwargs: Any) -> Any:
        raise gone

    monkeypatch.setattr(alerts, "unstage_alerts", database_gone)
    entry, envelope_json = _target_met(world)
    listener, _ = await _user_listener(server, buyer.id)
    try:
        await ingest.handle_queued(entry, envelope_json)
        [(name, _envelope)] = await listener.wait_for(1)
        assert [row.entry_id for row in await _outbox(server)] == [entry]
        monkeypatch.setattr(alerts, "staged_alerts", database_gone)
        reported: list[str] = []
        monkeypatch.setattr(ingest.outages, "report", lambda dependency, exc: reported.append(dependency))
        sweeper = asyncio.ensure_future(ingest._sweep_loop())
        await asyncio.sleep(0.3)
        sweeper.cancel()
        assert reported and set(reported) == {"database"}
        monkeypatch.setattr(alerts, "staged_alerts", staged)
        monkeypatch.setattr(alerts, "unstage_alerts", unstage)
        assert await ingest.sweep_outbox(stale_seconds=0) == 1
        await asyncio.sleep(0.5)  # a second alert would have arrived by now
    finally:
        await listener.sio.disconnect()
    assert name == "cartsnitch.alerts.price_target"
    assert len(listener.events) == 1
    assert await _outbox(server) == []
    assert "Traceback" not in caplog.text


async def test_an_update_that_meets_many_targets_announces_them_all_at_once(
    server: TestServer, world: dict[str, Any]
) -> None:
    """150 targets met by one update: each recorded by the update itself (none left in the outbox for the sweep)."""
    async with server.app[keys.sessionmaker].begin() as session:
        for _ in range(150):
            user = await factories.create_user(session)
            session.add(
                PriceTargetAlert(user_id=user.id, normalized_product_id=world["cereal"].id, target_price=Decimal("5"))
            )
    entry, envelope_json = _target_met(world)
    await server.app[keys.ingest].handle_queued(entry, envelope_json)
    assert await _outbox(server) == []
    async with server.app[keys.sessionmaker]() as session:
        fired = (await session.execute(select(PriceTargetAlert.triggered_at))).scalars().all()
    assert len(fired) == 151 and all(fired)


async def test_product_alerts_without_a_user_go_to_buyers_by_their_settings(
    server: TestServer, world: dict[str, Any]
) -> None:
    cereal = world["cereal"]
    shrink = factories.shrinkflation_payload(cereal)
    rise = {
        "product_id": str(cereal.id),
        "product_name": cereal.canonical_name,
        "store_id": str(world["kroger"].id),
        "store_slug": "kroger",
        "old_price": 4.29,
        "new_price": 4.49,
        "change_pct": 4.7,
        "old_date": (TODAY - timedelta(days=20)).isoformat(),
        "new_date": TODAY.isoformat(),
    }
    await _publish(server, "cartsnitch.alerts.shrinkflation", shrink)
    await _publish(server, "cartsnitch.alerts.price_increase", rise)
    await _publish(server, "cartsnitch.alerts.price_increase", {**rise, "change_pct": 12.0})
    await asyncio.sleep(0.5)
    got = {}
    for name in ("buyer", "bystander", "picky"):
        page = await _get(server, "/api/v1/me/events", **await factories.auth_headers(server.app, world[name].id))
        got[name] = [(e["event_type"], e["payload"].get("change_pct")) for e in page["events"]]
    assert got["buyer"] == [("cartsnitch.alerts.shrinkflation", None), ("cartsnitch.alerts.price_increase", 12.0)]
    assert got["bystander"] == []
    assert got["picky"] == []  # shrinkflation off, threshold 50 %


async def test_an_alert_to_buyers_whose_answer_was_lost_is_recorded_once(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history records the buyers' alert but its answer does not come back in time: the queue hands the alert
    over again, and the retry records it for nobody a second time."""
    monkeypatch.setattr(fanout, "HELD_RETRY_SECONDS", 0.1)
    ingest = server.app[keys.ingest]
    record_many = ingest.bus.record_many
    calls: list[int] = []

    async def record_then_time_out(items: Any, **options: Any) -> None:
        calls.append(len(items))
        await record_many(items, **options)
        if len(calls) == 1:
            if isinstance(ingest.bus, RedisBus):
                raise RedisTimeoutError("Redis did not answer within 30.0 s")
            raise TimeoutError()

    monkeypatch.setattr(ingest.bus, "record_many", record_then_time_out)
    await _publish(server, "cartsnitch.alerts.shrinkflation", factories.shrinkflation_payload(world["cereal"]))
    deadline = asyncio.get_running_loop().time() + 5
    while len(calls) < 2:
        assert asyncio.get_running_loop().time() < deadline, "not handed over again"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert calls == [1, 1]  # the buyer (picky turned shrinkflation off), twice
    page = await _get(server, "/api/v1/me/events", **await factories.auth_headers(server.app, world["buyer"].id))
    assert [event["event_type"] for event in page["events"]] == ["cartsnitch.alerts.shrinkflation"]


async def test_an_aggregate_room_refresh_during_an_outage_is_reported_not_logged_with_a_traceback(
    server: TestServer, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ingest = server.app[keys.ingest]
    reported: list[str] = []

    async def listened(room: str) -> bool:
        return True

    async def unavailable(audience: str, envelope_json: str, **options: Any) -> Any:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(ingest, "room_has_listeners", listened)
    monkeypatch.setattr(ingest.bus, "record", unavailable)
    monkeypatch.setattr(ingest.outages, "report", lambda dependency, exc: reported.append(dependency))
    envelope = {"event_type": "cartsnitch.prices.updated", "payload": {"product_id": str(world["cereal"].id)}}
    with caplog.at_level(logging.WARNING, logger="hub.ingest"):
        await ingest._publish_aggregates(envelope, 0)
    assert reported == ["redis", "redis"]  # the inflation and the store-comparison rooms
    assert not [record for record in caplog.records if record.name == "hub.ingest"]


async def test_coupon_updates_reach_the_users_they_concern(server: TestServer, world: dict[str, Any]) -> None:
    async with server.app[keys.sessionmaker].begin() as session:
        on_cereal = await factories.create_coupon(session, store=world["kroger"], product=world["cereal"])
        at_target = await factories.create_coupon(session, store=world["target"])
    await _publish(server, "cartsnitch.coupons.updated", {"store_slug": "kroger", "coupon_ids": [str(on_cereal.id)]})
    await _publish(server, "cartsnitch.coupons.updated", {"store_slug": "target", "coupon_ids": [str(at_target.id)]})
    await asyncio.sleep(0.5)
    for name, expected in (("buyer", 1), ("picky", 1), ("bystander", 0)):
        page = await _get(server, "/api/v1/me/events", **await factories.auth_headers(server.app, world[name].id))
        assert len(page["events"]) == expected, name


async def test_aggregate_rooms_answer_with_the_rest_snapshot(server: TestServer, world: dict[str, Any]) -> None:
    listener = Listener()
    await listener.connect(server, "/public")
    try:
        inflation = await listener.sio.call("subscribe", {"room": "inflation"}, namespace="/public", timeout=10)
        comparison = await listener.sio.call("subscribe", {"room": "store-comparison"}, namespace="/public", timeout=10)
        unknown_product = await listener.sio.call(
            "subscribe", {"room": "trend:no-such-product"}, namespace="/public", timeout=5
        )
        left = await listener.sio.call("unsubscribe", {"room": "inflation"}, namespace="/public", timeout=5)
    finally:
        await listener.sio.disconnect()
    assert inflation["ok"] is True
    assert inflation["snapshot"] == await _get(server, "/api/v1/public/inflation")
    assert comparison["snapshot"] == await _get(server, "/api/v1/public/store-comparison")
    assert unknown_product["ok"] is False and unknown_product["problem"]["status"] == 404
    assert left == {"ok": True, "room": "inflation"}


async def test_a_public_stream_that_resumes_replays_before_its_snapshot(
    server: TestServer, world: dict[str, Any]
) -> None:
    """A reconnecting EventSource (Last-Event-ID): the events it missed, then the snapshot, which is newer than
    every one of them (a chart never goes back to an older state); an id that is no event id says so first."""
    cereal, kroger = world["cereal"], world["kroger"]
    room = f"trend:{cereal.id}"

    def update(price: float) -> dict[str, Any]:
        return {
            "product_id": str(cereal.id),
            "store_id": str(kroger.id),
            "store_slug": "kroger",
            "observed_date": TODAY.isoformat(),
            "regular_price": price,
            "sale_price": None,
        }

    url = str(server.make_url("/api/v1/public/stream").with_query(room=room))
    async with aiohttp.ClientSession() as http:
        stream = await SseStream.open(http, url)
        try:
            assert (await stream.next(5) or {}).get("event") == "snapshot"
            await _publish(server, "cartsnitch.prices.updated", update(4.59))
            seen = (await stream.next(5) or {})["id"]
        finally:
            stream.close()
        for price in (4.69, 4.79):
            await _publish(server, "cartsnitch.prices.updated", update(price))
        await asyncio.sleep(0.5)  # expanded into the room's history
        stream = await SseStream.open(http, url, {"Last-Event-ID": seen})
        try:
            frames = [await stream.next(5) for _ in range(3)]
        finally:
            stream.close()
        assert [(f or {}).get("event") for f in frames] == ["cartsnitch.prices.updated"] * 2 + ["snapshot"]
        assert [f["data"]["payload"]["regular_price"] for f in frames[:2]] == [4.69, 4.79]  # type: ignore[index]
        trend = await _get(server, f"/api/v1/public/trends/{cereal.id}")
        assert frames[2] is not None and frames[2]["data"] == {"room": room, "snapshot": trend}
        stream = await SseStream.open(http, url, {"Last-Event-ID": "not-an-id"})
        try:
            first, second = await stream.next(5), await stream.next(5)
        finally:
            stream.close()
        assert first is not None and first["event"] == "cartsnitch.resync"
        assert first["data"]["payload"] == {"reason": "invalid_last_event_id"}
        assert second is not None and second["event"] == "snapshot"


async def test_public_stream_starts_with_the_snapshot_then_streams_the_room(
    server: TestServer, world: dict[str, Any]
) -> None:
    cereal, kroger = world["cereal"], world["kroger"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/api/v1/public/stream"), params={"room": f"trend:{cereal.id}"}) as response,
    ):
        assert response.status == 200
        lines: list[str] = []

        async def read_event() -> dict[str, str]:
            event: dict[str, str] = {}
            while True:
                line = (await asyncio.wait_for(response.content.readline(), 10)).decode().rstrip("\n")
                if not line:
                    if "data" in event:
                        return event
                    continue
                lines.append(line)
                if ":" in line and not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    event[key] = value

        first = await read_event()
        await asyncio.sleep(0.2)
        await _publish(
            server,
            "cartsnitch.prices.updated",
            {
                "product_id": str(cereal.id),
                "store_id": str(kroger.id),
                "store_slug": "kroger",
                "observed_date": TODAY.isoformat(),
                "regular_price": 4.59,
                "sale_price": None,
            },
        )
        second = await read_event()
    assert first["event"] == "snapshot"
    assert second["event"] == "cartsnitch.prices.updated"
    assert second["id"]
