from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub import keys
from hub.infra import cache
from hub.store.models import Coupon
from tests import factories
from tests.responses import all_pages, expect_json, expect_problem, midnight

Client = TestClient[Any, Any]
TODAY = date.today()


async def test_list_coupons_valid_today(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        shop = await factories.create_store(session, name="Shop")
        other = await factories.create_store(session, name="Other")
        cereal = await factories.create_product(session)
        active = await factories.create_coupon(
            session,
            store=shop,
            product=cereal,
            title="Cereal $1 off",
            description="Any size",
            discount_type="fixed",
            discount_value=Decimal("1.00"),
            min_purchase=Decimal("5.00"),
            valid_from=TODAY,
            valid_to=TODAY,
            requires_clip=True,
        )
        open_ended = await factories.create_coupon(
            session,
            store=other,
            title="10% off everything",
            description=None,
            valid_from=None,
            valid_to=None,
            discount_type="percent",
            discount_value=Decimal("10"),
        )
        expired = await factories.create_coupon(
            session, store=shop, valid_from=TODAY - timedelta(days=9), valid_to=TODAY - timedelta(days=1)
        )
        await factories.create_coupon(session, store=shop, valid_from=TODAY + timedelta(days=1))
    headers = await factories.auth_headers(client.app, user.id)

    body = await expect_json(await client.get("/api/v1/coupons", headers=headers))
    assert {row["id"] for row in body} == {str(active.id), str(open_ended.id)}
    row = next(row for row in body if row["id"] == str(active.id))
    assert row == {
        "id": str(active.id),
        "store_id": str(shop.id),
        "store_name": "Shop",
        "title": "Cereal $1 off",
        "description": "Any size",
        "discount_value": 1.0,
        "discount_type": "fixed",
        "min_purchase": 5.0,
        "product_id": str(cereal.id),
        "starts_at": TODAY.isoformat(),
        "expires_at": midnight(TODAY),
        "requires_clip": True,
    }
    wide = next(row for row in body if row["id"] == str(open_ended.id))
    assert wide["product_id"] is None and wide["expires_at"] is None and wide["discount_value"] == 10.0
    assert wide["description"] == "10% off everything"  # the title when there is no description, as the old gateway

    at_shop = await expect_json(await client.get(f"/api/v1/coupons?store_id={shop.id}", headers=headers))
    assert [row["id"] for row in at_shop] == [str(active.id)]
    with_expired = await expect_json(
        await client.get(f"/api/v1/coupons?store_id={shop.id}&include_expired=true", headers=headers)
    )
    assert {row["id"] for row in with_expired} == {str(active.id), str(expired.id)}


async def test_coupons_newest_first_through_every_page(client: Client) -> None:
    base = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session)
        made = [await factories.create_coupon(session, store=store) for _ in range(3)]
        made += [
            await factories.create_coupon(session, store=store, created_at=base - timedelta(minutes=n // 2))
            for n in range(4)
        ]
    headers = await factories.auth_headers(client.app, user.id)
    pages = await all_pages(client, "/api/v1/coupons?page_size=2", headers)
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    async with client.app[keys.sessionmaker]() as session:
        stored = (await session.execute(select(Coupon.created_at, Coupon.id))).all()
    expected = [str(coupon_id) for _, coupon_id in sorted(stored, reverse=True)]
    assert len(expected) == len(made)
    assert [row["id"] for page in pages for row in page] == expected
    by_number = await expect_json(await client.get("/api/v1/coupons?page_size=2&page=4", headers=headers))
    assert [row["id"] for row in by_number] == expected[-1:]


async def test_relevant_coupons_follow_the_users_purchases(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        ann = await factories.create_user(session)
        bob = await factories.create_user(session)
        home = await factories.create_store(session)
        away = await factories.create_store(session)
        never = await factories.create_store(session)
        bought = await factories.create_product(session)
        bobs = await factories.create_product(session)
        await factories.create_purchase(session, user=ann, store=home, purchased=TODAY, items=[(bought, "1", "2.00")])
        await factories.create_purchase(session, user=bob, store=never, purchased=TODAY, items=[(bobs, "1", "1.00")])
        for_product_elsewhere = await factories.create_coupon(session, store=away, product=bought)
        store_wide = await factories.create_coupon(session, store=home)
        for_bobs_product = await factories.create_coupon(session, store=home, product=bobs)
        bobs_store_wide = await factories.create_coupon(session, store=never)
        await factories.create_coupon(session, store=away)
        await factories.create_coupon(session, store=home, product=bought, valid_to=TODAY - timedelta(days=1))
    ann_body = await expect_json(
        await client.get("/api/v1/coupons/relevant", headers=await factories.auth_headers(client.app, ann.id))
    )
    assert {row["id"] for row in ann_body} == {str(for_product_elsewhere.id), str(store_wide.id)}
    bob_body = await expect_json(
        await client.get("/api/v1/coupons/relevant", headers=await factories.auth_headers(client.app, bob.id))
    )
    assert {row["id"] for row in bob_body} == {str(for_bobs_product.id), str(bobs_store_wide.id)}

    pages = await all_pages(
        client, "/api/v1/coupons/relevant?page_size=1", await factories.auth_headers(client.app, ann.id)
    )
    assert [len(page) for page in pages] == [1, 1]
    assert [row["id"] for page in pages for row in page] == [row["id"] for row in ann_body]


async def test_coupons_are_cached_until_coupons_change(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
        store = await factories.create_store(session)
        await factories.create_coupon(session, store=store)
    headers = await factories.auth_headers(client.app, user.id)
    first = await expect_json(await client.get("/api/v1/coupons", headers=headers))
    async with client.app[keys.sessionmaker].begin() as session:
        await factories.create_coupon(session, store=store)
    assert await expect_json(await client.get("/api/v1/coupons", headers=headers)) == first
    await client.app[keys.cache].invalidate(cache.COUPONS)
    assert len(await expect_json(await client.get("/api/v1/coupons", headers=headers))) == 2


@pytest.mark.parametrize("path", ["/api/v1/coupons", "/api/v1/coupons/relevant"])
async def test_coupons_require_auth(client: Client, path: str) -> None:
    body = await expect_problem(await client.get(path), 401)
    assert body["code"] == "UNAUTHORIZED"


async def test_bad_input_is_422(client: Client) -> None:
    async with client.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    headers = await factories.auth_headers(client.app, user.id)
    cases = {
        "/api/v1/coupons?store_id=not-a-uuid": "store_id",
        "/api/v1/coupons?include_expired=maybe": "include_expired",
        "/api/v1/coupons?page_size=101": "page_size",
        "/api/v1/coupons?cursor=WyJ4IiwieSJd": "cursor",
        "/api/v1/coupons/relevant?page=0": "page",
        "/api/v1/coupons/relevant?cursor=%%%": "cursor",
    }
    for url, field in cases.items():
        body = await expect_problem(await client.get(url, headers=headers), 422)
        assert field in [error["field"] for error in body["errors"]], (url, body)
