from __future__ import annotations

import csv
import math
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

import hub
from hub import keys
from hub.infra import cache
from hub.store.models import Store
from tests import factories
from tests.responses import expect_json, expect_problem, midnight

Client = TestClient[Any, Any]
TODAY = date.today()
CPI_DIR = Path(hub.__file__).parent / "data" / "cpi"


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def month_label(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def months_between(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    out = []
    while month_label(year, month) <= last:
        out.append(month_label(year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def published(series_id: str) -> dict[str, Decimal]:
    """The shipped CSV, read here without the hub's reader."""
    with (CPI_DIR / f"{series_id}.csv").open(newline="", encoding="utf-8") as handle:
        return {f"{row['year']}-{row['period'][1:]}": Decimal(row["value"]) for row in csv.DictReader(handle)}


async def _trend_product(client: Client) -> dict[str, Any]:
    async with client.app[keys.sessionmaker].begin() as session:
        north = await factories.create_store(session, name="North")
        south = await factories.create_store(session, name="South")
        beans = await factories.create_product(session, canonical_name="Beans", category="pantry")
        await factories.create_price(session, product=beans, store=north, observed=ago(120), regular="0.99")
        await factories.create_price(session, product=beans, store=south, observed=ago(30), regular="1.29")
        await factories.create_price(session, product=beans, store=north, observed=ago(30), regular="1.19")
        await factories.create_price(session, product=beans, store=north, observed=ago(2), regular="1.39", sale="1.09")
    return {"north": north, "south": south, "beans": beans}


async def test_public_trend(client: Client) -> None:
    data = await _trend_product(client)
    north, south, beans = data["north"], data["south"], data["beans"]
    body = await expect_json(await client.get(f"/api/v1/public/trends/{beans.id}"))
    assert body == {
        "product_id": str(beans.id),
        "product_name": "Beans",
        "data_points": [
            {"date": midnight(ago(30)), "price": 1.19, "store_id": str(north.id), "store_name": "North"},
            {"date": midnight(ago(30)), "price": 1.29, "store_id": str(south.id), "store_name": "South"},
            {"date": midnight(ago(2)), "price": 1.09, "store_id": str(north.id), "store_name": "North"},
        ],
    }
    longer = await expect_json(await client.get(f"/api/v1/public/trends/{beans.id}?days=365"))
    assert [point["price"] for point in longer["data_points"]] == [0.99, 1.19, 1.29, 1.09]
    shorter = await expect_json(await client.get(f"/api/v1/public/trends/{beans.id}?days=7"))
    assert [point["date"] for point in shorter["data_points"]] == [midnight(ago(2))]


async def test_public_trend_of_an_unknown_product_is_404(client: Client) -> None:
    body = await expect_problem(await client.get(f"/api/v1/public/trends/{uuid.uuid4()}"), 404)
    assert body["code"] == "NOT_FOUND"
    await expect_problem(await client.get("/api/v1/public/trends/not-a-uuid"), 404)


async def test_public_trend_of_a_product_without_prices_in_the_window_is_empty(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        north = await factories.create_store(session, name="North")
        rice = await factories.create_product(session, canonical_name="Rice")
        await factories.create_price(session, product=rice, store=north, observed=ago(200), regular="2.49")
        never = await factories.create_product(session, canonical_name="Never priced")
    body = await expect_json(await client.get(f"/api/v1/public/trends/{rice.id}?days=30"))
    assert body == {"product_id": str(rice.id), "product_name": "Rice", "data_points": []}
    body = await expect_json(await client.get(f"/api/v1/public/trends/{never.id}"))
    assert body == {"product_id": str(never.id), "product_name": "Never priced", "data_points": []}


async def test_public_bad_input_is_422(client: Client) -> None:
    product = uuid.uuid4()
    too_many = ",".join(str(uuid.uuid4()) for _ in range(21))
    cases = {
        f"/api/v1/public/trends/{product}?days=0": "days",
        f"/api/v1/public/trends/{product}?days=366": "days",
        f"/api/v1/public/trends/{product}?days=ninety": "days",
        f"/api/v1/public/store-comparison?product_ids={too_many}": "product_ids",
        "/api/v1/public/store-comparison?product_ids=123": "product_ids.0",
        "/api/v1/public/store-comparison?category=candy": "category",
        "/api/v1/public/inflation?period=2y": "period",
        "/api/v1/public/inflation?category=candy": "category",
    }
    for url, field in cases.items():
        body = await expect_problem(await client.get(url), 422)
        assert body["code"] == "VALIDATION_ERROR"
        assert field in [error["field"] for error in body["errors"]], (url, body)


def _compared(store: Store, price: float, days_ago: int) -> dict[str, Any]:
    return {
        "store_id": str(store.id),
        "store_name": store.name,
        "price": price,
        "observed_date": ago(days_ago).isoformat(),
        # the old gateway's names, kept
        "current_price": price,
        "last_seen_at": midnight(ago(days_ago)),
    }


async def test_store_comparison_of_given_products(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        one = await factories.create_store(session, name="One")
        two = await factories.create_store(session, name="Two")
        apples = await factories.create_product(session, canonical_name="Apples")
        bread = await factories.create_product(session, canonical_name="Bread")
        cocoa = await factories.create_product(session, canonical_name="Cocoa")
        await factories.create_price(session, product=apples, store=one, observed=ago(20), regular="1.00")
        await factories.create_price(session, product=apples, store=one, observed=ago(3), regular="2.00")
        await factories.create_price(session, product=apples, store=two, observed=ago(4), regular="1.80")
        await factories.create_price(session, product=bread, store=one, observed=ago(5), regular="3.00")
        await factories.create_price(session, product=bread, store=two, observed=ago(5), regular="3.75", sale="3.50")
        await factories.create_price(session, product=cocoa, store=one, observed=ago(1), regular="1.00")
    ids = f"{cocoa.id},{apples.id},{uuid.uuid4()}&product_ids={bread.id}"
    body = await expect_json(await client.get(f"/api/v1/public/store-comparison?product_ids={ids}"))
    assert body["products"] == [
        {
            "product_id": str(cocoa.id),
            "product_name": "Cocoa",
            "cheapest_store_id": str(one.id),
            "prices": [_compared(one, 1.0, 1)],
        },
        {
            "product_id": str(apples.id),
            "product_name": "Apples",
            "cheapest_store_id": str(two.id),
            "prices": [
                _compared(one, 2.0, 3),
                _compared(two, 1.8, 4),
            ],
        },
        {
            "product_id": str(bread.id),
            "product_name": "Bread",
            "cheapest_store_id": str(one.id),
            "prices": [
                _compared(one, 3.0, 5),
                _compared(two, 3.5, 5),
            ],
        },
    ]
    assert body["stores"] == [
        {"store_id": str(one.id), "store_name": "One", "basket_total": 5.0, "items_priced": 3},
        {"store_id": str(two.id), "store_name": "Two", "basket_total": 5.3, "items_priced": 2},
    ]
    assert body["basket_product_ids"] == [str(apples.id), str(bread.id)]


async def test_store_comparison_by_category_takes_the_most_widely_priced(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        stores = [await factories.create_store(session, name=name) for name in ("A", "B", "C")]
        wide = await factories.create_product(session, canonical_name="Wide", category="dairy")
        narrow = await factories.create_product(session, canonical_name="Narrow", category="dairy")
        middle = await factories.create_product(session, canonical_name="Middle", category="dairy")
        pantry = await factories.create_product(session, canonical_name="Pantry", category="pantry")
        for product, count in ((wide, 3), (narrow, 1), (middle, 2), (pantry, 3)):
            for store in stores[:count]:
                await factories.create_price(session, product=product, store=store, observed=ago(1), regular="2.00")
    body = await expect_json(await client.get("/api/v1/public/store-comparison?category=dairy"))
    assert [p["product_name"] for p in body["products"]] == ["Wide", "Middle", "Narrow"]
    assert body["basket_product_ids"] == [str(wide.id)]
    assert [(s["store_name"], s["basket_total"], s["items_priced"]) for s in body["stores"]] == [
        ("A", 2.0, 3),
        ("B", 2.0, 2),
        ("C", 2.0, 1),
    ]
    everything = await expect_json(await client.get("/api/v1/public/store-comparison"))
    assert len(everything["products"]) == 4


async def test_store_comparison_with_no_common_product_has_no_basket_total(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        one = await factories.create_store(session, name="One")
        two = await factories.create_store(session, name="Two")
        tea = await factories.create_product(session)
        jam = await factories.create_product(session)
        await factories.create_price(session, product=tea, store=one, observed=ago(1), regular="2.00")
        await factories.create_price(session, product=jam, store=two, observed=ago(1), regular="3.00")
    body = await expect_json(await client.get(f"/api/v1/public/store-comparison?product_ids={tea.id},{jam.id}"))
    assert body["basket_product_ids"] == []
    assert [(s["store_name"], s["basket_total"], s["items_priced"]) for s in body["stores"]] == [
        ("One", None, 1),
        ("Two", None, 1),
    ]
    empty = await expect_json(await client.get(f"/api/v1/public/store-comparison?product_ids={uuid.uuid4()}"))
    assert empty == {"products": [], "stores": [], "basket_product_ids": []}


async def test_inflation_basket_index_and_cpi(client: Client) -> None:
    """Monthly (product, store) means, chained month to month with the geometric mean of matched relatives."""
    async with client.app[keys.sessionmaker].begin() as session:
        s1 = await factories.create_store(session)
        s2 = await factories.create_store(session)
        p1 = await factories.create_product(session, category="pantry")
        p2 = await factories.create_product(session, category="dairy")

        async def price(product: Any, store: Any, day: date, regular: str, sale: str | None = None) -> None:
            await factories.create_price(
                session, product=product, store=store, observed=day, regular=regular, sale=sale
            )

        await price(p1, s1, date(2025, 8, 4), "2.00")
        await price(p1, s1, date(2025, 8, 20), "2.20")
        await price(p2, s1, date(2025, 8, 9), "4.50", sale="4.00")
        await price(p1, s2, date(2025, 8, 9), "3.00")
        await price(p1, s1, date(2025, 9, 3), "2.31")
        await price(p2, s1, date(2025, 9, 30), "4.40")
        await price(p1, s1, date(2025, 10, 1), "2.31")
        await price(p2, s1, date(2025, 10, 15), "4.00")
        await price(p1, s2, date(2025, 10, 31), "3.30")
        await price(p1, s1, date(2025, 11, 2), "2.50")
        await price(p1, s2, date(2025, 11, 3), "3.63")
    body = await expect_json(await client.get("/api/v1/public/inflation?period=all-time"))

    aug, sep, oct_, nov = 100.0, 0.0, 0.0, 0.0
    sep = aug * math.sqrt((2.31 / 2.10) * (4.40 / 4.00))
    oct_ = sep * math.sqrt((2.31 / 2.31) * (4.00 / 4.40))
    nov = oct_ * math.sqrt((2.50 / 2.31) * (3.63 / 3.30))
    expected_index = {"2025-08": aug, "2025-09": sep, "2025-10": oct_, "2025-11": nov}
    expected_matched = {"2025-08": 0, "2025-09": 2, "2025-10": 2, "2025-11": 2}

    labels = months_between("2025-08", month_label(TODAY.year, TODAY.month))
    assert [m["month"] for m in body["months"]] == labels
    by_month = {m["month"]: m for m in body["months"]}
    for label in labels:
        month = by_month[label]
        if label in expected_index:
            assert month["basket_index"] == round(expected_index[label], 3), label
            assert month["matched_products"] == expected_matched[label], label
        else:
            assert month["basket_index"] is None, label
            assert month["matched_products"] == 0, label
    assert body["basket_change_pct"] == round(nov - 100, 2)
    assert any("2025-12" in note for note in body["notes"])

    food = published("CUUR0000SAF11")
    base = food["2025-08"]
    for label in labels:
        month = by_month[label]
        if label in food:
            assert month["cpi_value"] == float(food[label]), label
            assert month["cpi_index"] == float((food[label] / base * 100).quantize(Decimal("0.001"))), label
        else:
            assert month["cpi_value"] is None and month["cpi_index"] is None, label
    assert by_month["2025-10"]["cpi_value"] is None
    assert by_month["2025-09"]["cpi_value"] == float(food["2025-09"])
    last = max(label for label in labels if label in food)
    assert last == "2026-05"
    assert body["cpi_change_pct"] == float(((food[last] / base - 1) * 100).quantize(Decimal("0.01")))
    assert body["cpi"] == {
        "series_id": "CUUR0000SAF11",
        "title": "Food at home",
        "area": "U.S. city average",
        "base": "1982-84=100",
        "seasonally_adjusted": False,
        "matches_category": True,
        "first_month": "2015-01",
        "last_month": "2026-05",
        "missing_months": ["2025-10"],
        "source": "U.S. Bureau of Labor Statistics, CPI-U (see SOURCES.md)",
    }
    assert body["category"] is None and body["period"] == "all-time"
    # the old gateway's members
    assert body["cartsnitch_index"] == round(nov, 3)
    assert body["cpi_baseline"] == 100.0
    # pantry: (2.00 + 2.20 + 3.00 + 2.31 + 2.31 + 3.30 + 2.50 + 3.63) / 8 = 2.65625; dairy: (4.00 + 4.40 + 4.00) / 3,
    # with the effective price of the 4.50 that was on sale at 4.00
    assert body["categories"] == {"dairy": 4.13, "pantry": 2.66}


async def test_inflation_of_a_category_over_a_year(client: Client) -> None:
    current = month_label(TODAY.year, TODAY.month)
    start_year, start_month = (TODAY.year - 1, TODAY.month)
    async with client.app[keys.sessionmaker].begin() as session:
        store = await factories.create_store(session)
        milk = await factories.create_product(session, category="dairy")
        bread = await factories.create_product(session, category="bakery")
        await factories.create_price(session, product=milk, store=store, observed=TODAY.replace(day=1), regular="3.00")
        await factories.create_price(session, product=bread, store=store, observed=TODAY.replace(day=1), regular="9.00")
        previous = TODAY.replace(day=1) - timedelta(days=1)
        await factories.create_price(session, product=milk, store=store, observed=previous, regular="2.00")
    body = await expect_json(await client.get("/api/v1/public/inflation?category=dairy"))  # 1y by default
    labels = months_between(month_label(start_year, start_month), current)
    assert len(labels) == 13
    assert [m["month"] for m in body["months"]] == labels
    assert body["months"][-1]["basket_index"] == 150.0
    assert body["months"][-2]["basket_index"] == 100.0
    assert body["months"][-1]["matched_products"] == 1
    assert body["basket_change_pct"] == 50.0
    assert (body["cartsnitch_index"], body["cpi_baseline"], body["categories"]) == (150.0, 100.0, {"dairy": 2.5})
    assert body["cpi"]["series_id"] == "CUUR0000SEFJ" and body["cpi"]["matches_category"] is True
    dairy = published("CUUR0000SEFJ")
    with_cpi = [label for label in labels if label in dairy]
    by_month = {m["month"]: m for m in body["months"]}
    if with_cpi:
        assert by_month[with_cpi[0]]["cpi_index"] == 100.0
        for label in with_cpi:
            assert by_month[label]["cpi_value"] == float(dairy[label])
    for label in labels:
        if label not in dairy:
            assert by_month[label]["cpi_value"] is None

    frozen = await expect_json(await client.get("/api/v1/public/inflation?category=frozen&period=3m"))
    assert len(frozen["months"]) == 4
    assert frozen["cpi"]["series_id"] == "CUUR0000SAF11" and frozen["cpi"]["matches_category"] is False
    assert any("frozen" in note for note in frozen["notes"])
    assert all(m["basket_index"] is None for m in frozen["months"])
    assert frozen["basket_change_pct"] is None
    assert (frozen["cartsnitch_index"], frozen["cpi_baseline"], frozen["categories"]) == (100.0, 100.0, {})


async def test_public_routes_answer_if_none_match_with_304(client: Client) -> None:
    data = await _trend_product(client)
    for url in (
        f"/api/v1/public/trends/{data['beans'].id}",
        "/api/v1/public/store-comparison",
        "/api/v1/public/inflation",
    ):
        first = await client.get(url)
        assert first.status == 200
        etag = first.headers["ETag"]
        again = await client.get(url, headers={"If-None-Match": etag})
        assert again.status == 304, url
        assert again.headers["ETag"] == etag
        assert await again.read() == b""
        listed = await client.get(url, headers={"If-None-Match": f'"nope", W/{etag}'})
        assert listed.status == 304, url
        stale = await client.get(url, headers={"If-None-Match": '"stale"'})
        assert stale.status == 200, url
        assert stale.headers["Content-Type"].startswith("application/json")


async def test_public_routes_are_cached_until_prices_are_invalidated(client: Client) -> None:
    data = await _trend_product(client)
    urls = (
        f"/api/v1/public/trends/{data['beans'].id}",
        "/api/v1/public/store-comparison",
        "/api/v1/public/inflation?category=produce&period=1m",
    )
    before = {url: await (await client.get(url)).read() for url in urls}
    async with client.app[keys.sessionmaker].begin() as session:
        cheap = await factories.create_store(session, name="Cheap")
        await factories.create_price(session, product=data["beans"], store=cheap, observed=TODAY, regular="0.50")
        kale = await factories.create_product(session, category="produce")
        first_of_month = TODAY.replace(day=1)
        await factories.create_price(
            session, product=kale, store=cheap, observed=first_of_month - timedelta(days=1), regular="2.00"
        )
        await factories.create_price(session, product=kale, store=cheap, observed=first_of_month, regular="2.50")
    for url in urls:
        again = await client.get(url)
        assert again.status == 200
        assert await again.read() == before[url], url
    await client.app[keys.cache].invalidate(cache.PRICES)
    trend = await expect_json(await client.get(urls[0]))
    assert "Cheap" in [point["store_name"] for point in trend["data_points"]]
    comparison = await expect_json(await client.get(urls[1]))
    assert comparison["products"][0]["cheapest_store_id"] == str(cheap.id)
    inflation = await expect_json(await client.get(urls[2]))
    assert [m["basket_index"] for m in inflation["months"]] == [100.0, 125.0]


async def test_public_product_search_needs_no_sign_in(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        whole = await factories.create_product(
            session, canonical_name="Whole Milk", brand="Dairyland", category="dairy", upc_variants=["041303001234"]
        )
        oat = await factories.create_product(session, canonical_name="Oat Drink", brand="Milkless", category="dairy")
        await factories.create_product(session, canonical_name="Rye Bread", brand="Baker", category="bakery")
    found = await expect_json(await client.get("/api/v1/public/products", params={"q": "MILK"}))
    assert sorted(found, key=lambda p: p["name"]) == [
        {"id": str(oat.id), "name": "Oat Drink", "brand": "Milkless", "category": "dairy"},
        {"id": str(whole.id), "name": "Whole Milk", "brand": "Dairyland", "category": "dairy"},
    ]
    by_upc = await expect_json(await client.get("/api/v1/public/products", params={"q": "041303001234"}))
    assert [p["id"] for p in by_upc] == [str(whole.id)]
    bakery = await expect_json(await client.get("/api/v1/public/products", params={"category": "bakery"}))
    assert [p["name"] for p in bakery] == ["Rye Bread"]
    one = await expect_json(await client.get("/api/v1/public/products", params={"limit": "1"}))
    assert len(one) == 1
    assert await expect_json(await client.get("/api/v1/public/products", params={"q": "%"})) == []


async def test_public_product_search_is_capped(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        for n in range(25):
            await factories.create_product(session, canonical_name=f"Pasta {n}")
    assert len(await expect_json(await client.get("/api/v1/public/products", params={"q": "pasta"}))) == 10
    most = await expect_json(await client.get("/api/v1/public/products", params={"q": "pasta", "limit": "20"}))
    assert len(most) == 20
    for params in ({"limit": "21"}, {"limit": "0"}, {"q": "x" * 101}, {"category": "toys"}):
        body = await expect_problem(await client.get("/api/v1/public/products", params=params), 422)
        assert body["code"] == "VALIDATION_ERROR"


async def test_public_product_search_is_cached_until_products_change(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        await factories.create_product(session, canonical_name="Jasmine Rice")
    first = await client.get("/api/v1/public/products", params={"q": "rice"})
    assert len(await expect_json(first)) == 1
    assert first.headers["ETag"]
    again = await client.get(
        "/api/v1/public/products", params={"q": "rice"}, headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status == 304
    async with client.app[keys.sessionmaker].begin() as session:
        await factories.create_product(session, canonical_name="Basmati Rice")
    assert len(await expect_json(await client.get("/api/v1/public/products", params={"q": "rice"}))) == 1
    await client.app[keys.cache].invalidate(cache.PRODUCTS)
    assert len(await expect_json(await client.get("/api/v1/public/products", params={"q": "rice"}))) == 2
