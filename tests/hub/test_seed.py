"""The demo data generator: determinism, sizes, relationships and the stories the demo must tell, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text

from hub.infra.security import verify_password
from hub.store import seed as seed_module
from hub.store import users
from hub.store.engine import build_engine, build_sessionmaker
from hub.store.models import (
    Account,
    AlertSettings,
    Coupon,
    NormalizedProduct,
    PriceHistory,
    Purchase,
    PurchaseItem,
    ShrinkflationEvent,
    Store,
    StoreLocation,
    User,
    UserStoreAccount,
)
from hub.store.seed import ITEM_TYPES, SeedError, SeedReport, SeedSize, count_users, is_empty, seed

SIZE = SeedSize(users=6, products=40, price_rows=2_400, purchases=60, seed=7)
ANCHOR = date(2026, 6, 1)
DEMO_EMAIL = "demo@cartsnitch.local"
DEMO_PASSWORD = "a demo password"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Seeded:
    backend: str
    url: str
    report: SeedReport


def _fresh_sqlite(template: Path, directory: Path) -> str:
    target = directory / f"{uuid.uuid4().hex[:8]}.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


async def _create_pg(admin_url: str, template: str) -> str:
    name = "seed_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def _drop_pg(admin_url: str, url: str) -> None:
    admin = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


async def _seed(url: str, size: SeedSize = SIZE, password: str | None = DEMO_PASSWORD) -> SeedReport:
    engine = build_engine(url)
    try:
        return await seed(engine, size, demo_email=DEMO_EMAIL, demo_password=password, anchor=ANCHOR)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One database per backend seeded with SIZE, shared by the read-only tests of this module."""
    if request.param == "sqlite":
        url = _fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path_factory.mktemp("seed"))
        yield Seeded("sqlite", url, asyncio.run(_seed(url)))
        return
    admin_url = request.getfixturevalue("pg_admin_url")
    url = asyncio.run(_create_pg(admin_url, request.getfixturevalue("pg_template")))
    try:
        yield Seeded("postgres", url, asyncio.run(_seed(url)))
    finally:
        asyncio.run(_drop_pg(admin_url, url))


@pytest.fixture
def fresh_url(seeded: Seeded, request: pytest.FixtureRequest) -> str:
    """A fresh, migrated, empty database of the same backend as ``seeded``."""
    return str(request.getfixturevalue("sqlite_url" if seeded.backend == "sqlite" else "pg_url"))


async def _all(url: str, statement: Any) -> list[Any]:
    engine = build_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(statement)).all())
    finally:
        await engine.dispose()


async def _snapshot(url: str) -> dict[str, Any]:
    """Every id of every seeded table plus a few aggregates, in a backend-neutral form."""
    engine = build_engine(url)
    try:
        async with engine.connect() as connection:
            result: dict[str, Any] = {}
            for model in (
                User,
                Account,
                Store,
                StoreLocation,
                NormalizedProduct,
                Purchase,
                PurchaseItem,
                PriceHistory,
                Coupon,
                ShrinkflationEvent,
                UserStoreAccount,
            ):
                ids = (await connection.execute(select(model.id))).scalars()
                result[model.__tablename__] = sorted(str(i) for i in ids)
            result["emails"] = sorted((await connection.execute(select(User.email))).scalars())
            result["receipts"] = sorted((await connection.execute(select(Purchase.receipt_id))).scalars())
            result["totals"] = (
                await connection.execute(
                    select(func.sum(Purchase.total), func.sum(Purchase.tax), func.sum(Purchase.savings_total))
                )
            ).one()
            result["prices"] = (
                await connection.execute(
                    select(
                        func.sum(PriceHistory.regular_price),
                        func.count(PriceHistory.sale_price),
                        func.count(PriceHistory.purchase_item_id),
                        func.max(PriceHistory.observed_date),
                    )
                )
            ).one()
            result["sizes"] = sorted(
                (
                    await connection.execute(
                        select(NormalizedProduct.canonical_name, NormalizedProduct.size, NormalizedProduct.size_unit)
                    )
                ).all()
            )
            return result
    finally:
        await engine.dispose()


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# --- determinism ------------------------------------------------------------------------------------------


def test_a_medicine_brand_is_offered_only_with_its_own_active_ingredient() -> None:
    """A catalogue line crosses its brands with its variants: brands that make different medicines get a line each
    (the demo data once sold "Advil Acetaminophen")."""
    ingredients: dict[str, set[str]] = defaultdict(set)
    for item in ITEM_TYPES:
        if item.name == "Pain Reliever":
            for brand in item.brands:
                ingredients[brand].update(item.variants)
    assert ingredients["Advil"] == ingredients["Motrin"] == {"Ibuprofen 200 mg"}
    assert ingredients["Tylenol"] == {"Acetaminophen 500 mg"}
    assert ingredients["Aleve"] == {"Naproxen 220 mg"}
    assert ingredients["Bayer"] == {"Aspirin 81 mg"}


async def test_seed_is_deterministic(seeded: Seeded, fresh_url: str) -> None:
    await _seed(fresh_url)
    first, second = await _snapshot(seeded.url), await _snapshot(fresh_url)
    assert len(first["price_history"]) == SIZE.price_rows
    assert first == second


async def test_seed_is_the_same_on_sqlite_and_postgres(sqlite_url: str, pg_url: str) -> None:
    await asyncio.gather(_seed(sqlite_url), _seed(pg_url))
    on_sqlite, on_postgres = await _snapshot(sqlite_url), await _snapshot(pg_url)
    assert on_sqlite["purchase_items"] == on_postgres["purchase_items"]
    assert on_sqlite == on_postgres


@pytest.mark.parametrize("seeded", ["sqlite"], indirect=True)
async def test_another_seed_gives_other_rows_and_a_generated_password(seeded: Seeded, sqlite_url: str) -> None:
    report = await _seed(sqlite_url, replace(SIZE, seed=SIZE.seed + 1), password=None)
    ours, theirs = await _snapshot(seeded.url), await _snapshot(sqlite_url)
    assert not set(ours["users"]) & set(theirs["users"])
    assert not set(ours["price_history"]) & set(theirs["price_history"])
    assert report.demo_password
    assert f"demo login: {DEMO_EMAIL} / {report.demo_password}" in report.summary()
    engine = build_engine(sqlite_url)
    try:
        async with build_sessionmaker(engine)() as session:
            user = await users.get_user_by_email(session, email=DEMO_EMAIL)
            assert user is not None
            hashed = await users.get_credential_hash(session, user_id=user.id)
    finally:
        await engine.dispose()
    assert await verify_password(report.demo_password, hashed)


# --- sizes and the report ---------------------------------------------------------------------------------


async def test_seed_counts_match_the_size(seeded: Seeded) -> None:
    counts = {
        name: (await _all(seeded.url, select(func.count()).select_from(text(name))))[0][0]
        for name in seeded.report.rows
    }
    assert counts == seeded.report.rows
    assert counts["users"] == counts["accounts"] == SIZE.users
    assert counts["normalized_products"] == SIZE.products
    assert counts["price_history"] == SIZE.price_rows
    assert counts["purchases"] == SIZE.purchases
    assert counts["stores"] == 3
    per_purchase = await _all(
        seeded.url, select(func.count()).select_from(PurchaseItem).group_by(PurchaseItem.purchase_id)
    )
    assert len(per_purchase) == SIZE.purchases
    assert all(5 <= n <= 25 for (n,) in per_purchase)


async def test_report_summary_lists_tables_and_phases(seeded: Seeded) -> None:
    summary = seeded.report.summary()
    assert seeded.report.demo_password is None
    assert "demo login" not in summary
    for table, count in seeded.report.rows.items():
        assert re.search(rf"^  {table}\s+{count:,}$", summary, re.MULTILINE)
    for phase in ("password hash", "purchases", "price history", "commit"):
        assert phase in seeded.report.phases
        assert re.search(rf"^  {phase}\s+\d+\.\d\d$", summary, re.MULTILINE)


async def test_is_empty_and_count_users(seeded: Seeded, fresh_url: str) -> None:
    fresh = build_engine(fresh_url)
    full = build_engine(seeded.url)
    try:
        assert await is_empty(fresh)
        assert await count_users(fresh) == 0
        assert not await is_empty(full)
        assert await count_users(full) == SIZE.users
    finally:
        await fresh.dispose()
        await full.dispose()


async def test_seed_refuses_a_database_that_has_data(seeded: Seeded) -> None:
    with pytest.raises(SeedError):
        await _seed(seeded.url)
    assert (await _all(seeded.url, select(func.count()).select_from(User)))[0][0] == SIZE.users


async def test_seed_rejects_a_size_without_users(sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="users"):
        await _seed(sqlite_url, SeedSize(users=0, products=1, price_rows=1, purchases=0, seed=1))


# --- relationships ----------------------------------------------------------------------------------------


async def test_purchases_and_items_are_consistent(seeded: Seeded) -> None:
    purchases = {p.id: p for p in await _all(seeded.url, select(Purchase))}
    items = await _all(seeded.url, select(PurchaseItem))
    product_ids = {p for (p,) in await _all(seeded.url, select(NormalizedProduct.id))}
    store_of_location = dict(await _all(seeded.url, select(StoreLocation.id, StoreLocation.store_id)))
    user_ids = {u for (u,) in await _all(seeded.url, select(User.id))}

    receipts = [(p.user_id, p.store_id, p.receipt_id) for p in purchases.values()]
    assert len(set(receipts)) == len(receipts)
    by_purchase: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for item in items:
        assert item.purchase_id in purchases
        assert item.normalized_product_id is None or item.normalized_product_id in product_ids
        by_purchase[item.purchase_id].append(item)
    assert any(item.normalized_product_id is None for item in items)
    assert any(item.coupon_discount for item in items)
    assert any(item.loyalty_discount for item in items)
    assert any(item.sale_price is not None for item in items)

    for purchase in purchases.values():
        assert purchase.user_id in user_ids
        assert store_of_location[purchase.store_location_id] == purchase.store_id
        assert ANCHOR - timedelta(days=730) <= purchase.purchase_date <= ANCHOR
        lines = by_purchase[purchase.id]
        savings = Decimal(0)
        for item in lines:
            discounts = (item.coupon_discount or 0) + (item.loyalty_discount or 0)
            assert item.extended_price == _cents(item.quantity * item.unit_price) - discounts
            assert item.unit_price == (item.sale_price if item.sale_price is not None else item.regular_price)
            savings += _cents(item.quantity * item.regular_price) - _cents(item.quantity * item.unit_price) + discounts
        assert purchase.subtotal == sum(item.extended_price for item in lines)
        assert purchase.total == purchase.subtotal + purchase.tax
        assert purchase.savings_total == savings


async def test_item_prices_match_the_price_history(seeded: Seeded) -> None:
    stmt = (
        select(*PurchaseItem.__table__.c, Purchase.store_id, Purchase.purchase_date)
        .join(Purchase, Purchase.id == PurchaseItem.purchase_id)
        .where(PurchaseItem.normalized_product_id.is_not(None))
    )
    bought = {row.id: row for row in await _all(seeded.url, stmt)}
    history = await _all(seeded.url, select(PriceHistory))
    observed = {(h.normalized_product_id, h.store_id, h.observed_date): h for h in history}

    matched = 0
    for row in bought.values():
        same_day = observed.get((row.normalized_product_id, row.store_id, row.purchase_date))
        if same_day is not None:
            matched += 1
            assert same_day.regular_price == row.regular_price
            assert same_day.sale_price == row.sale_price
    linked = [h for h in history if h.purchase_item_id is not None]
    assert matched >= len(linked) > 0
    for h in linked:
        row = bought[h.purchase_item_id]
        assert (h.normalized_product_id, h.store_id, h.observed_date, h.source) == (
            row.normalized_product_id,
            row.store_id,
            row.purchase_date,
            "receipt",
        )

    assert {h.source for h in history} == {"receipt", "catalog", "weekly_ad"}
    assert all(h.sale_price is None or h.sale_price < h.regular_price for h in history)
    assert all(h.loyalty_price is None or h.loyalty_price < h.regular_price for h in history)
    assert min(h.observed_date for h in history) <= ANCHOR - timedelta(days=700)
    assert max(h.observed_date for h in history) == ANCHOR


def _series(history: list[Any]) -> dict[tuple[uuid.UUID, uuid.UUID], list[Any]]:
    series: dict[tuple[uuid.UUID, uuid.UUID], list[Any]] = defaultdict(list)
    for h in sorted(history, key=lambda h: h.observed_date):
        series[(h.normalized_product_id, h.store_id)].append(h)
    return series


def _recent_increases(series: dict[tuple[uuid.UUID, uuid.UUID], list[Any]], days: int) -> set[uuid.UUID]:
    """Products whose regular price rose by 10 % or more between two observations in the last ``days`` days."""
    since = ANCHOR - timedelta(days=days)
    found = set()
    for (product_id, _), points in series.items():
        for before, after in itertools.pairwise(points):
            if after.observed_date >= since and after.regular_price >= before.regular_price * Decimal("1.10"):
                found.add(product_id)
    return found


async def test_prices_drift_up_with_some_recent_step_increases(seeded: Seeded) -> None:
    series = _series(await _all(seeded.url, select(PriceHistory)))
    assert len(_recent_increases(series, 60)) >= 2
    ratios = [points[-1].regular_price / points[0].regular_price for points in series.values() if len(points) > 1]
    assert Decimal("1.02") < sum(ratios) / len(ratios) < Decimal("1.15")


async def test_shrinkflation_events_match_products_whose_price_held(seeded: Seeded) -> None:
    events = await _all(seeded.url, select(ShrinkflationEvent))
    products = {p.id: p for p in await _all(seeded.url, select(NormalizedProduct))}
    series = _series(await _all(seeded.url, select(PriceHistory)))
    assert len(events) >= 3
    assert any(e.detected_date >= ANCHOR - timedelta(days=60) for e in events)
    for event in events:
        product = products[event.normalized_product_id]
        assert (product.size, product.size_unit) == (event.new_size, event.new_unit)
        assert event.old_unit == event.new_unit
        assert Decimal(event.new_size) < Decimal(event.old_size)
        assert event.price_at_old_size == event.price_at_new_size
        assert Decimal("0.5") < event.confidence <= 1
        window = (event.detected_date - timedelta(days=60), event.detected_date + timedelta(days=30))
        held_at = set()
        for (product_id, store_id), points in series.items():
            if product_id != product.id:
                continue
            prices = {p.regular_price for p in points if window[0] <= p.observed_date <= window[1]}
            assert len(prices) <= 1, f"{product.canonical_name} changed price around its shrink"
            if prices == {event.price_at_old_size}:
                held_at.add(store_id)
        assert held_at


async def test_coupons_cover_every_type_and_validity(seeded: Seeded) -> None:
    coupons = await _all(seeded.url, select(Coupon))
    product_ids = {p for (p,) in await _all(seeded.url, select(NormalizedProduct.id))}
    assert {c.discount_type for c in coupons} == {"percent", "fixed", "bogo", "buy_x_get_y"}
    assert any(c.valid_to < ANCHOR for c in coupons)
    assert any(c.valid_from <= ANCHOR <= c.valid_to for c in coupons)
    assert {c.requires_clip for c in coupons} == {True, False}
    store_wide = [c for c in coupons if c.normalized_product_id is None]
    assert store_wide
    assert all(c.min_purchase and c.discount_type in ("percent", "fixed") for c in store_wide)
    assert all(c.normalized_product_id in product_ids for c in coupons if c.normalized_product_id is not None)
    assert all(c.discount_value > 0 and c.valid_from < c.valid_to for c in coupons)
    per_store = defaultdict(set)
    for c in coupons:
        per_store[c.store_id].add(c.valid_to < ANCHOR)
    assert len(per_store) == 3
    assert all(states == {True, False} for states in per_store.values())


# --- users ------------------------------------------------------------------------------------------------


async def test_users_have_well_formed_ids_tokens_and_one_shared_password(seeded: Seeded) -> None:
    rows = await _all(seeded.url, select(User))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", u.id) for u in rows)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", u.email_inbound_token) for u in rows)
    assert len({u.email_inbound_token for u in rows}) == len({u.email.lower() for u in rows}) == len(rows)
    accounts = await _all(seeded.url, select(Account))
    assert {a.user_id for a in accounts} == {u.id for u in rows}
    assert {(a.provider_id, a.account_id == a.user_id) for a in accounts} == {("credential", True)}
    assert len({a.password for a in accounts}) == 1
    assert accounts[0].password.startswith("$2b$12$")
    locations = await _all(seeded.url, select(StoreLocation))
    assert all(re.fullmatch(r"[A-Z]{2}", loc.state) and re.fullmatch(r"\d{5}", loc.zip) for loc in locations)
    assert {s for (s,) in await _all(seeded.url, select(Store.slug))} == {"meijer", "kroger", "target"}


async def test_demo_user_can_log_in(seeded: Seeded) -> None:
    engine = build_engine(seeded.url)
    try:
        async with build_sessionmaker(engine)() as session:
            user = await users.get_user_by_email(session, email=DEMO_EMAIL)
            assert user is not None
            hashed = await users.get_credential_hash(session, user_id=user.id)
    finally:
        await engine.dispose()
    assert user.id == seeded.report.demo_user_id
    assert await verify_password(DEMO_PASSWORD, hashed)
    assert not await verify_password(DEMO_PASSWORD + "!", hashed)


async def test_demo_user_has_recent_purchases_of_changed_products(seeded: Seeded) -> None:
    demo = seeded.report.demo_user_id
    purchases = await _all(seeded.url, select(Purchase).where(Purchase.user_id == demo))
    recent_since = ANCHOR - timedelta(days=30)
    assert len({p.store_id for p in purchases}) == 3
    assert len({p.store_id for p in purchases if p.purchase_date >= recent_since}) == 3
    assert len(purchases) >= 2 * SIZE.purchases // SIZE.users

    recent_products = {
        product_id
        for (product_id,) in await _all(
            seeded.url,
            select(PurchaseItem.normalized_product_id)
            .join(Purchase, Purchase.id == PurchaseItem.purchase_id)
            .where(Purchase.user_id == demo, Purchase.purchase_date >= recent_since),
        )
    }
    shrunk = {e.normalized_product_id for e in await _all(seeded.url, select(ShrinkflationEvent))}
    increased = _recent_increases(_series(await _all(seeded.url, select(PriceHistory))), 60)
    assert recent_products & shrunk
    assert recent_products & increased

    settings = await _all(seeded.url, select(AlertSettings).where(AlertSettings.user_id == demo))
    assert len(settings) == 1
    assert settings[0].price_increase_threshold_pct == Decimal("5.00")
    accounts = await _all(seeded.url, select(UserStoreAccount).where(UserStoreAccount.user_id == demo))
    assert len(accounts) == 3
    assert {a.status for a in accounts} == {"active", "expired"}
    assert all(a.session_data is None for a in accounts)


# --- PostgreSQL bulk load ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seeded", ["postgres"], indirect=True)
async def test_seed_leaves_the_postgres_schema_as_it_found_it(seeded: Seeded, pg_url: str) -> None:
    fresh = pg_url
    query = text(
        "SELECT indexdef FROM pg_indexes WHERE tablename IN ('price_history', 'purchase_items') "
        "UNION ALL SELECT conname || ' ' || pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname IN ('price_history', 'purchase_items')"
    )
    before = sorted(row[0] for row in await _all(fresh, query))
    after = sorted(row[0] for row in await _all(seeded.url, query))
    assert len(before) >= 8
    assert after == before


def test_no_seeded_user_id_starts_with_a_dash() -> None:
    """``cartsnitch-hub token <id>`` would take such an id for an option; 1 in 64 random ids would be one."""
    import random

    from hub.store.seed import _user_id

    rng = random.Random(7)
    ids = [_user_id(rng) for _ in range(5000)]
    assert not [value for value in ids if value.startswith("-")]
    assert len(set(ids)) == len(ids)
    assert all(len(value) == 32 for value in ids)


@pytest.mark.parametrize("anchor", [date(2026, 1, 19), date(2026, 2, 15), date(2026, 3, 23), date(2026, 12, 2)])
def test_a_waiting_target_is_under_the_products_current_price_at_every_store(anchor: date) -> None:
    """The demo's waiting targets (the PWA's "Watching") are under the price each store shows now, sales and
    loyalty prices included: a target the current price meets would have fired. (Set under one store's regular
    price, the demo seeded on 2026-12-02 showed Rockstar Zero "watching" at $2.12 while Kroger's sale was $1.99,
    and so did the demo of 17 of 40 days spread over 2026.)"""
    plan = seed_module._Plan(SeedSize.demo(), anchor, DEMO_EMAIL)
    for _ in plan.purchase_chunks():  # the receipts fix some observation days, as in seed()
        pass
    current: dict[Any, tuple[Any, Decimal]] = {}  # (product, store) -> (newest day, its effective price)
    for row in plan.price_rows():
        product_id, store_id, observed, regular, sale, loyalty = row[1:7]
        price = min(p for p in (regular, sale, loyalty) if p is not None)
        if (product_id, store_id) not in current or observed >= current[product_id, store_id][0]:
            current[product_id, store_id] = (observed, price)
    lowest: dict[Any, Decimal] = {}
    for (product_id, _), (_, price) in current.items():
        lowest[product_id] = min(price, lowest.get(product_id, price))
    waiting = [(row[2], row[3]) for row in plan.target_alert_rows() if row[4] is None]
    assert waiting
    assert [(str(product), target) for product, target in waiting if target >= lowest[product]] == []
