"""The PWA profile against the PWA itself: each hook's call, answered in the type the hook declares, with the values
the pages read (src/hooks/useApi.ts, src/types/api.ts and src/pages/*.tsx of cartsnitch/cartsnitch)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from hub import keys
from hub.store.models import NormalizedProduct, PriceTargetAlert, Purchase, Store, User
from rest.pwa import HISTORY_DAYS, MAX_LIST
from tests import factories
from tests.responses import all_pages, check_problem, expect_json

Client = TestClient[Any, Any]
PWA = "/pwa/api/v1"

# The shapes the PWA's types declare (src/types/api.ts of cartsnitch/cartsnitch, read at commit e3ed19f; its User is
# left out: no hook fetches one, the pages read the user from Better-Auth's session), as
# {type: {field: (type, optional)}} with TypeScript's names for JSON's types.
S, N, B = "string", "number", "boolean"
TYPES: dict[str, dict[str, tuple[str, bool]]] = {
    "Purchase": {
        "id": (S, False),
        "storeId": (S, False),
        "storeName": (S, False),
        "date": (S, False),
        "total": (N, False),
        "items": ("PurchaseItem[]", False),
    },
    "PurchaseItem": {
        "id": (S, False),
        "productId": (S, False),
        "name": (S, False),
        "quantity": (N, False),
        "price": (N, False),
        "unitPrice": (N, False),
    },
    "Product": {
        "id": (S, False),
        "name": (S, False),
        "brand": (S, False),
        "category": (S, False),
        "imageUrl": (S, True),
        "prices": ("ProductPrice[]", False),
    },
    "ProductPrice": {"storeId": (S, False), "storeName": (S, False), "price": (N, False), "lastUpdated": (S, False)},
    "PriceHistory": {"date": (S, False), "price": (N, False), "storeId": (S, False)},
    "Coupon": {
        "id": (S, False),
        "productId": (S, True),
        "storeName": (S, False),
        "description": (S, False),
        "discount": (S, False),
        "expiresAt": (S, False),
        "code": (S, True),
    },
    "PriceAlert": {
        "id": (S, False),
        "productId": (S, False),
        "productName": (S, False),
        "targetPrice": (N, False),
        "currentPrice": (N, False),
        "triggered": (B, False),
    },
}

# src/hooks/useApi.ts: each hook's path (after VITE_API_URL) and the type it reads the body as.
HOOKS = {
    "usePurchases": ("/purchases", "Purchase[]"),
    "usePurchase": ("/purchases/{purchase_id}", "Purchase"),
    "useProducts": ("/products", "Product[]"),
    "useProducts(search)": ("/products?q={search}", "Product[]"),
    "useProduct": ("/products/{product_id}", "Product"),
    "usePriceHistory": ("/products/{product_id}/prices", "PriceHistory[]"),
    "useCoupons": ("/coupons", "Coupon[]"),
    "usePriceAlerts": ("/alerts", "PriceAlert[]"),
}
# The catalogue has no product images: Product.imageUrl is optional and never sent.
NEVER_SENT = {("Product", "imageUrl")}


def _type_errors(value: Any, ts_type: str, where: str, seen: set[tuple[str, str]]) -> list[str]:
    """Where ``value`` is not what JavaScript would see for ``ts_type`` (``null`` is never a string or a number)."""
    if ts_type.endswith("[]"):
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not an array"]
        return [e for i, item in enumerate(value) for e in _type_errors(item, ts_type[:-2], f"{where}[{i}]", seen)]
    if ts_type == "string":
        return [] if isinstance(value, str) else [f"{where}: {value!r} is not a string"]
    if ts_type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not a number"]
    if ts_type == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a boolean"]
    fields = TYPES[ts_type]
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not a {ts_type} object"]
    errors = [f"{where}.{extra}: not in {ts_type}" for extra in value.keys() - fields.keys()]
    for field, (field_type, optional) in fields.items():
        if field not in value:
            if not optional:
                errors.append(f"{where}.{field}: missing")
            continue
        seen.add((ts_type, field))
        errors += _type_errors(value[field], field_type, f"{where}.{field}", seen)
    return errors


def _js_local_day(text: str) -> date:
    """The day ``new Date(text)`` shows in any time zone: a date-time string without an offset is local time."""
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", text), text
    return datetime.fromisoformat(text).date()


@dataclass
class World:
    ann: User
    bob: User
    kroger: Store
    meijer: Store
    milk: NormalizedProduct
    eggs: NormalizedProduct
    unpriced: NormalizedProduct
    big_shop: Purchase
    small_shop: Purchase
    today: date


async def _world(client: Client) -> World:
    today = datetime.now(UTC).date()
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        bob = await factories.create_user(session)
        kroger = await factories.create_store(session, name="Kroger", slug="kroger")
        meijer = await factories.create_store(session, name="Meijer", slug="meijer")
        milk = await factories.create_product(session, canonical_name="Whole Milk", brand="Horizon", category="dairy")
        eggs = await factories.create_product(session, canonical_name="Large Eggs", brand=None, category=None)
        unpriced = await factories.create_product(session, canonical_name="Saffron")
        await factories.create_price(
            session, product=milk, store=kroger, observed=today - timedelta(days=200), regular="2.99"
        )
        await factories.create_price(
            session, product=milk, store=kroger, observed=today - timedelta(days=30), regular="3.49"
        )
        await factories.create_price(
            session, product=milk, store=meijer, observed=today - timedelta(days=3), regular="3.79", sale="3.29"
        )
        await factories.create_price(
            session, product=milk, store=kroger, observed=today - timedelta(days=1), regular="3.59"
        )
        await factories.create_price(
            session, product=eggs, store=meijer, observed=today - timedelta(days=2), regular="4.19"
        )
        big_shop = await factories.create_purchase(
            session,
            user=ann,
            store=kroger,
            purchased=date(2024, 1, 15),
            items=[(milk, "2", "3.49"), (eggs, "1", "4.19"), (None, "1", "0.99")],
        )
        small_shop = await factories.create_purchase(
            session, user=ann, store=meijer, purchased=date(2024, 3, 2), items=[(milk, "1", "3.29")]
        )
        await factories.create_purchase(session, user=bob, store=kroger, purchased=date(2024, 5, 1), items=[])
        await factories.create_coupon(
            session,
            store=kroger,
            product=milk,
            description="$1 off Whole Milk",
            discount_type="fixed",
            discount_value=Decimal("1.00"),
            coupon_code="MILK1",
            valid_to=today + timedelta(days=10),
        )
        await factories.create_coupon(
            session,
            store=meijer,
            description=None,
            title="20% off your order of $50+",
            discount_type="percent",
            discount_value=Decimal("20.00"),
            valid_to=None,
        )
        await factories.create_coupon(
            session, store=meijer, product=eggs, discount_type="bogo", discount_value=Decimal("4.19")
        )
        await factories.create_coupon(session, store=kroger, valid_to=today - timedelta(days=1))
        session.add_all(
            [
                PriceTargetAlert(user_id=ann.id, normalized_product_id=milk.id, target_price=Decimal("3.00")),
                PriceTargetAlert(
                    user_id=ann.id,
                    normalized_product_id=eggs.id,
                    target_price=Decimal("4.50"),
                    triggered_at=datetime.now(UTC),
                    triggered_price=Decimal("4.19"),
                    triggered_store_id=meijer.id,
                ),
                PriceTargetAlert(user_id=ann.id, normalized_product_id=unpriced.id, target_price=Decimal("9.99")),
                PriceTargetAlert(user_id=bob.id, normalized_product_id=milk.id, target_price=Decimal("1.00")),
            ]
        )
    return World(ann, bob, kroger, meijer, milk, eggs, unpriced, big_shop, small_shop, today)


async def _get(client: Client, user: User, path: str) -> Any:
    response = await client.get(PWA + path, headers=await factories.auth_headers(client.app, user.id))
    return await expect_json(response)


async def test_every_hook_gets_the_type_it_declares(client: Client) -> None:
    w = await _world(client)
    ids = {"purchase_id": w.big_shop.id, "product_id": w.milk.id, "search": "milk"}
    seen: set[tuple[str, str]] = set()
    for hook, (path, ts_type) in HOOKS.items():
        body = await _get(client, w.ann, path.format(**ids))
        assert _type_errors(body, ts_type, hook, seen) == [], hook
        assert body, f"{hook} answered an empty {ts_type}: nothing was checked"
    every_field = {(name, field) for name, fields in TYPES.items() for field in fields}
    assert every_field - seen == NEVER_SENT


async def test_purchases_carry_their_items_and_store_slug(client: Client) -> None:
    w = await _world(client)
    listed = await _get(client, w.ann, "/purchases")
    assert [p["id"] for p in listed] == [str(w.small_shop.id), str(w.big_shop.id)]
    big = listed[1]
    assert big == await _get(client, w.ann, f"/purchases/{w.big_shop.id}")
    # Dashboard and Purchases: StoreIcon(storeId), storeName, the day, items.length, total.toFixed(2)
    assert (big["storeId"], big["storeName"]) == ("kroger", "Kroger")
    assert _js_local_day(big["date"]) == date(2024, 1, 15)
    assert big["total"] == 12.16
    assert len(big["items"]) == 3
    # PurchaseDetail: a line is quantity x unitPrice = price, and links to /products/{productId}
    lines = {item["name"]: item for item in big["items"]}
    milk_line, eggs_line, unknown = lines["Whole Milk"], lines["Large Eggs"], lines["UNKNOWN ITEM"]
    assert milk_line == {
        "id": milk_line["id"],
        "productId": str(w.milk.id),
        "name": "Whole Milk",
        "quantity": 2,
        "price": 6.98,
        "unitPrice": 3.49,
    }
    assert eggs_line["productId"] == str(w.eggs.id)
    assert unknown["productId"] == ""
    assert sum(item["price"] for item in big["items"]) == pytest.approx(big["total"])
    assert await _get(client, w.bob, "/purchases") != listed


async def test_products_list_every_store_price_by_slug(client: Client) -> None:
    w = await _world(client)
    listed = {p["id"]: p for p in await _get(client, w.ann, "/products")}
    assert len(listed) == 3
    unpriced, eggs, milk = (listed[str(p.id)] for p in (w.unpriced, w.eggs, w.milk))
    assert unpriced["prices"] == []
    assert (eggs["brand"], eggs["category"]) == ("", "other")
    assert milk == await _get(client, w.ann, f"/products/{w.milk.id}")
    assert (milk["name"], milk["brand"], milk["category"]) == ("Whole Milk", "Horizon", "dairy")
    # Products, ProductDetail and StoreComparison: the lowest price, the store that has it, when it was seen
    assert [(p["storeId"], p["storeName"], p["price"]) for p in milk["prices"]] == [
        ("kroger", "Kroger", 3.59),
        ("meijer", "Meijer", 3.29),
    ]
    assert [_js_local_day(p["lastUpdated"]) for p in milk["prices"]] == [
        w.today - timedelta(days=1),
        w.today - timedelta(days=3),
    ]
    assert [p["id"] for p in await _get(client, w.ann, "/products?q=EGGS")] == [str(w.eggs.id)]
    assert await _get(client, w.ann, "/products?q=nothing-like-this") == []


async def test_price_history_is_flat_oldest_first_over_the_charted_days(client: Client) -> None:
    w = await _world(client)
    history = await _get(client, w.ann, f"/products/{w.milk.id}/prices")
    # observed: Kroger 3.49 30 days ago, Meijer 3.29 3 days ago, Kroger 3.59 yesterday; each day that has an
    # observation carries every store's price that day
    assert [(_js_local_day(h["date"]), h["storeId"], h["price"]) for h in history] == [
        (w.today - timedelta(days=30), "kroger", 3.49),
        (w.today - timedelta(days=3), "kroger", 3.49),
        (w.today - timedelta(days=3), "meijer", 3.29),
        (w.today - timedelta(days=1), "kroger", 3.59),
        (w.today - timedelta(days=1), "meijer", 3.29),
    ]
    # ProductDetail charts rows of dateMap.get(h.date)[h.storeId] = h.price, in the order given, and draws a
    # store's line between consecutive rows that both hold its price: every line is unbroken from its first day
    rows: dict[str, dict[str, float]] = {}
    for h in history:
        rows.setdefault(h["date"], {})[h["storeId"]] = h["price"]
    for store in ("kroger", "meijer"):
        charted = [store in row for row in rows.values()]
        assert charted == sorted(charted), (store, charted)  # absent, then present on every later day
    assert all(w.today - _js_local_day(h["date"]) <= timedelta(days=HISTORY_DAYS) for h in history)
    assert await _get(client, w.ann, f"/products/{w.unpriced.id}/prices") == []


async def test_coupons_show_a_discount_text_and_a_local_expiry_day(client: Client) -> None:
    w = await _world(client)
    listed = {c["discount"]: c for c in await _get(client, w.ann, "/coupons")}
    assert len(listed) == 3  # the expired one is not listed
    bogo, store_wide, milk = listed["Buy 1 get 1 free"], listed["20% off"], listed["$1.00"]
    assert milk == {
        "id": milk["id"],
        "productId": str(w.milk.id),
        "storeName": "Kroger",
        "description": "$1 off Whole Milk",
        "discount": "$1.00",
        "expiresAt": f"{(w.today + timedelta(days=10)).isoformat()}T00:00:00",
        "code": "MILK1",
    }
    assert _js_local_day(milk["expiresAt"]) == w.today + timedelta(days=10)
    assert store_wide["description"] == "20% off your order of $50+"
    assert store_wide["expiresAt"] == ""
    assert "productId" not in store_wide and "code" not in store_wide
    assert (bogo["storeName"], bogo["productId"]) == ("Meijer", str(w.eggs.id))


async def test_alerts_are_the_users_target_prices(client: Client) -> None:
    w = await _world(client)
    listed = await _get(client, w.ann, "/alerts")
    by_product = {a["productId"]: a for a in listed}
    assert len(listed) == 3
    assert {k: v for k, v in by_product[str(w.milk.id)].items() if k != "id"} == {
        "productId": str(w.milk.id),
        "productName": "Whole Milk",
        "targetPrice": 3.0,
        "currentPrice": 3.29,
        "triggered": False,
    }
    eggs = by_product[str(w.eggs.id)]
    assert (eggs["triggered"], eggs["targetPrice"], eggs["currentPrice"]) == (True, 4.5, 4.19)
    assert by_product[str(w.unpriced.id)]["currentPrice"] == 0
    assert [a["productId"] for a in await _get(client, w.bob, "/alerts")] == [str(w.milk.id)]


async def test_email_in_address_is_the_api_one(client: Client) -> None:
    w = await _world(client)
    headers = await factories.auth_headers(client.app, w.ann.id)
    ours = await expect_json(await client.get(f"{PWA}/me/email-in-address", headers=headers))
    assert ours == await expect_json(await client.get("/api/v1/me/email-in-address", headers=headers))
    assert ours["email_address"] == f"receipts+{w.ann.email_inbound_token}@receipts.cartsnitch.com"


async def test_lists_are_complete_up_to_the_cap_then_linked(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        store = await factories.create_store(session)
        first = date(2020, 1, 1)
        session.add_all(
            Purchase(
                user_id=ann.id,
                store_id=store.id,
                receipt_id=f"r{n}",
                purchase_date=first + timedelta(days=n // 2),
                total=Decimal(n),
            )
            for n in range(MAX_LIST + 3)
        )
    headers = await factories.auth_headers(client.app, ann.id)
    pages = await all_pages(client, f"{PWA}/purchases", headers)
    assert [len(page) for page in pages] == [MAX_LIST, 3]
    days = [p["date"] for page in pages for p in page]
    assert days == sorted(days, reverse=True)
    assert len({p["id"] for page in pages for p in page}) == MAX_LIST + 3


async def _statements(client: Client, path: str, headers: dict[str, str]) -> tuple[int, list[str]]:
    """How many rows ``path`` lists, and the SQL statements it ran to list them."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        body = await expect_json(await client.get(PWA + path, headers=headers))
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return len(body), statements


@pytest.mark.parametrize("path", ["/purchases", "/products", "/coupons", "/alerts"])
async def test_a_list_costs_the_same_queries_for_many_rows(client: Client, path: str) -> None:
    w = await _world(client)
    headers = await factories.auth_headers(client.app, w.bob.id)
    await expect_json(await client.get(PWA + path, headers=headers))  # the credentials are resolved and cached
    few, before = await _statements(client, path, headers)
    async with client.app[keys.sessionmaker].begin() as session:
        for _ in range(30):
            product = await factories.create_product(session)
            await factories.create_price(session, product=product, store=w.kroger, observed=w.today, regular="1.00")
            await factories.create_price(session, product=product, store=w.meijer, observed=w.today, regular="1.10")
            await factories.create_purchase(
                session, user=w.bob, store=w.meijer, purchased=w.today, items=[(product, "1", "1.00")] * 3
            )
            await factories.create_coupon(session, store=w.kroger, product=product)
            session.add(PriceTargetAlert(user_id=w.bob.id, normalized_product_id=product.id, target_price=Decimal(1)))
    many, after = await _statements(client, path, headers)
    assert many == few + 30
    assert len(after) == len(before) <= 2, after


async def test_the_profile_takes_the_same_credentials(client: Client) -> None:
    w = await _world(client)
    response = await client.get(f"{PWA}/purchases")
    check_problem(response, await response.json(), 401, "unauthorized")
    async with client.app[keys.sessionmaker].begin() as session:
        token = await factories.create_session_token(session, user=w.ann)
    response = await client.get(f"{PWA}/purchases", cookies={"better-auth.session_token": f"{token}.c2ln"})
    assert len(await expect_json(response)) == 2
    client.session.cookie_jar.clear()
    response = await client.get(f"{PWA}/alerts", headers={"Authorization": f"Bearer {token}"})
    assert len(await expect_json(response)) == 3


async def test_bad_requests_are_problems(client: Client) -> None:
    w = await _world(client)
    headers = await factories.auth_headers(client.app, w.ann.id)
    for path in (
        f"/purchases/{w.small_shop.id}x",
        f"/purchases/{uuid.uuid4()}",
        f"/products/{uuid.uuid4()}",
        f"/products/{uuid.uuid4()}/prices",
        "/products/not-a-product/prices",
    ):
        response = await client.get(PWA + path, headers=headers)
        check_problem(response, await response.json(), 404, "not-found")
    bobs = await expect_json(
        await client.get(f"{PWA}/purchases", headers=await factories.auth_headers(client.app, w.bob.id))
    )
    response = await client.get(f"{PWA}/purchases/{bobs[0]['id']}", headers=headers)
    check_problem(response, await response.json(), 404, "not-found")
    for query in ("cursor=bm90LWEtY3Vyc29y", "cursor=%25%25", "q=" + "x" * 201, "q=a%00b"):
        response = await client.get(f"{PWA}/products?{query}", headers=headers)
        check_problem(response, await response.json(), 422, "validation")


async def test_the_profile_is_documented_under_its_own_tag(client: Client) -> None:
    spec = await expect_json(await client.get("/openapi.json"))
    ours = {path: item for path, item in spec["paths"].items() if path.startswith(PWA)}
    assert {path.removeprefix(PWA).split("?")[0] for path in ours} == {
        "/purchases",
        "/purchases/{purchase_id}",
        "/products",
        "/products/{product_id}",
        "/products/{product_id}/prices",
        "/coupons",
        "/alerts",
        "/me/email-in-address",
    }
    assert all(op["tags"] == ["pwa"] for item in ours.values() for op in item.values())
    assert "Link" in ours[f"{PWA}/purchases"]["get"]["responses"]["200"]["headers"]
