"""The demo price ticker: simulated prices recorded in price_history and published on the product's trend room."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from hub import keys
from hub.app import create_app
from hub.realtime.ticker import SERVICE, SWING, DemoTicker, shelf_cents
from hub.settings import Settings
from hub.store.models import PriceHistory, PurchaseItem
from tests import factories
from tests.conftest import make_settings

TODAY = date.today()


class SseReader:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 10) -> dict[str, str]:
        event: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(self.response.content.readline(), timeout)).decode().rstrip("\n")
            if not line:
                if "data" in event:
                    return event
                continue
            if not line.startswith(":"):
                key, _, value = line.partition(": ")
                event[key] = value


@pytest.fixture
async def world(server: TestServer) -> dict[str, Any]:
    async with server.app[keys.sessionmaker].begin() as session:
        north = await factories.create_store(session, name="North", slug="north")
        south = await factories.create_store(session, name="South", slug="south")
        tea = await factories.create_product(session, canonical_name="Green Tea")
        coffee = await factories.create_product(session, canonical_name="Coffee")
        for store in (north, south):
            await factories.create_price(
                session, product=tea, store=store, observed=TODAY - timedelta(days=3), regular="3.49", source="catalog"
            )
        await factories.create_price(session, product=coffee, store=north, observed=TODAY, regular="8.99")
    return {"north": north, "south": south, "tea": tea, "coffee": coffee}


def _ticker(server: TestServer, seed: int = 7) -> DemoTicker:
    app = server.app
    return DemoTicker(app[keys.sessionmaker], app[keys.ingest], app[keys.hub], 1.0, rng=random.Random(seed))


async def _rows(server: TestServer, product_id: Any) -> list[PriceHistory]:
    async with server.app[keys.sessionmaker]() as session:
        stmt = select(PriceHistory).where(PriceHistory.normalized_product_id == product_id)
        return list((await session.execute(stmt.order_by(PriceHistory.observed_date))).scalars())


@pytest.fixture
async def trend_stream(server: TestServer) -> AsyncIterator[Callable[[Any], Awaitable[SseReader]]]:
    async with aiohttp.ClientSession() as http:
        responses: list[aiohttp.ClientResponse] = []

        async def open_stream(product_id: Any) -> SseReader:
            response = await http.get(server.make_url("/api/v1/public/stream"), params={"room": f"trend:{product_id}"})
            assert response.status == 200
            responses.append(response)
            reader = SseReader(response)
            assert (await reader.next())["event"] == "snapshot"
            return reader

        yield open_stream
        for response in responses:
            response.close()


async def test_a_tick_records_the_price_and_publishes_it_on_the_watched_trend_room(
    server: TestServer, world: dict[str, Any], trend_stream: Callable[[Any], Awaitable[SseReader]]
) -> None:
    tea = world["tea"]
    stream = await trend_stream(tea.id)
    payload = await _ticker(server).tick()
    assert payload is not None and payload["product_id"] == str(tea.id)
    assert payload["store_slug"] in ("north", "south")
    assert payload["observed_date"] == TODAY.isoformat()
    event = await stream.next()
    assert event["event"] == "cartsnitch.prices.updated"
    envelope = orjson.loads(event["data"])
    assert envelope["service"] == SERVICE
    assert {k: envelope["payload"][k] for k in payload} == payload
    rows = [row for row in await _rows(server, tea.id) if row.observed_date == TODAY]
    assert len(rows) == 1
    assert rows[0].store_id == world["north" if payload["store_slug"] == "north" else "south"].id
    assert rows[0].regular_price == Decimal(str(payload["regular_price"]))
    effective = min(p for p in (payload["regular_price"], payload["sale_price"]) if p is not None)
    store_name = "North" if payload["store_slug"] == "north" else "South"
    # trend points keep the old gateway's date-backed timestamp form
    day = TODAY.isoformat() + "T00:00:00"
    today_points = [p for p in envelope["payload"]["snapshot"]["data_points"] if p["date"] == day]
    assert today_points == [
        {"date": day, "price": effective, "store_id": payload["store_id"], "store_name": store_name}
    ]
    async with aiohttp.ClientSession() as http:
        response = await http.get(server.make_url(f"/api/v1/public/trends/{tea.id}"))
        assert (await response.json())["data_points"] == envelope["payload"]["snapshot"]["data_points"]


async def test_ticks_keep_one_row_a_day_and_prices_near_where_they_started(
    server: TestServer, world: dict[str, Any], trend_stream: Callable[[Any], Awaitable[SseReader]]
) -> None:
    tea = world["tea"]
    await trend_stream(tea.id)
    ticker = _ticker(server, seed=11)
    published = [await ticker.tick() for _ in range(30)]
    assert all(p is not None and p["product_id"] == str(tea.id) for p in published)
    rows = await _rows(server, tea.id)
    assert len(rows) == 4  # two old observations, and one of today per store however often it ticked
    low, high = shelf_cents(349 * (1 - SWING)) - 10, shelf_cents(349 * (1 + SWING)) + 10
    for payload in published:
        assert payload is not None
        assert low <= round(payload["regular_price"] * 100) <= high
        assert round(payload["regular_price"] * 100) % 10 == 9
        if payload["sale_price"] is not None:
            assert payload["sale_price"] < payload["regular_price"]
    last_by_store = {p["store_id"]: p for p in published if p is not None}
    for row in rows:
        if row.observed_date == TODAY:
            assert float(row.regular_price) == last_by_store[str(row.store_id)]["regular_price"]


async def test_a_receipt_of_today_is_never_rewritten(
    server: TestServer, world: dict[str, Any], trend_stream: Callable[[Any], Awaitable[SseReader]]
) -> None:
    coffee = world["coffee"]
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        purchase = await factories.create_purchase(
            session, user=user, store=world["north"], purchased=TODAY, items=[(coffee, "1", "8.99")]
        )
        item_id = await session.scalar(select(PurchaseItem.id).where(PurchaseItem.purchase_id == purchase.id))
        await session.execute(
            update(PriceHistory).where(PriceHistory.normalized_product_id == coffee.id).values(purchase_item_id=item_id)
        )
    before = await _rows(server, coffee.id)
    await trend_stream(coffee.id)
    assert await _ticker(server).tick() is None
    after = await _rows(server, coffee.id)
    assert [(r.id, r.regular_price) for r in after] == [(before[0].id, Decimal("8.99"))]


async def test_without_watchers_it_moves_the_dashboards_opening_products(
    server: TestServer, world: dict[str, Any]
) -> None:
    payload = await _ticker(server).tick()
    assert payload is not None
    async with aiohttp.ClientSession() as http:
        response = await http.get(server.make_url("/api/v1/public/store-comparison"))
        opening = [p["product_id"] for p in (await response.json())["products"][:3]]
    assert payload["product_id"] in opening


async def test_a_ticker_started_before_its_data_ticks_once_the_data_is_there(server: TestServer) -> None:
    ticker = _ticker(server)
    assert await ticker.tick() is None  # an empty database: nothing to move yet
    async with server.app[keys.sessionmaker].begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        await factories.create_price(session, product=product, store=store, observed=TODAY, regular="2.49")
    payload = await ticker.tick()
    assert payload is not None and payload["product_id"] == str(product.id)


async def test_the_ticker_runs_in_the_app_and_stops_with_it(
    aiohttp_server: Callable[..., Awaitable[TestServer]], stack: tuple[str, str | None]
) -> None:
    settings: Settings = make_settings(*stack, demo_ticker_seconds=0.1)
    server = await aiohttp_server(create_app(settings))
    async with server.app[keys.sessionmaker].begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        await factories.create_price(session, product=product, store=store, observed=TODAY, regular="2.49")
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            response = await http.get(server.make_url(f"/api/v1/public/trends/{product.id}"))
            points = (await response.json())["data_points"]
            if points[-1]["price"] != 2.49:
                break
            await asyncio.sleep(0.05)
    assert points[-1]["price"] != 2.49
    await server.close()
