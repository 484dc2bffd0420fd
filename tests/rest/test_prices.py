from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hub import keys
from hub.infra import cache
from hub.store.models import Store
from tests import factories
from tests.responses import all_pages, expect_json, expect_problem, midnight

Client = TestClient[Any, Any]
TODAY = date.today()


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def _point(days_ago: int, price: float, store: Store) -> dict[str, Any]:
    return {"date": midnight(ago(days_ago)), "price": price, "store_id": str(store.id), "store_name": store.name}


async def _headers(client: Client) -> dict[str, str]:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    return await factories.auth_headers(client.app, user.id)


async def _trend_data(client: Client) -> dict[str, Any]:
    async with client.app[keys.sessionmaker].begin() as session:
        one = await factories.create_store(session, name="One")
        two = await factories.create_store(session, name="Two")
        soup = await factories.create_product(session, canonical_name="Soup", category="pantry")
        milk = await factories.create_product(session, canonical_name="Milk", category="dairy")
        await factories.create_price(session, product=soup, store=one, observed=ago(40), regular="1.00")
        await factories.create_price(session, product=soup, store=one, observed=ago(20), regular="2.00")
        await factories.create_price(session, product=soup, store=one, observed=ago(10), regular="3.00", sale="2.50")
        await factories.create_price(session, product=soup, store=one, observed=ago(5), regular="4.00")
        await factories.create_price(session, product=soup, store=two, observed=ago(5), regular="3.00")
        await factories.create_price(session, product=milk, store=two, observed=ago(3), regular="1.50")
    return {"one": one, "two": two, "soup": soup, "milk": milk}


async def test_trends_per_product(client: Client) -> None:
    data = await _trend_data(client)
    headers = await _headers(client)
    body = await expect_json(await client.get("/api/v1/prices/trends", headers=headers))
    assert [row["product_name"] for row in body] == ["Milk", "Soup"]
    soup = body[1]
    assert soup == {
        "product_id": str(data["soup"].id),
        "product_name": "Soup",
        "category": "pantry",
        "first_price": 2.0,
        "last_price": 3.5,
        "min_price": 2.0,
        "max_price": 4.0,
        "avg_price": 2.88,
        "change_pct": 75.0,
        "observations": 4,
        "last_observed_date": ago(5).isoformat(),
        # the old gateway's member: the window's observations, oldest first
        "data_points": [
            _point(20, 2.0, data["one"]),
            _point(10, 2.5, data["one"]),
            _point(5, 4.0, data["one"]),
            _point(5, 3.0, data["two"]),
        ],
    }
    assert body[0]["data_points"] == [_point(3, 1.5, data["two"])]
    assert body[0]["change_pct"] == 0.0
    assert body[0]["observations"] == 1

    dairy = await expect_json(await client.get("/api/v1/prices/trends?category=dairy", headers=headers))
    assert [row["product_id"] for row in dairy] == [str(data["milk"].id)]
    longer = await expect_json(await client.get("/api/v1/prices/trends?days=45&category=pantry", headers=headers))
    assert longer[0]["first_price"] == 1.0
    assert longer[0]["observations"] == 5


async def test_trends_per_category(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        store = await factories.create_store(session)
        cheap = await factories.create_product(session, category="pantry")
        dear = await factories.create_product(session, category="pantry")
        await factories.create_price(session, product=cheap, store=store, observed=ago(9), regular="1.00")
        await factories.create_price(session, product=cheap, store=store, observed=ago(2), regular="1.20")
        await factories.create_price(session, product=dear, store=store, observed=ago(6), regular="10.00")
        await factories.create_price(session, product=dear, store=store, observed=ago(4), regular="11.00")
        milk = await factories.create_product(session, category="dairy")
        await factories.create_price(session, product=milk, store=store, observed=ago(1), regular="2.00")
    headers = await _headers(client)
    body = await expect_json(await client.get("/api/v1/prices/trends?group_by=category", headers=headers))
    assert [row["category"] for row in body] == ["dairy", "pantry"]
    pantry = body[1]
    assert pantry["product_id"] is None and pantry["product_name"] is None
    assert pantry["first_price"] == 5.5
    assert pantry["last_price"] == 6.1
    assert pantry["min_price"] == 1.0
    assert pantry["max_price"] == 11.0
    assert pantry["avg_price"] == 5.8
    assert pantry["change_pct"] == pytest.approx(10.91)
    assert pantry["observations"] == 4
    assert pantry["data_points"] == [  # the category's mean price per store and day
        _point(9, 1.0, store),
        _point(6, 10.0, store),
        _point(4, 11.0, store),
        _point(2, 1.2, store),
    ]
    assert body[0]["data_points"] == [_point(1, 2.0, store)]


async def test_trends_page_with_a_cursor(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        store = await factories.create_store(session)
        for n in range(5):
            product = await factories.create_product(session)
            await factories.create_price(session, product=product, store=store, observed=ago(n % 2), regular="1.00")
    headers = await _headers(client)
    pages = await all_pages(client, "/api/v1/prices/trends?page_size=2", headers)
    assert [len(page) for page in pages] == [2, 2, 1]
    rows = [row for page in pages for row in page]
    keys_seen = [(row["last_observed_date"], row["product_id"]) for row in rows]
    assert len(set(keys_seen)) == 5
    assert keys_seen == sorted(keys_seen, reverse=True)
    second = await expect_json(await client.get("/api/v1/prices/trends?page_size=2&page=2", headers=headers))
    assert second == pages[1]


async def test_trends_are_cached_until_prices_change(client: Client) -> None:
    data = await _trend_data(client)
    headers = await _headers(client)
    first = await expect_json(await client.get("/api/v1/prices/trends?category=dairy", headers=headers))
    async with client.app[keys.sessionmaker].begin() as session:
        await factories.create_price(session, product=data["milk"], store=data["one"], observed=TODAY, regular="9.00")
    assert await expect_json(await client.get("/api/v1/prices/trends?category=dairy", headers=headers)) == first
    await client.app[keys.cache].invalidate(cache.PRICES)
    fresh = await expect_json(await client.get("/api/v1/prices/trends?category=dairy", headers=headers))
    assert fresh[0]["max_price"] == 9.0


async def test_increases(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        one = await factories.create_store(session, name="One")
        two = await factories.create_store(session, name="Two")
        eggs = await factories.create_product(session, canonical_name="Eggs")
        bread = await factories.create_product(session, canonical_name="Bread")
        jam = await factories.create_product(session, canonical_name="Jam")
        rice = await factories.create_product(session, canonical_name="Rice")
        await factories.create_price(session, product=eggs, store=one, observed=ago(60), regular="2.00")
        await factories.create_price(session, product=eggs, store=one, observed=ago(10), regular="2.20")
        await factories.create_price(session, product=eggs, store=two, observed=ago(15), regular="3.00")
        await factories.create_price(session, product=eggs, store=two, observed=ago(3), regular="3.10")
        await factories.create_price(session, product=bread, store=one, observed=ago(20), regular="5.00")
        await factories.create_price(session, product=bread, store=one, observed=ago(2), regular="4.00")
        await factories.create_price(session, product=jam, store=one, observed=ago(50), regular="1.00")
        await factories.create_price(session, product=jam, store=one, observed=ago(8), regular="1.05")
        await factories.create_price(session, product=jam, store=two, observed=ago(40), regular="1.00")
        await factories.create_price(session, product=jam, store=two, observed=ago(35), regular="2.00")
        await factories.create_price(session, product=rice, store=one, observed=ago(100), regular="1.00")
        await factories.create_price(session, product=rice, store=one, observed=ago(12), regular="2.00")
        await factories.create_price(session, product=rice, store=one, observed=ago(4), regular="1.50")
        await factories.create_price(session, product=rice, store=two, observed=ago(5), regular="9.00")
    headers = await _headers(client)
    body = await expect_json(await client.get("/api/v1/prices/increases", headers=headers))
    assert body == [
        {
            "product_id": str(jam.id),
            "product_name": "Jam",
            "store_id": str(one.id),
            "store_name": "One",
            "old_price": 1.0,
            "new_price": 1.05,
            "increase_pct": 5.0,
            "detected_at": midnight(ago(8)),
        },
        {
            "product_id": str(eggs.id),
            "product_name": "Eggs",
            "store_id": str(one.id),
            "store_name": "One",
            "old_price": 2.0,
            "new_price": 2.2,
            "increase_pct": 10.0,
            "detected_at": midnight(ago(10)),
        },
    ]
    lower = await expect_json(await client.get("/api/v1/prices/increases?min_pct=3", headers=headers))
    assert [(row["product_name"], row["store_name"], row["increase_pct"]) for row in lower] == [
        ("Eggs", "Two", 3.33),
        ("Jam", "One", 5.0),
        ("Eggs", "One", 10.0),
    ]
    higher = await expect_json(await client.get("/api/v1/prices/increases?min_pct=7.5", headers=headers))
    assert [row["product_name"] for row in higher] == ["Eggs"]
    wider = await expect_json(await client.get("/api/v1/prices/increases?days=40&min_pct=50", headers=headers))
    assert [(row["product_name"], row["store_name"], row["old_price"]) for row in wider] == [("Jam", "Two", 1.0)]


async def test_increases_use_the_effective_price_and_page(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        store = await factories.create_store(session)
        for n in range(3):
            product = await factories.create_product(session)
            await factories.create_price(
                session, product=product, store=store, observed=ago(9), regular="5.00", sale="2.00"
            )
            await factories.create_price(session, product=product, store=store, observed=ago(1 + n % 2), regular="5.00")
    headers = await _headers(client)
    pages = await all_pages(client, "/api/v1/prices/increases?page_size=2", headers)
    assert [len(page) for page in pages] == [2, 1]
    rows = [row for page in pages for row in page]
    assert {row["increase_pct"] for row in rows} == {150.0}
    assert {row["old_price"] for row in rows} == {2.0}
    assert len({row["product_id"] for row in rows}) == 3
    assert [row["detected_at"] for row in rows] == sorted((row["detected_at"] for row in rows), reverse=True)


async def test_comparison(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        alpha = await factories.create_store(session, name="Alpha")
        beta = await factories.create_store(session, name="Beta")
        oats = await factories.create_product(session, canonical_name="Oats")
        tea = await factories.create_product(session, canonical_name="Tea")
        await factories.create_price(session, product=oats, store=alpha, observed=ago(30), regular="9.99")
        await factories.create_price(session, product=oats, store=alpha, observed=ago(2), regular="4.00", sale="3.50")
        await factories.create_price(session, product=oats, store=beta, observed=ago(5), regular="3.80")
        await factories.create_price(session, product=tea, store=beta, observed=ago(1), regular="2.25")
    headers = await _headers(client)
    unknown = uuid.uuid4()
    body = await expect_json(
        await client.get(
            f"/api/v1/prices/comparison?product_ids={tea.id},{unknown}&product_ids={oats.id}", headers=headers
        )
    )
    assert body == [
        {
            "product_id": str(tea.id),
            "product_name": "Tea",
            "prices": [
                {
                    "store_id": str(beta.id),
                    "store_name": "Beta",
                    "price": 2.25,
                    "regular_price": 2.25,
                    "observed_date": ago(1).isoformat(),
                    "current_price": 2.25,
                    "last_seen_at": midnight(ago(1)),
                }
            ],
        },
        {
            "product_id": str(oats.id),
            "product_name": "Oats",
            "prices": [
                {
                    "store_id": str(alpha.id),
                    "store_name": "Alpha",
                    "price": 3.5,
                    "regular_price": 4.0,
                    "observed_date": ago(2).isoformat(),
                    "current_price": 3.5,
                    "last_seen_at": midnight(ago(2)),
                },
                {
                    "store_id": str(beta.id),
                    "store_name": "Beta",
                    "price": 3.8,
                    "regular_price": 3.8,
                    "observed_date": ago(5).isoformat(),
                    "current_price": 3.8,
                    "last_seen_at": midnight(ago(5)),
                },
            ],
        },
    ]
    assert (
        await expect_json(await client.get(f"/api/v1/prices/comparison?product_ids={unknown}", headers=headers)) == []
    )


@pytest.mark.parametrize(
    "path",
    ["/api/v1/prices/trends", "/api/v1/prices/increases", f"/api/v1/prices/comparison?product_ids={uuid.UUID(int=1)}"],
)
async def test_prices_require_auth(client: Client, path: str) -> None:
    body = await expect_problem(await client.get(path), 401)
    assert body["code"] == "UNAUTHORIZED"


async def test_bad_input_is_422(client: Client) -> None:
    headers = await _headers(client)
    too_many = ",".join(str(uuid.uuid4()) for _ in range(51))
    cases = {
        "/api/v1/prices/trends?days=0": "days",
        "/api/v1/prices/trends?days=366": "days",
        "/api/v1/prices/trends?category=candy": "category",
        "/api/v1/prices/trends?group_by=brand": "group_by",
        "/api/v1/prices/trends?cursor=not-a-cursor": "cursor",
        "/api/v1/prices/trends?group_by=product&cursor=WyIyMDI2LTAxLTAxIiwiZGFpcnkiXQ": "cursor",
        "/api/v1/prices/increases?min_pct=-1": "min_pct",
        "/api/v1/prices/increases?min_pct=1001": "min_pct",
        "/api/v1/prices/increases?min_pct=NaN": "min_pct",
        "/api/v1/prices/increases?days=400": "days",
        "/api/v1/prices/comparison": "product_ids",
        "/api/v1/prices/comparison?product_ids=": "product_ids",
        "/api/v1/prices/comparison?product_ids=nope": "product_ids.0",
        f"/api/v1/prices/comparison?product_ids={too_many}": "product_ids",
    }
    for url, field in cases.items():
        body = await expect_problem(await client.get(url, headers=headers), 422)
        assert body["code"] == "VALIDATION_ERROR"
        assert field in [error["field"] for error in body["errors"]], (url, body)


async def test_the_price_recorded_last_on_the_newest_day_is_the_current_one(client: Client) -> None:
    """Two observations on one day at one store (the price changed that afternoon): the later one is current on
    every route that shows a current price, whichever of the two random ids sorts higher."""
    async with client.app[keys.sessionmaker].begin() as session:
        shop = await factories.create_store(session, name="Shop")
        jam = await factories.create_product(session, canonical_name="Jam")
        morning = datetime(2026, 1, 1, 9, tzinfo=UTC)
        # the morning's price has the higher id: ordered by id, it would be the current one
        for price, row_id, recorded in (("10.49", 2**128 - 1, morning), ("7.77", 1, morning + timedelta(hours=6))):
            await factories.create_price(
                session,
                product=jam,
                store=shop,
                observed=ago(1),
                regular=price,
                id=uuid.UUID(int=row_id),
                created_at=recorded,
            )
    headers = await _headers(client)
    comparison = await expect_json(await client.get(f"/api/v1/prices/comparison?product_ids={jam.id}", headers=headers))
    assert [p["price"] for p in comparison[0]["prices"]] == [7.77]
    product = await expect_json(await client.get(f"/api/v1/products/{jam.id}", headers=headers))
    assert [p["current_price"] for p in product["prices_by_store"]] == [7.77]
    pwa = await expect_json(await client.get(f"/pwa/api/v1/products/{jam.id}", headers=headers))
    assert [p["price"] for p in pwa["prices"]] == [7.77]
    history = await expect_json(await client.get(f"/pwa/api/v1/products/{jam.id}/prices", headers=headers))
    assert [p["price"] for p in history] == [7.77]  # the store's price that day: the one recorded last
