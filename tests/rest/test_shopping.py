from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub import keys
from hub.app import create_app
from hub.store.models import NormalizedProduct, Store, User
from tests import factories
from tests.conftest import make_settings
from tests.responses import check_problem, midnight

Client = TestClient[Any, Any]
API = "/api/v1"
TODAY = datetime.now(UTC).date()
TODAY_IN_UTC = True


@dataclass
class World:
    ann: User
    bob: User
    aldi: Store
    kroger: Store
    products: list[NormalizedProduct]
    cereal: NormalizedProduct
    headers: dict[str, str]
    bob_headers: dict[str, str]


async def _world(client: Client) -> World:
    """Five products at $10.00 at Aldi and $10.50 at Kroger (the first is $12.00 at Aldi); Kroger takes $10 off a
    $50 trip; Aldi has an expired $5 coupon; "Honey Oat Cereal" is only at Aldi, at $4.00 with $1.00 off."""
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        bob = await factories.create_user(session)
        aldi = await factories.create_store(session, name="Aldi", slug=f"al{uuid.uuid4().hex[:8]}")
        kroger = await factories.create_store(session, name="Kroger", slug=f"kr{uuid.uuid4().hex[:8]}")
        products = [await factories.create_product(session, canonical_name=f"Staple {n}") for n in range(5)]
        for n, product in enumerate(products):
            await factories.create_price(
                session, product=product, store=aldi, observed=TODAY - timedelta(days=9), regular="99.00"
            )
            await factories.create_price(
                session,
                product=product,
                store=aldi,
                observed=TODAY - timedelta(days=1),
                regular="12.00" if n == 0 else "10.00",
            )
            await factories.create_price(
                session,
                product=product,
                store=kroger,
                observed=TODAY - timedelta(days=2),
                regular="11.00",
                sale="10.50",
            )
        cereal = await factories.create_product(session, canonical_name="Honey Oat Cereal")
        await factories.create_price(session, product=cereal, store=aldi, observed=TODAY, regular="4.00")
        await factories.create_coupon(
            session,
            store=kroger,
            title="$10 off $50",
            description="$10 off $50",
            discount_type="fixed",
            discount_value=Decimal("10"),
            min_purchase=Decimal("50"),
        )
        await factories.create_coupon(
            session,
            store=aldi,
            description="expired",
            discount_value=Decimal("5"),
            valid_from=TODAY - timedelta(days=9),
            valid_to=TODAY - timedelta(days=1),
        )
        await factories.create_coupon(
            session, store=aldi, product=cereal, description="$1 off cereal", discount_value=Decimal("1")
        )
    return World(
        ann,
        bob,
        aldi,
        kroger,
        products,
        cereal,
        await factories.auth_headers(client.app, ann.id),
        await factories.auth_headers(client.app, bob.id),
    )


def _items(products: list[NormalizedProduct]) -> list[dict[str, Any]]:
    return [{"product_id": str(p.id), "name": p.canonical_name, "quantity": 1} for p in products]


# --- saved lists ------------------------------------------------------------------------------------------------


async def test_shopping_list_lifecycle(client: Client) -> None:
    w = await _world(client)
    body = {
        "name": "Weekly",
        "items": [
            {"product_id": str(w.cereal.id), "name": "cereal", "quantity": 2},
            {"name": "bananas", "quantity": 1.5},
        ],
    }
    response = await client.post(f"{API}/shopping/lists", headers=w.headers, json=body)
    assert response.status == 201
    assert response.headers["Content-Type"].startswith("application/json")
    created = await response.json()
    assert response.headers["Location"] == f"{API}/shopping/lists/{created['id']}"
    assert created["name"] == "Weekly"
    assert [(i["product_id"], i["name"], i["quantity"]) for i in created["items"]] == [
        (str(w.cereal.id), "cereal", 2.0),
        (None, "bananas", 1.5),
    ]
    assert set(created) == {"id", "name", "items", "item_count", "created_at", "updated_at"}
    assert created["item_count"] == 2  # the old gateway's member

    response = await client.get(f"{API}/shopping/lists/{created['id']}", headers=w.headers)
    assert response.status == 200
    assert await response.json() == created

    replaced = {"name": "Weekend", "items": [{"name": "coffee", "quantity": 1}]}
    response = await client.put(f"{API}/shopping/lists/{created['id']}", headers=w.headers, json=replaced)
    assert response.status == 200
    updated = await response.json()
    assert updated["name"] == "Weekend" and [i["name"] for i in updated["items"]] == ["coffee"]
    assert updated["created_at"] == created["created_at"]
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(created["updated_at"])
    assert await (await client.get(f"{API}/shopping/lists/{created['id']}", headers=w.headers)).json() == updated

    response = await client.delete(f"{API}/shopping/lists/{created['id']}", headers=w.headers)
    assert response.status == 204
    response = await client.get(f"{API}/shopping/lists/{created['id']}", headers=w.headers)
    check_problem(response, await response.json(), 404, "not-found")
    response = await client.delete(f"{API}/shopping/lists/{created['id']}", headers=w.headers)
    check_problem(response, await response.json(), 404, "not-found")


async def test_shopping_lists_page_newest_first(client: Client) -> None:
    w = await _world(client)
    for name in ("first", "second", "third"):
        response = await client.post(f"{API}/shopping/lists", headers=w.headers, json={"name": name, "items": []})
        assert response.status == 201
    response = await client.get(f"{API}/shopping/lists?page_size=2", headers=w.headers)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    first = await response.json()
    link = response.headers["Link"]
    assert 'rel="next"' in link
    second = await client.get(link[link.index("<") + 1 : link.index(">")], headers=w.headers)
    assert "Link" not in second.headers
    assert [s["name"] for s in [*first, *await second.json()]] == ["third", "second", "first"]
    offset = await client.get(f"{API}/shopping/lists?page_size=2&page=2", headers=w.headers)
    assert [s["name"] for s in await offset.json()] == ["first"]


async def test_shopping_lists_of_another_user_are_invisible(client: Client) -> None:
    w = await _world(client)
    response = await client.post(f"{API}/shopping/lists", headers=w.bob_headers, json={"name": "Bob's", "items": []})
    bobs = (await response.json())["id"]
    assert await (await client.get(f"{API}/shopping/lists", headers=w.headers)).json() == []
    for method, body in (("GET", None), ("PUT", {"name": "mine now", "items": []}), ("DELETE", None)):
        response = await client.request(method, f"{API}/shopping/lists/{bobs}", headers=w.headers, json=body)
        check_problem(response, await response.json(), 404, "not-found")
    response = await client.get(f"{API}/shopping/lists/not-a-uuid", headers=w.headers)
    check_problem(response, await response.json(), 404, "not-found")
    still = await (await client.get(f"{API}/shopping/lists/{bobs}", headers=w.bob_headers)).json()
    assert still["name"] == "Bob's"


async def test_shopping_list_bodies_are_validated(client: Client) -> None:
    w = await _world(client)
    unknown = str(uuid.uuid4())
    cases = [
        (
            {
                "name": "x",
                "items": [{"name": "ok", "quantity": 1}, {"product_id": unknown, "name": "ghost", "quantity": 1}],
            },
            "items.1.product_id",
        ),
        ({"name": "", "items": []}, "name"),
        ({"name": "x", "items": [{"name": "zero", "quantity": 0}]}, "items.0.quantity"),
        ({"name": "x", "items": [{"name": "a", "quantity": 1}] * 201}, "items"),
        ({"name": "x", "items": [], "extra": 1}, "extra"),
        ({"name": "nul\x00name", "items": []}, "name"),
        ({"name": "x", "items": [{"name": "a", "quantity": 10000}]}, "items.0.quantity"),
    ]
    for body, field in cases:
        response = await client.post(f"{API}/shopping/lists", headers=w.headers, json=body)
        problem = await response.json()
        check_problem(response, problem, 422, "validation")
        assert problem["errors"][0]["field"] == field
    created = await (
        await client.post(f"{API}/shopping/lists", headers=w.headers, json={"name": "x", "items": []})
    ).json()
    response = await client.put(f"{API}/shopping/lists/{created['id']}", headers=w.headers, json=cases[0][0])
    check_problem(response, await response.json(), 422, "validation")
    # a replacement names its items (an empty list empties it): one that forgot them deletes nothing
    forgot = await client.put(f"{API}/shopping/lists/{created['id']}", headers=w.headers, json={"name": "y"})
    problem = await forgot.json()
    check_problem(forgot, problem, 422, "validation")
    assert [e["field"] for e in problem["errors"]] == ["items"]
    full = await client.post(
        f"{API}/shopping/lists", headers=w.headers, json={"name": "full", "items": [{"name": "a", "quantity": 1}] * 200}
    )
    assert full.status == 201


async def test_shopping_routes_require_auth(client: Client) -> None:
    some = uuid.uuid4()
    for method, path, body in (
        ("GET", "/shopping/lists", None),
        ("POST", "/shopping/lists", {"name": "x", "items": []}),
        ("GET", f"/shopping/lists/{some}", None),
        ("PUT", f"/shopping/lists/{some}", {"name": "x", "items": []}),
        ("DELETE", f"/shopping/lists/{some}", None),
        ("POST", "/shopping/optimize", {"items": [{"name": "x", "quantity": 1}]}),
    ):
        response = await client.request(method, API + path, json=body)
        check_problem(response, await response.json(), 401, "unauthorized")


# --- the optimiser ----------------------------------------------------------------------------------------------


async def test_optimize_finds_the_coupon_plan_greedy_misses(client: Client) -> None:
    w = await _world(client)
    items = [*_items(w.products), {"name": "honey oat", "quantity": 2}, {"name": "dragon fruit", "quantity": 1}]

    response = await client.post(f"{API}/shopping/optimize", headers=w.headers, json={"items": items})

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    plan = await response.json()
    assert plan["optimizer"] == "local"
    aldi, kroger = plan["trips"]
    assert (kroger["store_id"], kroger["store_name"]) == (str(w.kroger.id), "Kroger")
    assert [i["product_id"] for i in kroger["items"]] == [str(p.id) for p in w.products]
    assert kroger["items"][0] == {
        "product_id": str(w.products[0].id),
        "name": "Staple 0",
        "quantity": 1.0,
        "unit_price": 10.5,
        "line_total": 10.5,
        "price": 10.5,  # the old gateway's member
    }
    assert kroger["subtotal"] == 52.5 and kroger["savings"] == 10.0
    assert [(c["description"], c["savings"]) for c in kroger["coupons"]] == [("$10 off $50", 10.0)]
    coupon = kroger["coupons"][0]
    # the old gateway's coupon members
    assert coupon == {
        **coupon,
        "id": coupon["coupon_id"],
        "store_id": str(w.kroger.id),
        "store_name": "Kroger",
        "description": "$10 off $50",
        "discount_value": 10.0,
        "discount_type": "fixed",
        "product_id": None,
        "expires_at": midnight(date.today() + timedelta(days=7)),  # the factory default
    }
    assert sum(i["price"] for i in kroger["items"]) == kroger["subtotal"]
    assert aldi["store_name"] == "Aldi"
    assert aldi["items"] == [
        {
            "product_id": str(w.cereal.id),
            "name": "honey oat",
            "quantity": 2.0,
            "unit_price": 4.0,
            "line_total": 8.0,
            "price": 8.0,
        }
    ]
    assert [(c["description"], c["savings"]) for c in aldi["coupons"]] == [("$1 off cereal", 1.0)]
    assert plan["total_cost"] == 49.5 and plan["total_savings"] == 11.0
    # Greedy buys four staples at Aldi, one at Kroger, misses the $50 threshold: 40 + 10.50 + 8 - 1.
    assert plan["greedy_total_cost"] == 57.5
    assert plan["single_store"] == {"store_id": str(w.aldi.id), "store_name": "Aldi", "total_cost": 59.0}
    assert plan["unpriced_items"] == [
        {"product_id": None, "name": "dragon fruit", "quantity": 1.0, "reason": "unknown_product"}
    ]


async def test_optimize_honours_preferred_stores_and_max_stores(client: Client) -> None:
    w = await _world(client)
    items = [*_items(w.products[:2]), {"product_id": str(w.cereal.id), "name": "cereal", "quantity": 1}]

    response = await client.post(
        f"{API}/shopping/optimize",
        headers=w.headers,
        json={"items": items, "preferred_stores": [w.kroger.slug.upper()]},
    )
    plan = await response.json()
    assert response.status == 200
    assert [t["store_name"] for t in plan["trips"]] == ["Kroger"]
    assert plan["total_cost"] == 21.0
    assert plan["unpriced_items"] == [
        {"product_id": str(w.cereal.id), "name": "cereal", "quantity": 1.0, "reason": "no_price"}
    ]

    response = await client.post(
        f"{API}/shopping/optimize",
        headers=w.headers,
        json={
            "items": [*_items(w.products[:2]), {"name": "Honey Oat Cereal"}],
            "max_stores": 1,
            "preferred_stores": [str(w.aldi.id), w.kroger.slug],
        },
    )
    plan = await response.json()
    assert [t["store_name"] for t in plan["trips"]] == ["Aldi"]
    assert plan["total_cost"] == 25.0  # 12 + 10 + 4 - 1
    assert plan["unpriced_items"] == []

    # an empty list is no preference (the old gateway's reading), not "no store at all"
    anywhere = {"items": items}
    unset = await (await client.post(f"{API}/shopping/optimize", headers=w.headers, json=anywhere)).json()
    empty = await client.post(f"{API}/shopping/optimize", headers=w.headers, json={**anywhere, "preferred_stores": []})
    assert empty.status == 200 and await empty.json() == unset and unset["unpriced_items"] == []


async def test_optimize_validates_its_body(client: Client) -> None:
    w = await _world(client)
    cases = [
        ({"items": []}, "items"),
        ({"items": [{"name": "x", "quantity": -1}]}, "items.0.quantity"),
        ({"items": [{"product_id": str(uuid.uuid4()), "name": "ghost"}]}, "items.0.product_id"),
        ({"items": [{"name": "x"}], "max_stores": 0}, "max_stores"),
        ({"items": [{"name": "x"}], "preferred_stores": [w.aldi.slug, "nowhere"]}, "preferred_stores.1"),
    ]
    for body, field in cases:
        response = await client.post(f"{API}/shopping/optimize", headers=w.headers, json=body)
        problem = await response.json()
        check_problem(response, problem, 422, "validation")
        assert problem["errors"][0]["field"] == field


# --- ClipArtist -------------------------------------------------------------------------------------------------

CLIPARTIST_PLAN = {
    "trips": [
        {
            "store_id": str(uuid.UUID(int=1)),
            "store_name": "Upstream Mart",
            "items": [
                {"product_id": None, "name": "milk", "quantity": 1, "unit_price": 2.5, "line_total": 2.5, "price": 2.5}
            ],
            "subtotal": 2.5,
            "coupons": [],
            "savings": 0,
        }
    ],
    "total_cost": 2.5,
    "total_savings": 0,
    "optimizer": "something else",
}


@dataclass
class FakeClipArtist:
    mode: str = "ok"
    requests: list[tuple[dict[str, Any], str | None]] | None = None


@pytest.fixture
async def clipartist(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[Client]],
    sqlite_url: str,
) -> tuple[Client, FakeClipArtist]:
    """The app with ClipArtist configured, pointing at a stand-in whose behaviour the test chooses."""
    fake = FakeClipArtist(requests=[])

    async def optimize(request: web.Request) -> web.Response:
        assert fake.requests is not None
        fake.requests.append((await request.json(), request.headers.get("X-Service-Key")))
        if fake.mode == "error":
            return web.json_response({"detail": "boom"}, status=500)
        if fake.mode == "slow":
            await asyncio.sleep(4)
        if fake.mode == "garbage":
            return web.json_response({"trips": "none"})
        return web.json_response(CLIPARTIST_PLAN)

    upstream = web.Application()
    upstream.router.add_post("/optimize", optimize)
    server = await aiohttp_server(upstream)
    settings = make_settings(
        sqlite_url,
        clipartist_url=str(server.make_url("/")),
        upstream_timeout_seconds=0.5,
        service_key="clipartist-test-key",
    )
    return await aiohttp_client(create_app(settings)), fake


async def _ann(client: Client) -> dict[str, str]:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session, name="Local Mart", slug=f"lm{uuid.uuid4().hex[:8]}")
        milk = await factories.create_product(session, canonical_name="Milk")
        await factories.create_price(session, product=milk, store=store, observed=TODAY, regular="3.00")
    return await factories.auth_headers(client.app, user.id)


async def test_optimize_passes_clipartist_plan_through(clipartist: tuple[Client, FakeClipArtist]) -> None:
    client, fake = clipartist
    headers = await _ann(client)
    response = await client.post(
        f"{API}/shopping/optimize", headers=headers, json={"items": [{"name": "milk", "quantity": 1}], "max_stores": 2}
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    plan = await response.json()
    assert plan["optimizer"] == "clipartist"
    assert plan["trips"][0]["store_name"] == "Upstream Mart" and plan["total_cost"] == 2.5
    assert plan["single_store"] is None and plan["unpriced_items"] == []
    assert fake.requests is not None
    [(sent, key)] = fake.requests
    assert key == "clipartist-test-key"
    assert sent["items"] == [{"product_id": None, "name": "milk", "quantity": 1.0}]
    assert sent["max_stores"] == 2 and sent["preferred_stores"] is None and isinstance(sent["user_id"], str)


@pytest.mark.parametrize("mode", ["error", "slow", "garbage"])
async def test_optimize_falls_back_when_clipartist_fails(clipartist: tuple[Client, FakeClipArtist], mode: str) -> None:
    client, fake = clipartist
    fake.mode = mode
    headers = await _ann(client)
    started = asyncio.get_running_loop().time()
    response = await client.post(
        f"{API}/shopping/optimize", headers=headers, json={"items": [{"name": "milk", "quantity": 2}]}
    )
    assert response.status == 200
    plan = await response.json()
    assert plan["optimizer"] == "local"
    assert [t["store_name"] for t in plan["trips"]] == ["Local Mart"] and plan["total_cost"] == 6.0
    assert asyncio.get_running_loop().time() - started < 3  # the 0.5 s upstream timeout, not the 4 s answer


async def test_replacements_and_deletions_of_one_list_at_once_run_one_after_the_other(client: Client) -> None:
    """A double-tapped Save, or a save racing a delete: each replacement is whole (never two merged), and a save
    that comes after the delete is a 404, never a 500."""
    w = await _world(client)
    url = f"{API}/shopping/lists"
    created = await (await client.post(url, headers=w.headers, json={"name": "L", "items": []})).json()
    bodies = [{"name": f"save {n}", "items": [{"name": f"item {n}.{i}"} for i in range(3)]} for n in range(8)]
    saves = await asyncio.gather(
        *(client.put(f"{url}/{created['id']}", headers=w.headers, json=body) for body in bodies)
    )
    assert [response.status for response in saves] == [200] * 8
    stored = await (await client.get(f"{url}/{created['id']}", headers=w.headers)).json()
    saved = next(body for body in bodies if body["name"] == stored["name"])
    assert [item["name"] for item in stored["items"]] == [item["name"] for item in saved["items"]]

    for _ in range(5):
        doomed = await (await client.post(url, headers=w.headers, json=bodies[0])).json()
        raced = await asyncio.gather(
            client.put(f"{url}/{doomed['id']}", headers=w.headers, json=bodies[1]),
            client.delete(f"{url}/{doomed['id']}", headers=w.headers),
            client.put(f"{url}/{doomed['id']}", headers=w.headers, json=bodies[2]),
        )
        statuses = [response.status for response in raced]
        assert statuses[0] in (200, 404) and statuses[2] in (200, 404) and statuses[1] == 204, statuses
        gone = await client.get(f"{url}/{doomed['id']}", headers=w.headers)
        assert gone.status == 404
