"""Public room snapshots: the same JSON the matching REST endpoint returns, for subscribe acks and room events."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import orjson
from aiohttp import web

from channels import bus, rooms
from hub import keys
from hub.infra import cache
from hub.realtime.fanout import EventBus, RedisBus
from hub.realtime.hub import Hub
from hub.realtime.ingest import Ingest
from hub.store.public import inflation_snapshot, store_comparison_snapshot, trend_snapshot

TREND_DAYS = 90


def wire(app: web.Application, hub: Hub, ingest: Ingest, bus_: EventBus) -> None:
    async def cached(
        key: str, compute: Callable[[], Awaitable[dict[str, Any] | None]], *, fresh: bool = False
    ) -> dict[str, Any] | None:
        """Snapshots live in the price cache (events invalidate it), one computation for concurrent subscribers;
        ``fresh``: computed anew and cached for the subscribers to come (a room event's snapshot)."""

        async def encode() -> bytes:
            return orjson.dumps(await compute())

        scope, entry = cache.PRICES, f"room:{key}@{date.today().isoformat()}"
        store = app[keys.cache]
        raw = await (store.refresh(scope, entry, encode) if fresh else store.get_or_compute(scope, entry, encode))
        value: dict[str, Any] | None = orjson.loads(raw)
        return value

    async def trend(product_id: uuid.UUID, fresh: bool = False) -> dict[str, Any] | None:
        async def compute() -> dict[str, Any] | None:
            async with app[keys.sessionmaker]() as session:
                return await trend_snapshot(session, product_id=product_id, days=TREND_DAYS)

        return await cached(rooms.trend(str(product_id)), compute, fresh=fresh)

    async def fresh_trend(product_id: uuid.UUID) -> dict[str, Any] | None:
        return await trend(product_id, fresh=True)

    async def room(name: str) -> dict[str, Any] | None:
        product = rooms.trend_product(name)
        if product is not None:
            try:
                product_id = uuid.UUID(product)
            except ValueError:
                return None
            return await trend(product_id)

        async def compute() -> dict[str, Any] | None:
            async with app[keys.sessionmaker]() as session:
                if name == rooms.INFLATION:
                    return await inflation_snapshot(session)
                if name == rooms.STORE_COMPARISON:
                    return await store_comparison_snapshot(session)
            return None

        return await cached(name, compute)

    async def has_listeners(name: str) -> bool:
        if isinstance(bus_, RedisBus):
            return await bus_.listeners(bus.room_audience(name)) > 0
        return bus.room_audience(name) in hub.audiences()

    hub.snapshot = room
    ingest.trend_snapshot = fresh_trend
    ingest.room_snapshot = room
    ingest.room_has_listeners = has_listeners
