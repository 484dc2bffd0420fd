from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient

from hub import keys
from hub.store.models import Purchase, PurchaseItem, Store, User
from tests import factories
from tests.responses import check_problem

Client = TestClient[Any, Any]
API = "/api/v1"


@dataclass
class World:
    ann: User
    bob: User
    kroger: Store
    meijer: Store
    p1: Purchase
    p2: Purchase
    p2b: Purchase
    p3: Purchase
    p4: Purchase
    bobs: Purchase


async def _raw_item(
    session: Any,
    purchase: Purchase,
    name: str,
    price: str,
    category_raw: str | None,
    product_id: uuid.UUID | None = None,
) -> None:
    session.add(
        PurchaseItem(
            purchase_id=purchase.id,
            product_name_raw=name,
            quantity=Decimal(1),
            unit_price=Decimal(price),
            extended_price=Decimal(price),
            category_raw=category_raw,
            normalized_product_id=product_id,
        )
    )
    await session.flush()


async def _world(client: Client) -> World:
    """Ann's five purchases (totals 9.48, 5.48, 1.00, 10.00, 6.00) at two stores, and one of Bob's."""
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        bob = await factories.create_user(session)
        kroger = await factories.create_store(session, name="Kroger", slug="kroger")
        meijer = await factories.create_store(session, name="Meijer", slug="meijer")
        milk = await factories.create_product(session, canonical_name="Whole Milk", category="dairy")
        bread = await factories.create_product(session, canonical_name="Bread", category="bakery")
        chips = await factories.create_product(session, canonical_name="Chips", category=None)
        p1 = await factories.create_purchase(
            session,
            user=ann,
            store=kroger,
            purchased=date(2024, 1, 15),
            items=[(milk, "2", "3.49"), (bread, "1", "2.50")],
        )
        p2 = await factories.create_purchase(
            session,
            user=ann,
            store=meijer,
            purchased=date(2024, 2, 3),
            items=[(milk, "1", "3.29")],
            total=Decimal("5.48"),
        )
        await _raw_item(session, p2, "BANANAS", "1.20", " Produce ")
        await _raw_item(session, p2, "MYSTERY", "0.99", None)
        p2b = await factories.create_purchase(
            session, user=ann, store=meijer, purchased=date(2024, 2, 3), total=Decimal("1.00")
        )
        p3 = await factories.create_purchase(
            session, user=ann, store=kroger, purchased=date(2024, 2, 4), total=Decimal("10.00")
        )
        p4 = await factories.create_purchase(
            session,
            user=ann,
            store=meijer,
            purchased=date(2025, 1, 1),
            items=[(milk, "1", "4.00")],
            total=Decimal("6.00"),
        )
        await _raw_item(session, p4, "CHIPS", "2.00", "SNACKS", chips.id)
        bobs = await factories.create_purchase(
            session, user=bob, store=kroger, purchased=date(2024, 2, 4), items=[(bread, "3", "33.33")]
        )
    return World(ann, bob, kroger, meijer, p1, p2, p2b, p3, p4, bobs)


async def _get(client: Client, user: User, path: str) -> Any:
    return await client.get(path, headers=await factories.auth_headers(client.app, user.id))


async def test_list_purchases_newest_first_with_item_counts(client: Client) -> None:
    w = await _world(client)
    response = await _get(client, w.ann, f"{API}/purchases")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Link" not in response.headers
    body = await response.json()
    same_day = sorted([w.p2, w.p2b], key=lambda p: p.id, reverse=True)
    assert [item["id"] for item in body] == [str(p.id) for p in (w.p4, w.p3, *same_day, w.p1)]
    assert body[-1] == {
        "id": str(w.p1.id),
        "store_id": str(w.kroger.id),
        "store_name": "Kroger",
        "purchased_at": "2024-01-15T00:00:00",
        "total": 9.48,
        "item_count": 2,
    }
    assert {item["id"]: item["item_count"] for item in body}[str(w.p2.id)] == 3
    assert {item["id"]: item["item_count"] for item in body}[str(w.p3.id)] == 0
    assert str(w.bobs.id) not in {item["id"] for item in body}


async def test_list_purchases_filters_by_store_and_dates(client: Client) -> None:
    w = await _world(client)
    by_store = await (await _get(client, w.ann, f"{API}/purchases?store_id={w.kroger.id}")).json()
    assert [item["id"] for item in by_store] == [str(w.p3.id), str(w.p1.id)]
    ranged = await (await _get(client, w.ann, f"{API}/purchases?since=2024-02-03&until=2024-02-04")).json()
    assert {item["id"] for item in ranged} == {str(w.p2.id), str(w.p2b.id), str(w.p3.id)}
    one_day = await (await _get(client, w.ann, f"{API}/purchases?since=2024-02-04&until=2024-02-04")).json()
    assert [item["id"] for item in one_day] == [str(w.p3.id)]


async def test_list_purchases_pages_with_link_and_offset(client: Client) -> None:
    w = await _world(client)
    first = await _get(client, w.ann, f"{API}/purchases?page_size=2&store_id={w.meijer.id}")
    assert first.status == 200
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"') and "cursor=" in link and f"store_id={w.meijer.id}" in link
    second = await _get(client, w.ann, link[1 : link.index(">")])
    assert second.status == 200
    assert "Link" not in second.headers
    walked = [item["id"] for item in await first.json()] + [item["id"] for item in await second.json()]
    everything = [
        item["id"] for item in await (await _get(client, w.ann, f"{API}/purchases?store_id={w.meijer.id}")).json()
    ]
    assert walked == everything and len(walked) == 3
    by_offset = await (await _get(client, w.ann, f"{API}/purchases?page_size=2&page=2")).json()
    all_ids = [item["id"] for item in await (await _get(client, w.ann, f"{API}/purchases")).json()]
    assert [item["id"] for item in by_offset] == all_ids[2:4]


async def test_list_purchases_rejects_bad_queries(client: Client) -> None:
    w = await _world(client)
    for query, field in (
        ("since=2024-03-01&until=2024-02-01", "since"),
        ("since=yesterday", "since"),
        ("store_id=42", "store_id"),
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("page=0", "page"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WyJ4IiwieSJd", "cursor"),
    ):
        response = await _get(client, w.ann, f"{API}/purchases?{query}")
        body = await response.json()
        check_problem(response, body, 422, "validation")
        assert body["errors"][0]["field"] == field, query


async def test_purchase_detail_has_line_items(client: Client) -> None:
    w = await _world(client)
    response = await _get(client, w.ann, f"{API}/purchases/{w.p1.id}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    items = body.pop("line_items")
    assert body == {
        "id": str(w.p1.id),
        "store_id": str(w.kroger.id),
        "store_name": "Kroger",
        "purchased_at": "2024-01-15T00:00:00",
        "total": 9.48,
        "item_count": 2,
        "subtotal": 9.48,
        "tax": 0.0,
        "savings_total": 0.0,
        "receipt_id": w.p1.receipt_id,
        "store_location_id": None,
    }
    by_name = {item["name"]: item for item in items}
    assert set(by_name) == {"Whole Milk", "Bread"}
    milk = by_name["Whole Milk"]
    assert milk["quantity"] == 2 and milk["unit_price"] == 3.49 and milk["total_price"] == 6.98
    assert milk["product_id"] is not None and set(milk) == {
        "id",
        "product_id",
        "name",
        "quantity",
        "unit_price",
        "total_price",
    }
    raw = await (await _get(client, w.ann, f"{API}/purchases/{w.p2.id}")).json()
    assert {item["name"]: item["product_id"] for item in raw["line_items"]}["MYSTERY"] is None


async def test_purchase_detail_hides_other_users_and_bad_ids(client: Client) -> None:
    w = await _world(client)
    for path in (f"{API}/purchases/{w.bobs.id}", f"{API}/purchases/{uuid.uuid4()}", f"{API}/purchases/not-a-uuid"):
        response = await _get(client, w.ann, path)
        check_problem(response, await response.json(), 404, "not-found")


async def test_purchase_routes_require_credentials(client: Client) -> None:
    w = await _world(client)
    for path in (f"{API}/purchases", f"{API}/purchases/stats", f"{API}/purchases/{w.p1.id}"):
        response = await client.get(path)
        check_problem(response, await response.json(), 401, "unauthorized")


async def test_stats_sum_by_store_category_and_period(client: Client) -> None:
    w = await _world(client)
    response = await _get(client, w.ann, f"{API}/purchases/stats")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body == {
        "total_spent": 31.96,
        "purchase_count": 5,
        "by_store": {"Kroger": 19.48, "Meijer": 12.48},
        "by_category": {"bakery": 2.5, "dairy": 14.27, "other": 0.99, "produce": 1.2, "snacks": 2.0},
        "by_period": {"2024-01": 9.48, "2024-02": 16.48, "2025-01": 6.0},
    }
    assert list(body["by_period"]) == ["2024-01", "2024-02", "2025-01"]
    year = await (await _get(client, w.ann, f"{API}/purchases/stats?period=year")).json()
    assert year["by_period"] == {"2024": 25.96, "2025": 6.0}
    week = await (await _get(client, w.ann, f"{API}/purchases/stats?period=week")).json()
    assert week["by_period"] == {"2024-01-15": 9.48, "2024-01-29": 16.48, "2024-12-30": 6.0}


async def test_stats_respect_the_date_range_and_other_users(client: Client) -> None:
    w = await _world(client)
    body = await (await _get(client, w.ann, f"{API}/purchases/stats?since=2024-02-01&until=2024-12-31")).json()
    assert body["total_spent"] == 16.48 and body["purchase_count"] == 3
    assert body["by_store"] == {"Kroger": 10.0, "Meijer": 6.48}
    assert body["by_category"] == {"dairy": 3.29, "other": 0.99, "produce": 1.2}
    bobs = await (await _get(client, w.bob, f"{API}/purchases/stats")).json()
    assert bobs["total_spent"] == 99.99 and bobs["by_category"] == {"bakery": 99.99}
    empty = await (await _get(client, w.ann, f"{API}/purchases/stats?since=2030-01-01")).json()
    assert empty == {"total_spent": 0, "purchase_count": 0, "by_store": {}, "by_category": {}, "by_period": {}}


async def test_stats_reject_bad_queries(client: Client) -> None:
    w = await _world(client)
    for query in ("period=day", "since=2024-03-01&until=2024-02-01", "until=2024-02-30"):
        response = await _get(client, w.ann, f"{API}/purchases/stats?{query}")
        check_problem(response, await response.json(), 422, "validation")
