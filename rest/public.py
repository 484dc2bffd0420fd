"""Public dashboard routes (no sign-in): a product's price trend, a store comparison, the basket index against
CPI-U, and a product search. Cached per query string and served with ETags; the bodies are the public socket
rooms' snapshots."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError
from hub.infra import cache
from hub.store import products, public
from hub.store.prices import Category
from rest.api import API
from rest.caching import cached_json
from rest.openapi import RouteTable
from rest.types import LocalMidnight, Money
from rest.validation import parse_query, path_uuid

routes = RouteTable("public")


class TrendQuery(BaseModel):
    days: int = Field(90, ge=1, le=365, description="observations of the last N days")


class TrendPointOut(BaseModel):
    date: LocalMidnight
    price: Money = Field(description="the effective price: the lowest of regular, sale and loyalty")
    store_id: uuid.UUID
    store_name: str


class PublicTrendOut(BaseModel):
    product_id: uuid.UUID
    product_name: str
    data_points: list[TrendPointOut] = Field(description="oldest first")


class StoreComparisonQuery(BaseModel):
    product_ids: list[uuid.UUID] | None = Field(
        None,
        min_length=1,
        max_length=public.MAX_COMPARED_PRODUCTS,
        description="comma-separated or repeated product ids; without them, the products priced at the most stores",
    )
    category: Category | None = Field(None, description="only products of this category")


class ComparedPriceOut(BaseModel):
    store_id: uuid.UUID
    store_name: str
    price: Money = Field(description="the effective price: the lowest of regular, sale and loyalty")
    observed_date: date
    current_price: Money = Field(description="the old gateway's name for price")
    last_seen_at: LocalMidnight = Field(description="the old gateway's name for observed_date")


class ComparedProductOut(BaseModel):
    product_id: uuid.UUID
    product_name: str
    prices: list[ComparedPriceOut]
    cheapest_store_id: uuid.UUID | None


class ComparedStoreOut(BaseModel):
    store_id: uuid.UUID
    store_name: str
    basket_total: Money | None = Field(
        description="the sum of the latest prices of the products every compared store prices; null when none is"
    )
    items_priced: int = Field(description="how many of the compared products this store prices")


class StoreComparisonOut(BaseModel):
    products: list[ComparedProductOut]
    stores: list[ComparedStoreOut] = Field(description="cheapest basket first")
    basket_product_ids: list[uuid.UUID] = Field(description="the products in every store's basket total")


class InflationQuery(BaseModel):
    category: Category | None = Field(None, description="a category (default: all food at home)")
    period: public.Period = Field(
        "1y",
        description="from N months before the current month to the current month (the inflation room's is 1y); "
        "all-time starts at the first month with prices",
    )


class InflationMonthOut(BaseModel):
    month: str = Field(pattern=r"^\d{4}-\d{2}$")
    basket_index: float | None = Field(description="chained Jevons basket index, 100 at the first month with prices")
    matched_products: int = Field(description="(product, store) pairs priced in this month and the one before")
    cpi_value: float | None = Field(description="the published CPI-U level (1982-84=100); null when BLS has none")
    cpi_index: float | None = Field(description="the CPI-U level rebased to 100 at the period's first CPI month")


class CPISeriesOut(BaseModel):
    series_id: str
    title: str
    area: str
    base: Literal["1982-84=100"]
    seasonally_adjusted: bool
    matches_category: bool = Field(description="false when the category has no CPI-U subindex (Food at home)")
    first_month: str
    last_month: str
    missing_months: list[str] = Field(description="months inside the series that BLS did not publish")
    source: str


class InflationOut(BaseModel):
    category: Category | None
    period: public.Period
    months: list[InflationMonthOut]
    basket_change_pct: float | None = Field(description="the last month with an index against the first")
    cpi_change_pct: float | None = Field(description="the last month with a CPI value against the first")
    cpi: CPISeriesOut
    notes: list[str]
    cartsnitch_index: float = Field(
        description="the basket index of the period's last month that has one (100: no change); the old "
        "gateway's member"
    )
    cpi_baseline: float = Field(description="the level both indices start from (100); the old gateway's member")
    categories: dict[str, float] = Field(
        description="the mean effective price of each category's observations in the period; the old gateway's member"
    )


def _cache_key(request: web.Request) -> str:
    # The windows end today, so a cached body must not outlive the day it was computed on.
    return f"{request.path}?{request.query_string}@{date.today().isoformat()}"


@routes.get(
    f"{API}/public/trends/{{product_id}}",
    summary="A product's price history at every store",
    auth="none",
    query=TrendQuery,
    response=PublicTrendOut,
    errors=(404,),
    cached=True,
    path_params={"product_id": "the product id"},
)
async def get_public_trend(request: web.Request) -> web.Response:
    product_id = path_uuid(request, "product_id", "product")
    query = parse_query(request, TrendQuery)

    async def compute() -> PublicTrendOut:
        async with request.app[keys.sessionmaker]() as session:
            snapshot = await public.trend_snapshot(session, product_id=product_id, days=query.days)
        if snapshot is None:
            raise AppError(ProblemType.NOT_FOUND, f"no product {product_id}")
        return PublicTrendOut.model_validate(snapshot)

    return await cached_json(request, cache.PRICES, compute, key=_cache_key(request))


@routes.get(
    f"{API}/public/store-comparison",
    summary="Latest prices of up to 20 products at every store",
    auth="none",
    query=StoreComparisonQuery,
    response=StoreComparisonOut,
    cached=True,
)
async def get_store_comparison(request: web.Request) -> web.Response:
    query = parse_query(request, StoreComparisonQuery)

    async def compute() -> StoreComparisonOut:
        async with request.app[keys.sessionmaker]() as session:
            snapshot = await public.store_comparison_snapshot(
                session, product_ids=query.product_ids, category=query.category
            )
        return StoreComparisonOut.model_validate(snapshot)

    return await cached_json(request, cache.PRICES, compute, key=_cache_key(request))


@routes.get(
    f"{API}/public/inflation",
    summary="CartSnitch basket index against the BLS CPI-U",
    auth="none",
    query=InflationQuery,
    response=InflationOut,
    cached=True,
)
async def get_inflation(request: web.Request) -> web.Response:
    query = parse_query(request, InflationQuery)

    async def compute() -> InflationOut:
        async with request.app[keys.sessionmaker]() as session:
            snapshot = await public.inflation_snapshot(session, category=query.category, period=query.period)
        return InflationOut.model_validate(snapshot)

    return await cached_json(request, cache.PRICES, compute, key=_cache_key(request))


MAX_SEARCH_RESULTS = 20


class PublicProductQuery(BaseModel):
    q: str | None = Field(
        None, max_length=100, description="part of the name or brand (any case), or an exact UPC; empty: newest"
    )
    category: Category | None = None
    limit: int = Field(10, ge=1, le=MAX_SEARCH_RESULTS)

    @field_validator("q")
    @classmethod
    def _search_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value.strip() or None


class PublicProductOut(BaseModel):
    id: uuid.UUID
    name: str
    brand: str | None
    category: str | None


@routes.get(
    f"{API}/public/products",
    summary="Find products by name, brand or UPC (for public dashboards)",
    auth="none",
    query=PublicProductQuery,
    response=list[PublicProductOut],
    cached=True,
)
async def search_public_products(request: web.Request) -> web.Response:
    query = parse_query(request, PublicProductQuery)

    async def compute() -> list[PublicProductOut]:
        async with request.app[keys.sessionmaker]() as session:
            rows = await products.search_products(session, q=query.q, category=query.category, limit=query.limit)
        return [PublicProductOut(id=p.id, name=p.canonical_name, brand=p.brand, category=p.category) for p in rows]

    return await cached_json(request, cache.PRODUCTS, compute)
