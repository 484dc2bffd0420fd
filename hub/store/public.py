"""The public dashboards' data: a product's price trend, a store comparison and the basket index against CPI.

Each ``*_snapshot`` returns the JSON-ready body of its REST route, which is also the snapshot of the matching
public socket room, so both always say the same thing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from sqlalchemy import Date, Integer, bindparam, case, cast, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.domain import cpi
from hub.store.models import NormalizedProduct, PriceHistory, Store
from hub.store.prices import PRICES, STORES, UNCATEGORIZED, effective_price, latest_price_rows

MAX_COMPARED_PRODUCTS = 20
Period = Literal["all-time", "1y", "6m", "3m", "1m"]
PERIOD_MONTHS = {"1y": 12, "6m": 6, "3m": 3, "1m": 1}
BASE_LEVEL = 100.0


def _number(value: Decimal | float) -> float:
    return float(value)


def local_midnight(day: date) -> str:
    """A date as the old gateway wrote its date-backed timestamps (``YYYY-MM-DDT00:00:00``, no offset), which a
    browser reads as that day in its own time zone: the form ``rest.types.LocalMidnight`` writes."""
    return f"{day.isoformat()}T00:00:00"


def _cents(value: Decimal | float) -> Decimal:
    """A SQL sum (Decimal on PostgreSQL, float on SQLite) to cents."""
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


_PRODUCTS = NormalizedProduct.__table__.c
# One round trip: the product's name on every row, its observations (none: one row of nulls) joined on.
_TREND = (
    select(_PRODUCTS.canonical_name, PRICES.observed_date, effective_price(PRICES), PRICES.store_id, STORES.name)
    .select_from(NormalizedProduct.__table__)
    .outerjoin(
        PriceHistory.__table__,
        (PRICES.normalized_product_id == _PRODUCTS.id) & (PRICES.observed_date >= bindparam("since", type_=Date)),
    )
    .outerjoin(Store.__table__, STORES.id == PRICES.store_id)
    .where(_PRODUCTS.id == bindparam("product_id"))
    .order_by(PRICES.observed_date, STORES.name, PRICES.store_id, PRICES.id)
)


async def trend_snapshot(session: AsyncSession, *, product_id: uuid.UUID, days: int) -> dict[str, Any] | None:
    """Every observation of the product in the last ``days`` days, oldest first; None for an unknown product."""
    since = date.today() - timedelta(days=days)
    rows = (await session.execute(_TREND, {"product_id": product_id, "since": since})).all()
    if not rows:
        return None
    return {
        "product_id": str(product_id),
        "product_name": rows[0][0],
        "data_points": [
            {
                "date": local_midnight(day),
                "price": _number(price),
                "store_id": str(store_id),
                "store_name": store_name,
            }
            for _, day, price, store_id, store_name in rows
            if day is not None
        ],
    }


async def _compared_products(
    session: AsyncSession, *, product_ids: Sequence[uuid.UUID] | None, category: str | None
) -> list[tuple[uuid.UUID, str]]:
    """The given products that exist (in the given order), or the products priced at the most stores."""
    if product_ids:
        stmt = select(NormalizedProduct.id, NormalizedProduct.canonical_name).where(
            NormalizedProduct.id.in_(list(product_ids))
        )
        if category is not None:
            stmt = stmt.where(NormalizedProduct.category == category)
        found = dict((await session.execute(stmt)).all())
        return [(pid, found[pid]) for pid in dict.fromkeys(product_ids) if pid in found]
    stores_pricing = func.count(PriceHistory.store_id.distinct())
    stmt = (
        select(NormalizedProduct.id, NormalizedProduct.canonical_name)
        .join(PriceHistory, PriceHistory.normalized_product_id == NormalizedProduct.id)
        .group_by(NormalizedProduct.id, NormalizedProduct.canonical_name)
        .order_by(stores_pricing.desc(), NormalizedProduct.canonical_name, NormalizedProduct.id)
        .limit(MAX_COMPARED_PRODUCTS)
    )
    if category is not None:
        stmt = stmt.where(NormalizedProduct.category == category)
    return list((await session.execute(stmt)).all())


async def store_comparison_snapshot(
    session: AsyncSession, *, product_ids: Sequence[uuid.UUID] | None = None, category: str | None = None
) -> dict[str, Any]:
    """The latest price of each compared product at each store, its cheapest store, and per store the basket
    total over the products every compared store prices (null when there is no such product)."""
    products = await _compared_products(session, product_ids=product_ids, category=category)
    ids = [pid for pid, _ in products]
    prices: dict[uuid.UUID, list[dict[str, Any]]] = {pid: [] for pid in ids}
    cheapest: dict[uuid.UUID, str] = {}
    stores: list[dict[str, Any]] = []
    basket: set[uuid.UUID] = set()
    if ids:
        latest = latest_price_rows(ids).subquery("latest")
        price_rank = func.row_number().over(
            partition_by=latest.c.product_id, order_by=(latest.c.price, Store.name, latest.c.store_id)
        )
        rows = await session.execute(
            select(
                latest.c.product_id, latest.c.store_id, Store.name, latest.c.price, latest.c.observed_date, price_rank
            )
            .join(Store, Store.id == latest.c.store_id)
            .order_by(latest.c.product_id, Store.name, latest.c.store_id)
        )
        for product_id, store_id, store_name, price, observed, rank in rows:
            prices[product_id].append(
                {
                    "store_id": str(store_id),
                    "store_name": store_name,
                    "price": _number(price),
                    "observed_date": observed.isoformat(),
                    "current_price": _number(price),
                    "last_seen_at": local_midnight(observed),
                }
            )
            if rank == 1:
                cheapest[product_id] = str(store_id)
        compared = latest_price_rows(ids).cte("compared")
        store_count = select(func.count(compared.c.store_id.distinct())).scalar_subquery()
        common = (
            select(compared.c.product_id)
            .group_by(compared.c.product_id)
            .having(func.count(compared.c.store_id.distinct()) == store_count)
        )
        basket = set((await session.execute(common)).scalars())
        total = func.sum(case((compared.c.product_id.in_(common), compared.c.price)))
        store_rows = await session.execute(
            select(compared.c.store_id, Store.name, total, func.count())
            .join(Store, Store.id == compared.c.store_id)
            .group_by(compared.c.store_id, Store.name)
            .order_by(total.asc().nulls_last(), Store.name, compared.c.store_id)
        )
        stores = [
            {
                "store_id": str(store_id),
                "store_name": name,
                "basket_total": None if amount is None else _number(_cents(amount)),
                "items_priced": int(count),
            }
            for store_id, name, amount, count in store_rows
        ]
    return {
        "products": [
            {
                "product_id": str(pid),
                "product_name": name,
                "prices": prices[pid],
                "cheapest_store_id": cheapest.get(pid),
            }
            for pid, name in products
        ],
        "stores": stores,
        "basket_product_ids": [str(pid) for pid in ids if pid in basket],
    }


@dataclass(frozen=True, slots=True)
class MonthLink:
    """One month of the basket: how many (product, store) pairs were priced in it and in the month before, and the
    mean log of their price relatives (None when there is no such pair)."""

    month: int
    matched: int
    mean_log_relative: float | None


def _month_number(column: Any) -> Any:
    return cast(extract("year", column), Integer) * 12 + cast(extract("month", column), Integer) - 1


async def basket_links(session: AsyncSession, *, category: str | None, start: date, end: date) -> list[MonthLink]:
    """Month by month between ``start`` and ``end``: each (product, store)'s mean effective price in the month,
    matched against the same (product, store) in the month before; per month, how many matched and the mean
    log of their price relatives (the Jevons link is its exponential)."""
    observations = select(
        PriceHistory.normalized_product_id.label("product_id"),
        PriceHistory.store_id.label("store_id"),
        _month_number(PriceHistory.observed_date).label("month"),
        effective_price().label("price"),
    ).where(PriceHistory.observed_date >= start, PriceHistory.observed_date <= end)
    if category is not None:
        observations = observations.join(
            NormalizedProduct, NormalizedProduct.id == PriceHistory.normalized_product_id
        ).where(NormalizedProduct.category == category)
    obs = observations.subquery()
    monthly = (
        select(obs.c.product_id, obs.c.store_id, obs.c.month, func.avg(obs.c.price).label("price"))
        .group_by(obs.c.product_id, obs.c.store_id, obs.c.month)
        .having(func.avg(obs.c.price) > 0)
        .cte("monthly")
    )
    current = monthly.alias("current_month")
    previous = monthly.alias("previous_month")
    relative = func.ln(current.c.price / previous.c.price)
    rows = await session.execute(
        select(current.c.month, func.count(previous.c.product_id), func.avg(relative))
        .outerjoin(
            previous,
            (previous.c.product_id == current.c.product_id)
            & (previous.c.store_id == current.c.store_id)
            & (previous.c.month == current.c.month - 1),
        )
        .group_by(current.c.month)
        .order_by(current.c.month)
    )
    return [MonthLink(int(month), int(matched), None if mean is None else float(mean)) for month, matched, mean in rows]


async def first_observed(session: AsyncSession, *, category: str | None) -> date | None:
    stmt = select(func.min(PriceHistory.observed_date))
    if category is not None:
        stmt = stmt.join(NormalizedProduct, NormalizedProduct.id == PriceHistory.normalized_product_id).where(
            NormalizedProduct.category == category
        )
    return (await session.execute(stmt)).scalar_one_or_none()


async def category_means(session: AsyncSession, *, category: str | None, start: date, end: date) -> dict[str, float]:
    """The mean effective price of each category's observations between ``start`` and ``end``, to the cent (the
    old gateway's ``categories``); products without a category count as ``other``."""
    observations = (
        select(
            func.coalesce(NormalizedProduct.category, UNCATEGORIZED).label("category"),
            effective_price().label("price"),
        )
        .join(NormalizedProduct, NormalizedProduct.id == PriceHistory.normalized_product_id)
        .where(PriceHistory.observed_date >= start, PriceHistory.observed_date <= end)
        .subquery()
    )
    stmt = select(observations.c.category, func.avg(observations.c.price)).group_by(observations.c.category)
    if category is not None:
        stmt = stmt.where(observations.c.category == category)
    rows = await session.execute(stmt.order_by(observations.c.category))
    return {name: _round(mean, 2) for name, mean in rows}


def _change_pct(first: Decimal | float | None, last: Decimal | float | None) -> float | None:
    if first is None or last is None or first == 0:
        return None
    change = (Decimal(str(last)) / Decimal(str(first)) - 1) * 100
    return float(change.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _round(value: float | Decimal, places: int) -> float:
    return float(Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


async def inflation_snapshot(
    session: AsyncSession, *, category: str | None = None, period: Period = "1y", today: date | None = None
) -> dict[str, Any]:
    """The CartSnitch basket index (monthly, chained Jevons) of the period next to the matching published CPI-U
    series, both rebased to 100 at the period's first month that has a value."""
    today = today or date.today()
    end = cpi.month_of(today)
    if period == "all-time":
        first = await first_observed(session, category=category)
        start = cpi.month_of(first) if first is not None and cpi.month_of(first) < end else end
    else:
        start = end - PERIOD_MONTHS[period]
    months = range(start, end + 1)
    links = {
        link.month: link
        for link in await basket_links(session, category=category, start=cpi.month_start(start), end=today)
    }
    series, own_series = cpi.series_for_category(category)
    notes: list[str] = []
    if not own_series:
        notes.append(
            f"CPI-U has no subindex for {category!r}: it is compared with {series.title} ({series.series_id})."
        )

    basket: dict[int, float] = {}
    level: float | None = None
    base_month: int | None = None
    for month in months:
        link = links.get(month)
        if base_month is None:
            if link is not None:
                base_month, level = month, BASE_LEVEL
        elif level is not None:
            if link is not None and link.mean_log_relative is not None:
                level *= math.exp(link.mean_log_relative)
            else:
                level = None
                notes.append(
                    f"The basket chain breaks at {cpi.month_label(month)}: no product was priced at the same "
                    f"store in both {cpi.month_label(month - 1)} and {cpi.month_label(month)}, so this and "
                    "later months have no basket index."
                )
        if level is not None:
            basket[month] = level
    if base_month is None:
        notes.append("No prices were observed in this period: the basket index is empty.")
    elif base_month != start:
        notes.append(f"The basket index starts at {cpi.month_label(base_month)}, the period's first month with prices.")

    published = {month: series.level(month) for month in months}
    cpi_base = next((value for value in published.values() if value is not None), None)
    absent = [cpi.month_label(m) for m, value in published.items() if value is None]
    if absent:
        notes.append(
            f"{series.series_id} has no published value for {', '.join(absent)}; those months are null, "
            "never estimated."
        )

    out_months = []
    for month in months:
        value = published[month]
        link = links.get(month)
        out_months.append(
            {
                "month": cpi.month_label(month),
                "basket_index": _round(basket[month], 3) if month in basket else None,
                "matched_products": link.matched if link is not None and month != base_month else 0,
                "cpi_value": _number(value) if value is not None else None,
                "cpi_index": _round(value / cpi_base * 100, 3) if value is not None and cpi_base else None,
            }
        )
    basket_values = [basket[m] for m in months if m in basket]
    cpi_values = [v for v in published.values() if v is not None]
    means = await category_means(session, category=category, start=cpi.month_start(start), end=today)
    return {
        "category": category,
        "period": period,
        "months": out_months,
        "basket_change_pct": _change_pct(basket_values[0], basket_values[-1]) if len(basket_values) > 1 else None,
        "cpi_change_pct": _change_pct(cpi_values[0], cpi_values[-1]) if len(cpi_values) > 1 else None,
        "cpi": {
            "series_id": series.series_id,
            "title": series.title,
            "area": series.area,
            "base": cpi.BASE,
            "seasonally_adjusted": False,
            "matches_category": own_series,
            "first_month": cpi.month_label(series.first_month),
            "last_month": cpi.month_label(series.last_month),
            "missing_months": [cpi.month_label(m) for m in series.missing_months],
            "source": cpi.SOURCE,
        },
        "notes": notes,
        # the old gateway's members: its index (now the basket index of the period's last month that has one),
        # the level both indices start from, and the mean price of each category over the period
        "cartsnitch_index": _round(basket_values[-1], 3) if basket_values else BASE_LEVEL,
        "cpi_baseline": BASE_LEVEL,
        "categories": means,
    }
