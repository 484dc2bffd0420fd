"""The demo price ticker: in dev mode, a simulated price change every few seconds, recorded in ``price_history``
and published as ``cartsnitch.prices.updated``, so the public dashboard is visibly live on demo data.

It moves the products someone watches on this process (their trend rooms have subscribers), else the first
products of the default store comparison (the dashboard's opening product). Prices wander around the first
price the ticker saw for each (product, store), so hours of ticking stay realistic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from channels import bus, rooms
from channels.events import EventType
from hub.realtime.hub import Hub
from hub.realtime.ingest import Ingest
from hub.store import prices
from hub.store.engine import Sessionmaker
from hub.store.public import store_comparison_snapshot

log = logging.getLogger("hub.demo")

SERVICE = "demo-ticker"
"""The envelope's ``service``: a simulated price says so on the wire too."""
SOURCE = "catalog"
FEATURED_PRODUCTS = 3
SWING = 0.08
SALE_CHANCE = 0.25


def shelf_cents(cents: float) -> int:
    """A shelf price in cents ending in 9 (3.49, 12.99), at least 0.19."""
    return max(19, round(cents / 10) * 10 - 1)


def _money(cents: int) -> Decimal:
    return Decimal(cents) / 100


@dataclass
class DemoTicker:
    sessionmaker: Sessionmaker
    ingest: Ingest
    hub: Hub
    interval: float
    rng: random.Random = field(default_factory=random.Random)
    _featured: list[uuid.UUID] | None = None
    _base: dict[tuple[uuid.UUID, uuid.UUID], int] = field(default_factory=dict)
    _turn: int = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:
                log.exception("demo ticker: a tick failed")

    def watched(self) -> list[uuid.UUID]:
        """Products whose trend room has a subscriber on this process."""
        found = set()
        for audience in self.hub.audiences():
            room = bus.room_of_audience(audience)
            product = rooms.trend_product(room) if room is not None else None
            if product is None:
                continue
            try:
                found.add(uuid.UUID(product))
            except ValueError:
                continue
        return sorted(found)

    async def featured(self) -> list[uuid.UUID]:
        """The store-comparison's first products, computed once there are any (a ticker that started before its
        data was loaded keeps looking, rather than tick nothing for the life of the process)."""
        if not self._featured:
            async with self.sessionmaker() as session:
                snapshot = await store_comparison_snapshot(session)
            self._featured = [uuid.UUID(p["product_id"]) for p in snapshot["products"][:FEATURED_PRODUCTS]]
        return self._featured

    async def tick(self) -> dict[str, Any] | None:
        """Move one product's price at one store; the published payload, or None when there was nothing to move."""
        candidates = self.watched() or await self.featured()
        if not candidates:
            return None
        product_id = candidates[self._turn % len(candidates)]
        self._turn += 1
        async with self.sessionmaker() as session:
            latest = await prices.latest_prices(session, product_ids=[product_id])
        self.rng.shuffle(latest)
        today = date.today()
        for price in latest:
            regular, sale = self._next_price(product_id, price)
            async with self.sessionmaker.begin() as session:
                recorded = await prices.record_daily_price(
                    session,
                    product_id=product_id,
                    store_id=price.store_id,
                    observed_date=today,
                    regular_price=_money(regular),
                    sale_price=_money(sale) if sale else None,
                    source=SOURCE,
                )
            if not recorded:
                continue
            payload = {
                "product_id": str(product_id),
                "store_id": str(price.store_id),
                "store_slug": price.store_slug,
                "observed_date": today.isoformat(),
                "regular_price": float(_money(regular)),
                "sale_price": float(_money(sale)) if sale else None,
            }
            await self.ingest.publish(EventType.PRICES_UPDATED, payload, service=SERVICE, source="demo")
            log.debug(
                "demo ticker: simulated price of %s at %s: regular %s, sale %s (shelf price was %s)",
                product_id,
                price.store_slug,
                payload["regular_price"],
                payload["sale_price"],
                price.price,
            )
            return payload
        return None

    def _next_price(self, product_id: uuid.UUID, latest: prices.LatestPrice) -> tuple[int, int]:
        """(regular, sale or 0) in cents: around the first price seen, never the current regular price again."""
        current = int(latest.regular_price * 100)
        base = self._base.setdefault((product_id, latest.store_id), current)
        regular = shelf_cents(base * (1 + self.rng.uniform(-SWING, SWING)))
        if regular == current:
            regular = shelf_cents(current + (10 if current < 100 else self.rng.choice((-10, 10))))
        sale = 0
        if self.rng.random() < SALE_CHANCE:
            sale = shelf_cents(regular * self.rng.uniform(0.8, 0.92))
            if sale >= regular:
                sale = 0
        return regular, sale
