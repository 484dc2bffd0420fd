"""Price queries: what a product costs now at each store."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, NamedTuple, get_args

from sqlalchemy import (
    ColumnElement,
    Float,
    Numeric,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from hub.store.models import NormalizedProduct, PriceHistory, Store


def effective_price(prices: Any = PriceHistory) -> ColumnElement[Any]:
    """What a shopper pays at the shelf: the lowest of the regular, sale and loyalty prices that are set.
    ``prices`` is the PriceHistory entity or its table's columns (``PRICES``, for Core statements)."""
    sale_or_regular = case(
        (prices.sale_price.is_not(None) & (prices.sale_price < prices.regular_price), prices.sale_price),
        else_=prices.regular_price,
    )
    return case(
        (prices.loyalty_price.is_not(None) & (prices.loyalty_price < sale_or_regular), prices.loyalty_price),
        else_=sale_or_regular,
    )


PRICES = PriceHistory.__table__.c
STORES = Store.__table__.c


def in_observed_order(prices: Any = PriceHistory, *, newest_first: bool = False) -> tuple[ColumnElement[Any], ...]:
    """Observations in the order they were made: by date, then (several on one day: a price changed, or a receipt
    and a scrape) by when each was recorded, the id breaking a tie of both. The last is a product's current price at
    its store; an id alone is random and once made an older price of the day the current one."""
    columns = (prices.observed_date, prices.created_at, prices.id)
    return tuple(column.desc() for column in columns) if newest_first else columns


@dataclass(frozen=True, slots=True)
class LatestPrice:
    product_id: uuid.UUID
    store_id: uuid.UUID
    store_name: str
    store_slug: str
    price: Decimal
    regular_price: Decimal
    observed_date: date


@functools.cache
def _latest_statement(at_stores: bool) -> Select[*tuple[Any, ...]]:
    """For each asked product at each store, the id of its newest observation (one probe of the (product, store,
    observed_date, created_at, id) index, where ranking all its observations read and sorted each of them), then
    that row. Built once per shape, as a Core statement with bound parameters: building it costs more than running
    it."""
    products = NormalizedProduct.__table__
    newest = PriceHistory.__table__.alias("newest")
    newest_id = (
        select(newest.c.id)
        .where(newest.c.normalized_product_id == products.c.id, newest.c.store_id == STORES.id)
        .order_by(*in_observed_order(newest.c, newest_first=True))
        .limit(1)
        .correlate(products, Store.__table__)
        .scalar_subquery()
    )
    stmt = (
        select(
            PRICES.normalized_product_id,
            PRICES.store_id,
            STORES.name,
            STORES.slug,
            effective_price(PRICES),
            PRICES.regular_price,
            PRICES.observed_date,
        )
        .select_from(products)
        .join(Store.__table__, true())
        .join(PriceHistory.__table__, PRICES.id == newest_id)
        .where(products.c.id.in_(bindparam("product_ids", expanding=True)))
    )
    if at_stores:
        stmt = stmt.where(STORES.id.in_(bindparam("store_ids", expanding=True)))
    return stmt.order_by(PRICES.normalized_product_id, STORES.name)


async def latest_prices(
    session: AsyncSession,
    *,
    product_ids: Sequence[uuid.UUID],
    store_ids: Sequence[uuid.UUID] | None = None,
) -> list[LatestPrice]:
    """The newest observation per (product, store) for the given products, with its effective price."""
    if not product_ids:
        return []
    params: dict[str, Any] = {"product_ids": list(product_ids)}
    if store_ids is not None:
        params["store_ids"] = list(store_ids)
    rows = (await session.execute(_latest_statement(store_ids is not None), params)).all()
    return [LatestPrice(*row) for row in rows]


Category = Literal[
    "produce",
    "dairy",
    "meat",
    "bakery",
    "frozen",
    "pantry",
    "beverages",
    "snacks",
    "household",
    "personal_care",
    "other",
]
CATEGORIES: tuple[str, ...] = get_args(Category)
UNCATEGORIZED = "other"
CENT = Decimal("0.01")


def _as_float(expr: ColumnElement[Any]) -> ColumnElement[float]:
    """SQLite keeps whole-number prices as integers, and integer division truncates there."""
    return cast(expr, Float)


def latest_price_rows(product_ids: Sequence[uuid.UUID]) -> Select[*tuple[Any, ...]]:
    """The newest observation per (product, store) of the given products, to aggregate over (as a subquery or
    a CTE)."""
    ranked = (
        select(
            PriceHistory.normalized_product_id.label("product_id"),
            PriceHistory.store_id.label("store_id"),
            effective_price().label("price"),
            PriceHistory.regular_price.label("regular_price"),
            PriceHistory.observed_date.label("observed_date"),
            func.row_number()
            .over(
                partition_by=(PriceHistory.normalized_product_id, PriceHistory.store_id),
                order_by=in_observed_order(newest_first=True),
            )
            .label("rank"),
        )
        .where(PriceHistory.normalized_product_id.in_(list(product_ids)))
        .subquery()
    )
    return select(
        ranked.c.product_id, ranked.c.store_id, ranked.c.price, ranked.c.regular_price, ranked.c.observed_date
    ).where(ranked.c.rank == 1)


async def product_names(session: AsyncSession, *, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The canonical name of each of the products that exist."""
    if not product_ids:
        return {}
    rows = await session.execute(
        select(NormalizedProduct.id, NormalizedProduct.canonical_name).where(
            NormalizedProduct.id.in_(list(product_ids))
        )
    )
    return {product_id: name for product_id, name in rows}


@dataclass(frozen=True, slots=True)
class PriceTrend:
    """One product's (or one category's) prices over a window; ``key`` is the product id or the category."""

    key: str
    product_id: uuid.UUID | None
    product_name: str | None
    category: str
    first_price: Decimal
    last_price: Decimal
    min_price: Decimal
    max_price: Decimal
    avg_price: Decimal
    change_pct: Decimal | None
    observations: int
    last_observed: date


def _money(value: Any) -> Decimal:
    """A SQL result (Decimal on PostgreSQL, float on SQLite) to cents."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def _pct(value: Any) -> Decimal | None:
    return None if value is None else _money(value)


def _change_pct(old: ColumnElement[Any], new: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((old > 0, (_as_float(new) - _as_float(old)) * 100 / _as_float(old)), else_=None)


async def price_trends(
    session: AsyncSession,
    *,
    since: date,
    category: str | None,
    group_by: Literal["product", "category"],
    limit: int,
    offset: int = 0,
    after: tuple[date, uuid.UUID | str] | None = None,
) -> list[PriceTrend]:
    """Per product (or per category) over the observations since ``since``: the first and last price (the mean
    effective price on the first and on the last day observed), min, max, mean, the change between first and last,
    and how many observations. A category's first and last prices are the means of its products' first and last
    prices. Most recently observed first; ``limit`` + 1 rows are fetched so the caller can tell a next page."""
    price = effective_price()
    observations = (
        select(
            PriceHistory.normalized_product_id.label("product_id"),
            NormalizedProduct.canonical_name.label("product_name"),
            func.coalesce(NormalizedProduct.category, UNCATEGORIZED).label("category"),
            PriceHistory.observed_date.label("observed_date"),
            price.label("price"),
            func.min(PriceHistory.observed_date)
            .over(partition_by=PriceHistory.normalized_product_id)
            .label("first_date"),
            func.max(PriceHistory.observed_date)
            .over(partition_by=PriceHistory.normalized_product_id)
            .label("last_date"),
        )
        .join(NormalizedProduct, NormalizedProduct.id == PriceHistory.normalized_product_id)
        .where(PriceHistory.observed_date >= since)
    )
    if category is not None:
        if category == UNCATEGORIZED:
            observations = observations.where(
                (NormalizedProduct.category == category) | NormalizedProduct.category.is_(None)
            )
        else:
            observations = observations.where(NormalizedProduct.category == category)
    obs = observations.subquery()
    per_product = (
        select(
            obs.c.product_id,
            obs.c.product_name,
            obs.c.category,
            func.avg(case((obs.c.observed_date == obs.c.first_date, obs.c.price))).label("first_price"),
            func.avg(case((obs.c.observed_date == obs.c.last_date, obs.c.price))).label("last_price"),
            func.min(obs.c.price).label("min_price"),
            func.max(obs.c.price).label("max_price"),
            func.sum(obs.c.price).label("total"),
            func.count().label("observations"),
            func.max(obs.c.observed_date).label("last_observed"),
        )
        .group_by(obs.c.product_id, obs.c.product_name, obs.c.category)
        .subquery()
    )
    if group_by == "product":
        grouped = select(
            per_product.c.product_id,
            per_product.c.product_name,
            per_product.c.category,
            per_product.c.first_price,
            per_product.c.last_price,
            per_product.c.min_price,
            per_product.c.max_price,
            (_as_float(per_product.c.total) / per_product.c.observations).label("avg_price"),
            per_product.c.observations,
            per_product.c.last_observed,
        )
    else:
        grouped = select(
            null().label("product_id"),
            null().label("product_name"),
            per_product.c.category,
            func.avg(per_product.c.first_price).label("first_price"),
            func.avg(per_product.c.last_price).label("last_price"),
            func.min(per_product.c.min_price).label("min_price"),
            func.max(per_product.c.max_price).label("max_price"),
            (_as_float(func.sum(per_product.c.total)) / func.sum(per_product.c.observations)).label("avg_price"),
            func.sum(per_product.c.observations).label("observations"),
            func.max(per_product.c.last_observed).label("last_observed"),
        ).group_by(per_product.c.category)
    trends = grouped.subquery()
    stmt = select(
        trends.c.product_id,
        trends.c.product_name,
        trends.c.category,
        trends.c.first_price,
        trends.c.last_price,
        trends.c.min_price,
        trends.c.max_price,
        trends.c.avg_price,
        _change_pct(trends.c.first_price, trends.c.last_price).label("change_pct"),
        trends.c.observations,
        trends.c.last_observed,
    )
    key = trends.c.category if group_by == "category" else trends.c.product_id
    if after is not None:
        last_observed, last_key = after
        stmt = stmt.where(
            (trends.c.last_observed < last_observed) | ((trends.c.last_observed == last_observed) & (key < last_key))
        )
    stmt = stmt.order_by(trends.c.last_observed.desc(), key.desc()).offset(offset).limit(limit + 1)
    rows = (await session.execute(stmt)).all()
    return [
        PriceTrend(
            key=str(row.product_id) if group_by == "product" else row.category,
            product_id=row.product_id,
            product_name=row.product_name,
            category=row.category,
            first_price=_money(row.first_price),
            last_price=_money(row.last_price),
            min_price=_money(row.min_price),
            max_price=_money(row.max_price),
            avg_price=_money(row.avg_price),
            change_pct=_pct(row.change_pct),
            observations=int(row.observations),
            last_observed=row.last_observed,
        )
        for row in rows
    ]


class PriceObservation(NamedTuple):
    observed_date: date
    price: Decimal
    store_id: uuid.UUID
    store_name: str


async def product_observations(
    session: AsyncSession, *, product_ids: Sequence[uuid.UUID], since: date, limit: int
) -> dict[uuid.UUID, list[PriceObservation]]:
    """Each product's observations since ``since`` with the effective price (the newest ``limit`` of each),
    oldest first, for many products in one query; every asked product has an entry."""
    found: dict[uuid.UUID, list[PriceObservation]] = {product_id: [] for product_id in product_ids}
    if not found:
        return found
    ranked = (
        select(
            PriceHistory.normalized_product_id.label("key"),
            PriceHistory.observed_date.label("observed_date"),
            effective_price().label("price"),
            PriceHistory.store_id.label("store_id"),
            Store.name.label("store_name"),
            PriceHistory.id.label("id"),
            func.row_number()
            .over(
                partition_by=PriceHistory.normalized_product_id,
                order_by=in_observed_order(newest_first=True),
            )
            .label("rank"),
        )
        .join(Store, Store.id == PriceHistory.store_id)
        .where(PriceHistory.normalized_product_id.in_(list(found)), PriceHistory.observed_date >= since)
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.key, ranked.c.observed_date, ranked.c.price, ranked.c.store_id, ranked.c.store_name)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c.key, ranked.c.observed_date, ranked.c.store_name, ranked.c.store_id, ranked.c.id)
    )
    for key, *observation in rows:
        found[key].append(PriceObservation(*observation))
    return found


async def category_observations(
    session: AsyncSession, *, categories: Sequence[str], since: date, limit: int
) -> dict[str, list[PriceObservation]]:
    """Per category, the mean effective price of its products at each store on each day since ``since`` (the
    newest ``limit`` of each), oldest first; products without a category count as ``other``."""
    found: dict[str, list[PriceObservation]] = {category: [] for category in categories}
    if not found:
        return found
    observations = (
        select(
            func.coalesce(NormalizedProduct.category, UNCATEGORIZED).label("category"),
            PriceHistory.observed_date.label("observed_date"),
            effective_price().label("price"),
            PriceHistory.store_id.label("store_id"),
        )
        .join(NormalizedProduct, NormalizedProduct.id == PriceHistory.normalized_product_id)
        .where(PriceHistory.observed_date >= since)
        .subquery()
    )
    daily = (
        select(
            observations.c.category,
            observations.c.observed_date,
            func.avg(observations.c.price).label("price"),
            observations.c.store_id,
        )
        .where(observations.c.category.in_(list(found)))
        .group_by(observations.c.category, observations.c.observed_date, observations.c.store_id)
        .subquery()
    )
    ranked = (
        select(
            daily,
            Store.name.label("store_name"),
            func.row_number()
            .over(
                partition_by=daily.c.category,
                order_by=(daily.c.observed_date.desc(), Store.name.desc(), daily.c.store_id.desc()),
            )
            .label("rank"),
        )
        .join(Store, Store.id == daily.c.store_id)
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.category, ranked.c.observed_date, ranked.c.price, ranked.c.store_id, ranked.c.store_name)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c.category, ranked.c.observed_date, ranked.c.store_name, ranked.c.store_id)
    )
    for category, day, price, store_id, store_name in rows:
        found[category].append(PriceObservation(day, _money(price), store_id, store_name))
    return found


@dataclass(frozen=True, slots=True)
class PriceIncrease:
    product_id: uuid.UUID
    product_name: str
    store_id: uuid.UUID
    store_name: str
    old_price: Decimal
    new_price: Decimal
    increase_pct: Decimal
    detected_at: date


async def price_increases(
    session: AsyncSession,
    *,
    since: date,
    min_pct: Decimal,
    limit: int,
    offset: int = 0,
    after: tuple[date, uuid.UUID, uuid.UUID] | None = None,
) -> list[PriceIncrease]:
    """Per (product, store) observed since ``since``: its newest observation against the one before it (which may
    be older than ``since``), kept when the effective price rose by at least ``min_pct`` percent. Newest first
    (then product id, store id, descending); ``limit`` + 1 rows."""
    price = effective_price()
    pair = (PriceHistory.normalized_product_id, PriceHistory.store_id)
    recent = aliased(PriceHistory)
    seen_recently = (
        select(recent.id)
        .where(
            recent.normalized_product_id == PriceHistory.normalized_product_id,
            recent.store_id == PriceHistory.store_id,
            recent.observed_date >= since,
        )
        .exists()
    )
    ranked = (
        select(
            PriceHistory.normalized_product_id.label("product_id"),
            PriceHistory.store_id.label("store_id"),
            PriceHistory.observed_date.label("observed_date"),
            price.label("new_price"),
            func.lag(price).over(partition_by=pair, order_by=in_observed_order()).label("old_price"),
            func.row_number().over(partition_by=pair, order_by=in_observed_order(newest_first=True)).label("rank"),
        )
        .where(seen_recently)
        .subquery()
    )
    threshold = literal(100 + min_pct, Numeric(12, 4))
    stmt = (
        select(
            ranked.c.product_id,
            NormalizedProduct.canonical_name,
            ranked.c.store_id,
            Store.name,
            ranked.c.old_price,
            ranked.c.new_price,
            _change_pct(ranked.c.old_price, ranked.c.new_price),
            ranked.c.observed_date,
        )
        .join(NormalizedProduct, NormalizedProduct.id == ranked.c.product_id)
        .join(Store, Store.id == ranked.c.store_id)
        .where(
            ranked.c.rank == 1,
            ranked.c.observed_date >= since,
            ranked.c.old_price > 0,
            ranked.c.new_price * 100 >= ranked.c.old_price * threshold,
        )
    )
    if after is not None:
        day, product_id, store_id = after
        stmt = stmt.where(
            (ranked.c.observed_date < day)
            | ((ranked.c.observed_date == day) & (ranked.c.product_id < product_id))
            | ((ranked.c.observed_date == day) & (ranked.c.product_id == product_id) & (ranked.c.store_id < store_id))
        )
    stmt = (
        stmt.order_by(ranked.c.observed_date.desc(), ranked.c.product_id.desc(), ranked.c.store_id.desc())
        .offset(offset)
        .limit(limit + 1)
    )
    rows = (await session.execute(stmt)).all()
    return [
        PriceIncrease(product_id, name, store_id, store_name, _money(old), _money(new), _money(pct), day)
        for product_id, name, store_id, store_name, old, new, pct, day in rows
    ]


async def record_daily_price(
    session: AsyncSession,
    *,
    product_id: uuid.UUID,
    store_id: uuid.UUID,
    observed_date: date,
    regular_price: Decimal,
    sale_price: Decimal | None,
    source: str,
) -> bool:
    """Make this the (product, store) observation of ``observed_date``: that day's rows take the new prices, or one
    row is inserted. One observation a day keeps every reader agreeing on the latest price (ties within a day are
    broken by row id). False, and nothing written, when that day's observation is a receipt's line."""
    same_day = (
        (PriceHistory.normalized_product_id == product_id)
        & (PriceHistory.store_id == store_id)
        & (PriceHistory.observed_date == observed_date)
    )
    receipts = await session.scalar(
        select(func.count()).select_from(PriceHistory).where(same_day, PriceHistory.purchase_item_id.is_not(None))
    )
    if receipts:
        return False
    result = await session.execute(
        update(PriceHistory)
        .where(same_day)
        .values(
            regular_price=regular_price,
            sale_price=sale_price,
            loyalty_price=None,
            coupon_price=None,
            source=source,
        )
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        session.add(
            PriceHistory(
                normalized_product_id=product_id,
                store_id=store_id,
                observed_date=observed_date,
                regular_price=regular_price,
                sale_price=sale_price,
                source=source,
            )
        )
        await session.flush()
    return True
