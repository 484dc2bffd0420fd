"""The event pipeline: accept events from every ingest path, expand the ones whose audience the hub resolves,
invalidate caches, fire target-price alerts, and record everything in the right histories."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import orjson

from channels import bus, rooms
from channels.events import AUDIENCE, Audience, EventType, is_direct, parse_event_type
from channels.payloads import (
    InvalidPayload,
    build_envelope,
    refuse_nul,
    utc_form,
    utc_timestamp,
    validate_payload,
)
from channels.publish import IdempotencyConflict, encode_envelope, fingerprint
from hub.errors import unavailable_dependency
from hub.infra import cache as cache_scopes
from hub.infra.cache import Cache
from hub.infra.metrics import Metrics
from hub.infra.outages import Outages
from hub.realtime.fanout import Dedupe, EventBus, RedisBus, expansion_dedupe
from hub.settings import Settings
from hub.store import alerts, audiences
from hub.store.engine import Sessionmaker
from hub.store.prices import latest_prices

log = logging.getLogger("hub.ingest")
T = TypeVar("T")

RoomSnapshot = Callable[[str], Awaitable[dict[str, Any] | None]]
AGGREGATE_ROOMS = (rooms.INFLATION, rooms.STORE_COMPARISON)
AGGREGATE_INTERVAL = 5.0
OUTBOX_SWEEP_SECONDS = 30.0
"""How often each process records the target alerts left in the outbox (by a process that died between firing and
recording them, or by an update whose retry met an outage)."""
OUTBOX_STALE_SECONDS = 60.0
"""Age past which the sweep takes an outbox alert (a younger one is being recorded by the attempt that fired it)."""
UNANNOUNCED_RETRY_SECONDS = 2.0
"""How often a process tries again to record the alerts of new targets it fired while Redis (or the database) did
not answer, as it tries the queued events it keeps through an outage."""
UNANNOUNCED_MAX = 1000
"""Alerts a process keeps trying itself; past that, the rest wait for the sweep."""
_INVALIDATES: dict[EventType, tuple[str, ...]] = {
    EventType.PRICES_UPDATED: (cache_scopes.PRICES, cache_scopes.PRODUCTS),
    EventType.COUPONS_UPDATED: (cache_scopes.COUPONS,),
    EventType.PRODUCTS_NORMALIZED: (cache_scopes.PRODUCTS, cache_scopes.PRICES),
}


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def check_envelope(data: Any) -> tuple[EventType, dict[str, Any], str, str]:
    """(type, payload, service, timestamp) of an incoming envelope; raises InvalidPayload naming every problem."""
    if not isinstance(data, Mapping):
        raise InvalidPayload([{"field": "envelope", "message": "must be a JSON object", "type": "dict_type"}])
    errors: list[dict[str, str]] = []
    name = data.get("event_type")
    kind = parse_event_type(name) if isinstance(name, str) else None
    if kind is None:
        errors.append({"field": "event_type", "message": "is not a catalog event type", "type": "enum"})
    service = data.get("service", "unknown")
    if not isinstance(service, str) or not 0 < len(service) <= 100:
        errors.append({"field": "service", "message": "must be a string of 1 to 100 characters", "type": "string_type"})
    timestamp = data.get("timestamp")
    if timestamp is None:
        timestamp = utc_timestamp()
    elif not isinstance(timestamp, str) or (timestamp := utc_form(timestamp)) is None:
        errors.append({"field": "timestamp", "message": "must be an ISO-8601 date-time", "type": "datetime_type"})
    if errors:
        raise InvalidPayload(errors)
    assert kind is not None
    payload = validate_payload(kind, data.get("payload"))
    return kind, payload, str(service), str(timestamp)


def ordering_key(envelope_json: bytes) -> str:
    """What a queued event keeps its order with: the events of its user (one addressed to a user), else of its
    product (a trend room's price updates, the alerts to a product's buyers), else of its type."""
    try:
        data = orjson.loads(envelope_json)
        payload = data["payload"]
        for field in ("user_id", "product_id"):
            value = payload.get(field)
            if isinstance(value, str):
                return field + ":" + value
        return str(data["event_type"])
    except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
        return ""


class Ingest:
    def __init__(
        self,
        settings: Settings,
        bus_: EventBus,
        sessionmaker: Sessionmaker,
        cache: Cache,
        metrics: Metrics,
        outages: Outages | None = None,
    ) -> None:
        self.settings = settings
        self.outages = outages or Outages()
        self.bus = bus_
        self.sessionmaker = sessionmaker
        self.cache = cache
        self.metrics = metrics
        self.trend_snapshot: Callable[[uuid.UUID], Awaitable[dict[str, Any] | None]] | None = None
        self.room_snapshot: RoomSnapshot | None = None
        self.room_has_listeners: Callable[[str], Awaitable[bool]] | None = None
        self._buyers: dict[uuid.UUID, tuple[float, list[str]]] = {}
        self._aggregate_due: float = 0.0
        self._aggregate_task: asyncio.Task[None] | None = None
        self._ingested_counters: dict[tuple[str, str], Any] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._unannounced: list[alerts.StagedAlert] = []
        self._unannounced_retry: asyncio.Task[None] | None = None
        bus_.on_ingest = self.handle_queued
        if isinstance(bus_, RedisBus):
            bus_.on_legacy = self.handle_legacy
            bus_.ingest_key = ordering_key

    # --- accepting ------------------------------------------------------------------------------------------

    async def publish(
        self,
        event_type: EventType | str,
        payload: Any,
        *,
        service: str,
        timestamp: str | None = None,
        source: str,
        idempotency_key: str | None = None,
    ) -> str:
        """Validate and accept one event (HTTP, CLI, the hub itself); returns its id (or its queue entry id).

        With ``idempotency_key``, a repeat within the retention window records nothing and returns the first id;
        the key reused for a different event raises IdempotencyConflict."""
        kind, checked, service, timestamp = check_envelope(
            {"event_type": str(event_type), "payload": payload, "service": service, "timestamp": timestamp}
        )
        envelope_json = encode_envelope(build_envelope(kind, checked, service=service, timestamp=timestamp))
        signature = fingerprint(kind.value, checked)
        audience = bus.user_audience(checked["user_id"]) if is_direct(kind, checked) else None
        dedupe = (
            Dedupe(bus.idempotency_key(idempotency_key, audience), self.settings.idempotency_seconds, signature)
            if idempotency_key
            else None
        )
        if audience is not None:
            result = await self.bus.record(audience, envelope_json, dedupe=dedupe)
        else:
            result = await self.bus.enqueue(envelope_json, dedupe=dedupe)
        if result.repeated:
            if result.fingerprint != signature:
                raise IdempotencyConflict(result.id)
            return result.id
        self._ingested(kind.value, source).inc()
        return result.id

    async def handle_legacy(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Plain PUBLISHes of the platform on ``cartsnitch.*``: every hub process receives them, the dedupe key
        gives each exactly one place in the history (one round trip for the whole batch). Also what hubs and
        ``channels`` before hash tags publish on their live channels (single Redis): re-recorded the same way."""
        assert isinstance(self.bus, RedisBus)
        records: list[tuple[str, str, Dedupe | None]] = []
        queued: list[tuple[str, Dedupe | None]] = []
        record_kinds: list[str] = []
        queued_kinds: list[str] = []
        sources: list[str] = []
        for channel, raw in batch:
            v1_audience = bus.audience_of_v1_channel(channel.decode(errors="replace"))
            if v1_audience is not None:
                bridged = self._bridged(v1_audience, raw)
                if bridged is not None:
                    records.append(bridged[0])
                    record_kinds.append(bridged[1])
                    sources.append("redis-v1")
                continue
            try:
                data = orjson.loads(raw)
                kind, payload, service, timestamp = check_envelope(data)
                refuse_nul(raw, data)
                envelope_json = encode_envelope(build_envelope(kind, payload, service=service, timestamp=timestamp))
            except (orjson.JSONDecodeError, InvalidPayload) as exc:
                self.metrics.events_invalid.labels("redis").inc()
                log.warning("invalid event on %s ignored: %s", channel.decode(errors="replace"), exc)
                continue
            digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
            if is_direct(kind, payload):
                audience = bus.user_audience(payload["user_id"])
                records.append(
                    (
                        audience,
                        envelope_json,
                        Dedupe(bus.legacy_dedupe_key(digest, audience), bus.LEGACY_DEDUPE_SECONDS),
                    )
                )
                record_kinds.append(kind.value)
                sources.append("redis")
            else:
                queued.append((envelope_json, Dedupe(bus.legacy_dedupe_key(digest), bus.LEGACY_DEDUPE_SECONDS)))
                queued_kinds.append(kind.value)
        if not records and not queued:
            return
        results = await self.bus.pipeline_scripts(records, queued, background=True)
        counts: dict[tuple[str, str], int] = {}
        for kind_name, source, result in zip(
            record_kinds + queued_kinds, sources + ["redis"] * len(queued), results, strict=True
        ):
            if not result.repeated:  # else another hub process recorded it
                counts[kind_name, source] = counts.get((kind_name, source), 0) + 1
        for (kind_name, source), count in counts.items():  # one (locked) Prometheus increment per kind
            self._ingested(kind_name, source).inc(count)

    def _bridged(self, audience: str, raw: bytes) -> tuple[tuple[str, str, Dedupe | None], str] | None:
        """An event an older hub (or an older ``channels``) recorded and published as ``{"id", ...envelope}``:
        the envelope, to record in ``audience``'s current history once however many hub processes bridge it."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        name = data.get("event_type") if isinstance(data, dict) else None
        kind = parse_event_type(name) if isinstance(name, str) else None
        if not isinstance(data, dict) or kind is None or not isinstance(data.pop("id", None), str):
            self.metrics.events_invalid.labels("redis").inc()
            return None
        digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
        dedupe = Dedupe(bus.legacy_dedupe_key(digest, audience), bus.LEGACY_DEDUPE_SECONDS)
        return (audience, orjson.dumps(data).decode(), dedupe), kind.value

    def _ingested(self, event_type: str, source: str) -> Any:
        counter = self._ingested_counters.get((event_type, source))
        if counter is None:
            counter = self._ingested_counters[event_type, source] = self.metrics.events_ingested.labels(
                event_type, source
            )
        return counter

    # --- expanding ------------------------------------------------------------------------------------------

    async def handle_queued(self, entry_id: str, envelope_json: str) -> None:
        """One queued event (exactly one hub process handles each). When a dependency does not answer, the outage
        is reported and the failure raised: the bus keeps the event and hands it over again later. The retry (here,
        or on the process that takes the entry over when this one dies) takes up where this attempt stopped: what
        it recorded is recorded once (a dedupe key of the entry id), and the targets it fired are announced from the
        outbox."""
        try:
            await self._expand(entry_id, envelope_json)
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is not None:
                self.outages.report(dependency, exc)
            raise

    async def _expand(self, entry_id: str, envelope_json: str) -> None:
        envelope = orjson.loads(envelope_json)
        kind = EventType(envelope["event_type"])
        payload: dict[str, Any] = envelope["payload"]
        forgotten = self.cache.invalidate(*_INVALIDATES.get(kind, ()))
        audience = AUDIENCE[kind]
        if audience is Audience.TREND_ROOM:  # its snapshot is computed while the caches are cleared
            await self._prices_updated(entry_id, envelope, payload, forgotten)
            return
        await forgotten
        if audience is Audience.USER_OR_BUYERS:
            await self._to_buyers(entry_id, kind, envelope, payload)
        elif audience is Audience.COUPON_USERS:
            await self._coupons_updated(entry_id, envelope, payload)
        elif audience is Audience.USER:  # a direct event that reached the queue: record it as it is
            user = bus.user_audience(payload["user_id"])
            await self.bus.record(user, envelope_json, dedupe=expansion_dedupe(entry_id, user), background=True)

    async def buyers(self, product_id: uuid.UUID) -> list[str]:
        now = time.monotonic()
        cached = self._buyers.get(product_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.sessionmaker() as session:
            users = await audiences.buyers_of_product(session, product_id=product_id)
        if len(self._buyers) > 10_000:
            self._buyers.clear()
        self._buyers[product_id] = (now + self.settings.buyers_cache_seconds, users)
        return users

    async def _to_buyers(
        self, entry_id: str, kind: EventType, envelope: dict[str, Any], payload: dict[str, Any]
    ) -> None:
        product_id = _uuid(payload.get("product_id"))
        if product_id is None:
            log.info("%s for unknown product %r: nobody bought it", kind.value, payload.get("product_id"))
            return
        users = await self.buyers(product_id)
        async with self.sessionmaker() as session:
            prefs = await audiences.alert_preferences(session, user_ids=users)
        wanted = []
        change = _decimal(payload.get("change_pct"))
        for user_id in users:
            threshold, shrinkflation = prefs[user_id]
            if kind is EventType.ALERTS_SHRINKFLATION and not shrinkflation:
                continue
            if kind is EventType.ALERTS_PRICE_INCREASE and change is not None and change < threshold:
                continue
            wanted.append(user_id)
        envelope_json = encode_envelope(envelope)
        await self.bus.record_many([(bus.user_audience(user_id), envelope_json) for user_id in wanted], once=entry_id)

    async def _prices_updated(
        self, entry_id: str, envelope: dict[str, Any], payload: dict[str, Any], forgotten: Awaitable[None]
    ) -> None:
        """The trend room's event carries a fresh snapshot, computed while the caches are cleared and recorded
        after they are (a client that reads the REST route on the event does not get the old answer). While the
        database does not answer it goes out without one (``snapshot`` null): the price change is the news, and
        a client applies the event's own observation."""
        product = str(payload["product_id"])
        product_id = _uuid(product)
        snapshot = None
        if product_id is not None and self.trend_snapshot is not None:
            snapshot, _ = await asyncio.gather(
                self._while_the_database_answers(self.trend_snapshot(product_id)), forgotten
            )
        else:
            await forgotten
        room_envelope = {**envelope, "payload": {**payload, "snapshot": snapshot}}
        room = bus.room_audience(rooms.trend(product))
        await self.bus.record(
            room, encode_envelope(room_envelope), dedupe=expansion_dedupe(entry_id, room), background=True
        )
        if product_id is not None:
            await self._fire_targets(entry_id, product_id, payload)
        self._refresh_aggregates(envelope)

    async def _fire_targets(self, entry_id: str, product_id: uuid.UUID, payload: dict[str, Any]) -> None:
        store_id = _uuid(payload.get("store_id"))
        prices = [p for p in (_decimal(payload.get("regular_price")), _decimal(payload.get("sale_price"))) if p]
        if store_id is None or not prices:
            return

        async def fire() -> list[alerts.StagedAlert]:
            async with self.sessionmaker.begin() as session:
                # the store's current price may be lower than the event's: a loyalty price, which the event does
                # not carry and a target's current price counts
                shelf = await latest_prices(session, product_ids=[product_id], store_ids=[store_id])
                return await alerts.fire_price_targets(
                    session,
                    entry_id=entry_id,
                    product_id=product_id,
                    store_id=store_id,
                    price=min(prices + [latest.price for latest in shelf]),
                    now=datetime.now(UTC),
                )

        # While the database does not answer, the targets are checked at the next price update (one still met then
        # fires then: a target fires once the price is at or under it, not only on the update that crossed it), and
        # what an earlier attempt at this update left in the outbox waits for the sweep.
        staged = await self._while_the_database_answers(fire())
        if staged:
            await self._announce(staged)

    async def _announce(self, staged: list[alerts.StagedAlert]) -> bool:
        """Record outbox alerts in their users' histories, then take them out of the outbox. The idempotency key of
        the price update and the target makes a second attempt (a retry, the sweep, another process) record
        nothing twice."""
        for alert in staged:
            await self.publish(
                EventType.ALERTS_PRICE_TARGET,
                alert.payload,
                service="hub",
                source="hub",
                idempotency_key=f"expansion:{alert.entry_id}:{alert.alert_id}",
            )

        async def unstage() -> bool:
            async with self.sessionmaker.begin() as session:
                await alerts.unstage_alerts(session, staged)
            return True

        # True once out of the outbox; else the sweep finds them recorded already
        return await self._while_the_database_answers(unstage()) is not None

    async def announce_fired(self, staged: list[alerts.StagedAlert]) -> None:
        """Record the alerts of targets fired outside a price update (a new target met at once). Never raises: the
        target has fired in the database, and what is not recorded now stays in the outbox. An outage's are tried
        again every ``UNANNOUNCED_RETRY_SECONDS`` until it ends (the sweep would take them a minute or more later);
        the idempotency key of each alert keeps the retry and the sweep from recording one twice."""
        try:
            await self._announce(staged)
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is None:
                log.exception("recording %d target-price alerts failed; the outbox keeps them", len(staged))
                return
            self.outages.report(dependency, exc)
            self._unannounced.extend(staged[: max(0, UNANNOUNCED_MAX - len(self._unannounced))])
            if self._unannounced and self._unannounced_retry is None:
                self._unannounced_retry = asyncio.ensure_future(self._retry_unannounced())

    async def _retry_unannounced(self) -> None:
        try:
            while self._unannounced:
                await asyncio.sleep(UNANNOUNCED_RETRY_SECONDS)
                staged = list(self._unannounced)
                try:
                    await self._announce(staged)
                except Exception as exc:
                    dependency = unavailable_dependency(exc)
                    if dependency is None:  # not an outage: the sweep takes them from the outbox
                        log.exception("recording %d target-price alerts failed; the outbox keeps them", len(staged))
                    else:
                        self.outages.report(dependency, exc)
                        continue
                del self._unannounced[: len(staged)]
        finally:
            self._unannounced_retry = None

    async def sweep_outbox(self, stale_seconds: float = OUTBOX_STALE_SECONDS) -> int:
        """Record the outbox alerts older than ``stale_seconds`` (their process died before recording them, or
        their update's retry met an outage); how many."""
        swept = 0
        while True:
            async with self.sessionmaker() as session:
                staged = await alerts.staged_alerts(
                    session, before=datetime.now(UTC) - timedelta(seconds=stale_seconds)
                )
            if not staged:
                return swept
            log.warning("recording %d target-price alerts left in the outbox", len(staged))
            unstaged = await self._announce(staged)
            swept += len(staged)
            if not unstaged or len(staged) < alerts.OUTBOX_PAGE:
                return swept

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(OUTBOX_SWEEP_SECONDS)
            try:
                await self.sweep_outbox()
            except Exception as exc:
                dependency = unavailable_dependency(exc)
                if dependency is None:
                    log.exception("recording the alerts left in the outbox failed")
                else:  # the next sweep tries again
                    self.outages.report(dependency, exc)

    def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep_loop())

    async def close(self) -> None:
        for task in (self._sweeper, self._unannounced_retry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _while_the_database_answers(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, or None when the database does not answer (reported once per outage)."""
        try:
            return await work
        except Exception as exc:
            if unavailable_dependency(exc) != "database":
                raise
            self.outages.report("database", exc)
            return None

    def _refresh_aggregates(self, envelope: dict[str, Any]) -> None:
        """The inflation and store-comparison rooms get a fresh snapshot at most every few seconds."""
        if self.room_snapshot is None or (self._aggregate_task is not None and not self._aggregate_task.done()):
            return
        delay = max(0.0, self._aggregate_due - time.monotonic())
        self._aggregate_task = asyncio.ensure_future(self._publish_aggregates(envelope, delay))

    async def _publish_aggregates(self, envelope: dict[str, Any], delay: float) -> None:
        await asyncio.sleep(delay)
        self._aggregate_due = time.monotonic() + AGGREGATE_INTERVAL
        assert self.room_snapshot is not None
        for room in AGGREGATE_ROOMS:
            try:
                if self.room_has_listeners is not None and not await self.room_has_listeners(room):
                    continue
                snapshot = await self.room_snapshot(room)
                room_envelope = {**envelope, "payload": {**envelope["payload"], "snapshot": snapshot}}
                await self.bus.record(bus.room_audience(room), encode_envelope(room_envelope), background=True)
            except Exception as exc:
                dependency = unavailable_dependency(exc)
                if dependency is None:
                    log.exception("refreshing room %s failed", room)
                else:  # the next price update refreshes it; an outage is reported once, not with a traceback each time
                    self.outages.report(dependency, exc)

    async def _coupons_updated(self, entry_id: str, envelope: dict[str, Any], payload: dict[str, Any]) -> None:
        coupon_ids = [cid for cid in (_uuid(c) for c in payload.get("coupon_ids", [])) if cid is not None]
        async with self.sessionmaker() as session:
            users = await audiences.coupon_audience(session, coupon_ids=coupon_ids)
        envelope_json = encode_envelope(envelope)
        await self.bus.record_many([(bus.user_audience(user_id), envelope_json) for user_id in users], once=entry_id)
