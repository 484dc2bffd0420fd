from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import insert, update

from hub import keys
from hub.store.models import NormalizedProduct, PriceHistory, Store, User
from rest.paging import encode_cursor
from tests import factories
from tests.responses import check_problem, midnight

Client = TestClient[Any, Any]
API = "/api/v1"


@dataclass
class World:
    ann: User
    kroger: Store
    meijer: Store
    milk: NormalizedProduct
    oat: NormalizedProduct
    chips: NormalizedProduct


async def _world(client: Client) -> World:
    """Three products created a day apart (chips newest); milk has prices at both stores, oat milk at Meijer."""
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        kroger = await factories.create_store(session, name="Kroger", slug="kroger")
        meijer = await factories.create_store(session, name="Meijer", slug="meijer")
        milk = await factories.create_product(
            session,
            canonical_name="Whole Milk 1 gal",
            brand="Dairy Best",
            category="dairy",
            size="1",
            size_unit="gal",
            upc_variants=["041250000001", "041250000002"],
        )
        oat = await factories.create_product(
            session, canonical_name="Oat Beverage", brand="OATLY", category="dairy", upc_variants=["190646000011"]
        )
        chips = await factories.create_product(
            session, canonical_name="Potato Chips 100%", brand=None, category="snacks", upc_variants=None
        )
        base = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
        for n, product in enumerate((milk, oat, chips)):
            await session.execute(
                update(NormalizedProduct)
                .where(NormalizedProduct.id == product.id)
                .values(created_at=base + timedelta(days=n))
            )
        today = datetime.now(UTC).date()
        await factories.create_price(
            session, product=milk, store=kroger, observed=today - timedelta(days=30), regular="3.99"
        )
        await factories.create_price(
            session, product=milk, store=kroger, observed=today - timedelta(days=2), regular="4.19", sale="3.79"
        )
        await factories.create_price(
            session, product=milk, store=meijer, observed=today - timedelta(days=5), regular="4.09"
        )
        await factories.create_price(
            session, product=milk, store=meijer, observed=today - timedelta(days=400), regular="2.99"
        )
        await factories.create_price(
            session, product=oat, store=meijer, observed=today - timedelta(days=1), regular="5.49"
        )
    return World(ann, kroger, meijer, milk, oat, chips)


async def _get(client: Client, user: User, path: str, headers: dict[str, str] | None = None) -> Any:
    return await client.get(path, headers={**await factories.auth_headers(client.app, user.id), **(headers or {})})


async def _ids(client: Client, user: User, path: str) -> list[str]:
    response = await _get(client, user, path)
    assert response.status == 200, await response.text()
    return [item["id"] for item in await response.json()]


async def test_list_products_newest_first(client: Client) -> None:
    w = await _world(client)
    response = await _get(client, w.ann, f"{API}/products")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert [item["id"] for item in body] == [str(w.chips.id), str(w.oat.id), str(w.milk.id)]
    assert body[2] == {
        "id": str(w.milk.id),
        "name": "Whole Milk 1 gal",
        "brand": "Dairy Best",
        "category": "dairy",
        "upc": "041250000001",
        "size": "1",
        "size_unit": "gal",
        "image_url": None,
    }
    assert body[0]["upc"] is None and body[0]["brand"] is None


async def test_search_matches_name_brand_or_exact_upc(client: Client) -> None:
    w = await _world(client)
    assert await _ids(client, w.ann, f"{API}/products?q=MILK") == [str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=oatly") == [str(w.oat.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=041250000002") == [str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=04125000000") == []
    assert await _ids(client, w.ann, f"{API}/products?q=100%25") == [str(w.chips.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=_") == []
    assert await _ids(client, w.ann, f"{API}/products?q=%20") == [str(w.chips.id), str(w.oat.id), str(w.milk.id)]


async def test_search_short_needles_and_any_case(client: Client) -> None:
    w = await _world(client)
    assert await _ids(client, w.ann, f"{API}/products?q=k") == [str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=Oa") == [str(w.oat.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=Ly") == [str(w.oat.id)]  # the brand, OATLY
    assert await _ids(client, w.ann, f"{API}/products?q=t") == [str(w.chips.id), str(w.oat.id), str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=wHOLE%20mILK") == [str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=OATLY") == [str(w.oat.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=zq") == []


async def test_search_folds_the_case_of_letters_beyond_ascii(client: Client) -> None:
    """Receipts print names in capitals, accents included: a search in any case finds them (SQLite's own lower()
    folds ASCII only; PostgreSQL folds by the database's UTF-8 locale)."""
    w = await _world(client)
    async with client.app[keys.sessionmaker].begin() as session:
        cafe = await factories.create_product(session, canonical_name="CAFÉ BUSTELO Espresso", brand="ÄPFEL Ωmega")
    for q in ("café", "CAFÉ", "Café%20bustelo", "äpfel", "ÄPFEL", "ωMEGA", "é%20b"):
        assert await _ids(client, w.ann, f"{API}/products?q={q}") == [str(cafe.id)], q
    assert await _ids(client, w.ann, f"{API}/products?q=cafe") == []


async def test_search_never_matches_across_name_and_brand(client: Client) -> None:
    w = await _world(client)  # milk: "Whole Milk 1 gal" by "Dairy Best"
    assert await _ids(client, w.ann, f"{API}/products?q=1%20gal") == [str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=dairy%20best") == [str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?q=gal%20dairy") == []
    assert await _ids(client, w.ann, f"{API}/products?q=gal%20d") == []
    assert await _ids(client, w.ann, f"{API}/products?q=beverage%20oatly") == []


async def test_search_wildcards_and_escapes_match_themselves(client: Client) -> None:
    w = await _world(client)
    async with client.app[keys.sessionmaker].begin() as session:
        underscore = await factories.create_product(session, canonical_name="Half_and_Half", brand=None)
        backslash = await factories.create_product(session, canonical_name=r"Back\Slash Soap", brand=None)
        slash = await factories.create_product(session, canonical_name="Ground Beef 90/10", brand=None)
        percent = await factories.create_product(session, canonical_name="Juice 50% Less Sugar", brand=None)
    cases = {
        "%25": [percent, w.chips],
        "_": [underscore],
        "f_a": [underscore],
        "half_and": [underscore],
        "half%25": [],
        "%5C": [backslash],
        "k%5Cs": [backslash],
        "back%5Cslash": [backslash],
        "%5C%5C": [],
        "%5Cs": [backslash],
        "/": [slash],
        "90/10": [slash],
        "0/1": [slash],
        "//": [],
        "50%25%20less": [percent],
        "100%25": [w.chips],
        "chips%20100%25": [w.chips],
        "s%20100": [w.chips],
        "%25%25": [],
        "j%25e": [],
        "j_ice": [],
        "'": [],
        "%22": [],
    }
    for q, expected in cases.items():
        found = await _ids(client, w.ann, f"{API}/products?q={q}")
        assert found == [str(p.id) for p in expected], q


async def test_search_pages_by_offset_and_cursor(client: Client) -> None:
    w = await _world(client)
    async with client.app[keys.sessionmaker].begin() as session:
        for n in range(5):
            await factories.create_product(session, canonical_name=f"Skim Milk {n}", brand="Dairy Best")
    everything = await _ids(client, w.ann, f"{API}/products?q=milk&page_size=100")
    assert len(everything) == 6 and everything[-1] == str(w.milk.id)
    assert await _ids(client, w.ann, f"{API}/products?q=milk&page_size=4&page=2") == everything[4:]
    for q in ("milk", "mi", "dairy%20b"):
        expected = await _ids(client, w.ann, f"{API}/products?q={q}&page_size=100")
        walked: list[str] = []
        path = f"{API}/products?q={q}&page_size=2"
        while True:
            response = await _get(client, w.ann, path)
            assert response.status == 200
            walked += [item["id"] for item in await response.json()]
            if "Link" not in response.headers:
                break
            link = response.headers["Link"]
            path = link[1 : link.index(">")]
        assert walked == expected, q


async def test_filter_by_category_and_store(client: Client) -> None:
    w = await _world(client)
    assert await _ids(client, w.ann, f"{API}/products?category=dairy") == [str(w.oat.id), str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?store_id={w.kroger.id}") == [str(w.milk.id)]
    assert await _ids(client, w.ann, f"{API}/products?store_id={w.meijer.id}&q=oat") == [str(w.oat.id)]
    assert await _ids(client, w.ann, f"{API}/products?category=frozen") == []


async def test_list_products_pages_by_cursor(client: Client) -> None:
    w = await _world(client)
    async with client.app[keys.sessionmaker].begin() as session:
        # same created_at as milk: the id breaks the tie
        twin = await factories.create_product(session, canonical_name="Twin")
        await session.execute(
            update(NormalizedProduct)
            .where(NormalizedProduct.id == twin.id)
            .values(created_at=datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
        )
    everything = await _ids(client, w.ann, f"{API}/products")
    walked: list[str] = []
    path = f"{API}/products?page_size=1"
    while True:
        response = await _get(client, w.ann, path)
        assert response.status == 200
        walked += [item["id"] for item in await response.json()]
        if "Link" not in response.headers:
            break
        link = response.headers["Link"]
        path = link[1 : link.index(">")]
    assert walked == everything and len(walked) == 4
    assert everything[2:] == sorted([str(w.milk.id), str(twin.id)], reverse=True)


async def test_list_products_rejects_bad_queries(client: Client) -> None:
    w = await _world(client)
    for query, field in (
        ("category=candy", "category"),
        ("store_id=x", "store_id"),
        ("q=" + "a" * 201, "q"),
        ("cursor=WyIxIl0", "cursor"),
        ("q=milk%00", "q"),
        ("cursor=" + encode_cursor(["9999-12-31T23:59:59-14:00", str(uuid.uuid4())], "/api/v1/products"), "cursor"),
        ("page_size=500", "page_size"),
    ):
        response = await _get(client, w.ann, f"{API}/products?{query}")
        body = await response.json()
        check_problem(response, body, 422, "validation")
        assert body["errors"][0]["field"] == field


async def test_product_routes_require_credentials(client: Client) -> None:
    w = await _world(client)
    for path in (f"{API}/products", f"{API}/products/{w.milk.id}", f"{API}/products/{w.milk.id}/prices"):
        response = await client.get(path)
        check_problem(response, await response.json(), 401, "unauthorized")


async def test_product_detail_has_current_price_per_store(client: Client) -> None:
    w = await _world(client)
    response = await _get(client, w.ann, f"{API}/products/{w.milk.id}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    today = datetime.now(UTC).date()
    assert body == {
        "id": str(w.milk.id),
        "name": "Whole Milk 1 gal",
        "brand": "Dairy Best",
        "category": "dairy",
        "upc": "041250000001",
        "size": "1",
        "size_unit": "gal",
        "image_url": None,
        "prices_by_store": [
            {
                "store_id": str(w.kroger.id),
                "store_name": "Kroger",
                "current_price": 3.79,
                "last_seen_at": midnight(today - timedelta(days=2)),
            },
            {
                "store_id": str(w.meijer.id),
                "store_name": "Meijer",
                "current_price": 4.09,
                "last_seen_at": midnight(today - timedelta(days=5)),
            },
        ],
    }
    cached = await _get(
        client, w.ann, f"{API}/products/{w.milk.id}", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert cached.status == 304
    chips = await (await _get(client, w.ann, f"{API}/products/{w.chips.id}")).json()
    assert chips["prices_by_store"] == []


async def test_unknown_products_are_404(client: Client) -> None:
    w = await _world(client)
    for path in (
        f"{API}/products/{uuid.uuid4()}",
        f"{API}/products/nope",
        f"{API}/products/{uuid.uuid4()}/prices",
        f"{API}/products/nope/prices",
    ):
        response = await _get(client, w.ann, path)
        check_problem(response, await response.json(), 404, "not-found")


async def test_price_history_oldest_first_within_a_year(client: Client) -> None:
    w = await _world(client)
    response = await _get(client, w.ann, f"{API}/products/{w.milk.id}/prices")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    today = datetime.now(UTC).date()

    def point(days: int, price: float, store: Store) -> dict[str, Any]:
        return {
            "date": midnight(today - timedelta(days=days)),
            "price": price,
            "store_id": str(store.id),
            "store_name": store.name,
        }

    assert body == {
        "product_id": str(w.milk.id),
        "product_name": "Whole Milk 1 gal",
        "data_points": [point(30, 3.99, w.kroger), point(5, 4.09, w.meijer), point(2, 3.79, w.kroger)],
    }
    kroger = await (await _get(client, w.ann, f"{API}/products/{w.milk.id}/prices?store_id={w.kroger.id}")).json()
    assert [p["price"] for p in kroger["data_points"]] == [3.99, 3.79]
    since = (today - timedelta(days=500)).isoformat()
    older = await (await _get(client, w.ann, f"{API}/products/{w.milk.id}/prices?since={since}")).json()
    assert [p["price"] for p in older["data_points"]] == [2.99, 3.99, 4.09, 3.79]
    bad = await _get(client, w.ann, f"{API}/products/{w.milk.id}/prices?since=someday")
    check_problem(bad, await bad.json(), 422, "validation")


async def test_price_history_keeps_the_newest_1000_points(client: Client) -> None:
    w = await _world(client)
    start = date.today() - timedelta(days=300)
    rows = [
        {
            "normalized_product_id": w.chips.id,
            "store_id": (w.kroger if n % 2 else w.meijer).id,
            "observed_date": start + timedelta(days=n // 4),
            "regular_price": Decimal(100 + n) / 100,
            "source": "catalog",
        }
        for n in range(1005)
    ]
    async with client.app[keys.sessionmaker].begin() as session:
        await session.execute(insert(PriceHistory), rows)
    body = await (await _get(client, w.ann, f"{API}/products/{w.chips.id}/prices")).json()
    points = body["data_points"]
    assert len(points) == 1000
    assert points[-1]["date"] == midnight(start + timedelta(days=1004 // 4))
    assert points[0]["date"] == midnight(start + timedelta(days=5 // 4))
    assert [p["date"] for p in points] == sorted(p["date"] for p in points)
