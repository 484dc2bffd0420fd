"""Price routes: trends over a window, recent increases, and a side-by-side comparison of products."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from hub import keys
from hub.infra import cache
from hub.store import prices
from hub.store.prices import Category
from rest import paging, responses
from rest.api import API
from rest.auth import require_user
from rest.openapi import RouteTable
from rest.types import LocalMidnight, Money
from rest.validation import parse_query

routes = RouteTable("prices")
MAX_COMPARED = 50
MAX_TREND_POINTS = 500


class TrendsQuery(paging.PageQuery):
    category: Category | None = Field(None, description="only products of this category")
    days: int = Field(30, ge=1, le=365, description="the window: observations of the last N days")
    group_by: Literal["product", "category"] = Field("product", description="one row per product or per category")


class TrendPointOut(BaseModel):
    date: LocalMidnight
    price: Money = Field(description="the effective price: the lowest of regular, sale and loyalty")
    store_id: uuid.UUID
    store_name: str


class PriceTrendOut(BaseModel):
    product_id: uuid.UUID | None = Field(description="null when grouped by category")
    product_name: str | None = Field(description="null when grouped by category")
    category: str
    first_price: Money = Field(description="mean effective price on the first day observed in the window")
    last_price: Money = Field(description="mean effective price on the last day observed in the window")
    min_price: Money
    max_price: Money
    avg_price: Money
    change_pct: float | None = Field(description="last against first, in percent")
    observations: int
    last_observed_date: date
    data_points: list[TrendPointOut] = Field(
        description="the observations in the window, oldest first (the newest "
        f"{MAX_TREND_POINTS}); grouped by category, the category's mean price per store and day"
    )


class IncreasesQuery(paging.PageQuery):
    days: int = Field(30, ge=1, le=365, description="increases detected in the last N days")
    min_pct: Decimal = Field(Decimal(5), ge=0, le=1000, description="the smallest rise to report, in percent")


class PriceIncreaseOut(BaseModel):
    product_id: uuid.UUID
    product_name: str
    store_id: uuid.UUID
    store_name: str
    old_price: Money
    new_price: Money
    increase_pct: float
    detected_at: LocalMidnight = Field(description="the date of the new price")


class ComparisonQuery(BaseModel):
    product_ids: list[uuid.UUID] = Field(
        min_length=1, max_length=MAX_COMPARED, description="comma-separated or repeated product ids"
    )


class StorePriceOut(BaseModel):
    store_id: uuid.UUID
    store_name: str
    price: Money = Field(description="the effective price: the lowest of regular, sale and loyalty")
    regular_price: Money
    observed_date: date
    current_price: Money = Field(description="the old gateway's name for price")
    last_seen_at: LocalMidnight = Field(description="the old gateway's name for observed_date")


class ComparisonOut(BaseModel):
    product_id: uuid.UUID
    product_name: str
    prices: list[StorePriceOut]


def _trend_out(trend: prices.PriceTrend, points: list[prices.PriceObservation]) -> PriceTrendOut:
    return PriceTrendOut(
        product_id=trend.product_id,
        product_name=trend.product_name,
        category=trend.category,
        first_price=trend.first_price,
        last_price=trend.last_price,
        min_price=trend.min_price,
        max_price=trend.max_price,
        avg_price=trend.avg_price,
        change_pct=float(trend.change_pct) if trend.change_pct is not None else None,
        observations=trend.observations,
        last_observed_date=trend.last_observed,
        data_points=[
            TrendPointOut(date=p.observed_date, price=p.price, store_id=p.store_id, store_name=p.store_name)
            for p in points
        ],
    )


def _cached_row(row: dict[str, Any]) -> dict[str, Any]:
    return row


def _trend_position(group_by: str) -> Callable[[dict[str, Any]], tuple[str, str]]:
    field = "product_id" if group_by == "product" else "category"
    return lambda row: (row["last_observed_date"], row[field])


def _cache_key(request: web.Request, today: date) -> str:
    # The window ends today, so a cached page must not outlive the day it was computed on.
    return f"{request.path}?{request.query_string}@{today.isoformat()}"


@routes.get(
    f"{API}/prices/trends",
    summary="Price trend per product or per category over the last days",
    query=TrendsQuery,
    response=list[PriceTrendOut],
    paged=True,
)
async def list_price_trends(request: web.Request) -> web.Response:
    await require_user(request)
    query = parse_query(request, TrendsQuery)
    page = paging.page_of(request, query, date.fromisoformat, uuid.UUID if query.group_by == "product" else str)
    today = date.today()

    since = today - timedelta(days=query.days)

    async def compute() -> bytes:
        async with request.app[keys.sessionmaker]() as session:
            trends = await prices.price_trends(
                session,
                since=since,
                category=query.category,
                group_by=query.group_by,
                limit=page.limit,
                offset=page.offset,
                after=page.after,
            )
            if query.group_by == "product":
                by_product = await prices.product_observations(
                    session,
                    product_ids=[t.product_id for t in trends if t.product_id is not None],
                    since=since,
                    limit=MAX_TREND_POINTS,
                )
                points = {str(product_id): found for product_id, found in by_product.items()}
            else:
                points = await prices.category_observations(
                    session, categories=[t.category for t in trends], since=since, limit=MAX_TREND_POINTS
                )
        return responses.dumps([_trend_out(t, points[t.key]) for t in trends])

    rows = orjson.loads(await request.app[keys.cache].get_or_compute(cache.PRICES, _cache_key(request, today), compute))
    return paging.respond(request, rows, page, render=_cached_row, key=_trend_position(query.group_by))


@routes.get(
    f"{API}/prices/increases",
    summary="Products whose price rose recently, newest first",
    query=IncreasesQuery,
    response=list[PriceIncreaseOut],
    paged=True,
)
async def list_price_increases(request: web.Request) -> web.Response:
    await require_user(request)
    query = parse_query(request, IncreasesQuery)
    page = paging.page_of(request, query, date.fromisoformat, uuid.UUID, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        increases = await prices.price_increases(
            session,
            since=date.today() - timedelta(days=query.days),
            min_pct=query.min_pct,
            limit=page.limit,
            offset=page.offset,
            after=page.after,
        )
    return paging.respond(
        request,
        increases,
        page,
        render=lambda row: PriceIncreaseOut(
            product_id=row.product_id,
            product_name=row.product_name,
            store_id=row.store_id,
            store_name=row.store_name,
            old_price=row.old_price,
            new_price=row.new_price,
            increase_pct=float(row.increase_pct),
            detected_at=row.detected_at,
        ),
        key=lambda row: (row.detected_at, row.product_id, row.store_id),
    )


@routes.get(
    f"{API}/prices/comparison",
    summary="The latest price of each product at each store",
    query=ComparisonQuery,
    response=list[ComparisonOut],
)
async def compare_prices(request: web.Request) -> web.Response:
    await require_user(request)
    query = parse_query(request, ComparisonQuery)
    product_ids = list(dict.fromkeys(query.product_ids))
    async with request.app[keys.sessionmaker]() as session:
        names = await prices.product_names(session, product_ids=product_ids)
        latest = await prices.latest_prices(session, product_ids=list(names))
    by_product: dict[uuid.UUID, list[StorePriceOut]] = {pid: [] for pid in names}
    for row in latest:
        by_product[row.product_id].append(
            StorePriceOut(
                store_id=row.store_id,
                store_name=row.store_name,
                price=row.price,
                regular_price=row.regular_price,
                observed_date=row.observed_date,
                current_price=row.price,
                last_seen_at=row.observed_date,
            )
        )
    return responses.json(
        [
            ComparisonOut(product_id=pid, product_name=names[pid], prices=by_product[pid])
            for pid in product_ids
            if pid in names
        ]
    )
