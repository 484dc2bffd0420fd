"""The product catalogue: search, one product with its current prices per store, and its price history."""

from __future__ import annotations

import datetime as dt
import uuid

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError
from hub.infra import cache
from hub.store import prices, products
from hub.store.prices import Category
from rest.api import API
from rest.auth import require_user
from rest.caching import cached_json
from rest.openapi import RouteTable
from rest.paging import PageQuery, page_of, respond, utc_datetime
from rest.types import LocalMidnight, Money
from rest.validation import parse_query, path_uuid

routes = RouteTable("products")
MAX_PRICE_POINTS = 1000
DEFAULT_HISTORY_DAYS = 365
_PRODUCT_ID = {"product_id": "the product's id (UUID)"}


class ProductQuery(PageQuery):
    q: str | None = Field(None, max_length=200, description="part of the name or brand (any case), or an exact UPC")
    category: Category | None = None
    store_id: uuid.UUID | None = Field(None, description="only products with prices at this store")

    @field_validator("q")
    @classmethod
    def _search_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value.strip() or None


class PriceHistoryQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    store_id: uuid.UUID | None = Field(None, description="only this store's prices")
    since: dt.date | None = Field(None, description=f"first date included; default {DEFAULT_HISTORY_DAYS} days ago")


class ProductOut(BaseModel):
    id: uuid.UUID
    name: str
    brand: str | None
    category: str | None
    upc: str | None = Field(description="the product's first UPC")
    size: str | None
    size_unit: str | None
    image_url: str | None


class StorePriceOut(BaseModel):
    store_id: uuid.UUID
    store_name: str
    current_price: Money = Field(description="the lowest of the regular, sale and loyalty prices last seen")
    last_seen_at: LocalMidnight = Field(description="the day that price was seen")


class ProductDetailOut(ProductOut):
    prices_by_store: list[StorePriceOut]


class PricePointOut(BaseModel):
    date: LocalMidnight
    price: Money
    store_id: uuid.UUID
    store_name: str


class PriceHistoryOut(BaseModel):
    product_id: uuid.UUID
    product_name: str
    data_points: list[PricePointOut] = Field(description=f"oldest first; at most the newest {MAX_PRICE_POINTS}")


def _first_upc(variants: object) -> str | None:
    if isinstance(variants, list) and variants and isinstance(variants[0], str):
        return variants[0]
    return None


def _product_fields(product: products.ListedProduct | products.Product) -> dict[str, object]:
    return {
        "id": product.id,
        "name": product.canonical_name,
        "brand": product.brand,
        "category": product.category,
        "upc": _first_upc(product.upc_variants),
        "size": product.size,
        "size_unit": product.size_unit,
        "image_url": None,
    }


def _product_out(product: products.ListedProduct) -> dict[str, object]:
    # the fields of ProductOut, written by orjson: the rows are the database's, and validating 20 models per page
    # cost five times the encoding (the driver's UUID is a subclass orjson leaves to the caller)
    return {**_product_fields(product), "id": str(product.id)}


def _not_found(product_id: uuid.UUID) -> AppError:
    return AppError(ProblemType.NOT_FOUND, f"no product {product_id}")


@routes.get(
    f"{API}/products", summary="Search the product catalogue", query=ProductQuery, response=list[ProductOut], paged=True
)
async def list_products(request: web.Request) -> web.Response:
    await require_user(request)
    query = parse_query(request, ProductQuery)
    page = page_of(request, query, utc_datetime, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await products.search_products(
            session,
            q=query.q,
            category=query.category,
            store_id=query.store_id,
            limit=page.limit + 1,
            offset=page.offset,
            after=page.after,
        )
    return respond(request, rows, page, _product_out, lambda row: (row.created_at, row.id))


@routes.get(
    f"{API}/products/{{product_id}}",
    summary="One product with its current price at each store",
    response=ProductDetailOut,
    errors=(404,),
    cached=True,
    path_params=_PRODUCT_ID,
)
async def get_product(request: web.Request) -> web.Response:
    await require_user(request)
    product_id = path_uuid(request, "product_id", "product")

    async def compute() -> ProductDetailOut:
        async with request.app[keys.sessionmaker]() as session:
            product = await products.get_product(session, product_id=product_id)
            if product is None:
                raise _not_found(product_id)
            latest = await prices.latest_prices(session, product_ids=[product_id])
        return ProductDetailOut.model_validate(
            {
                **_product_fields(product),
                "prices_by_store": [
                    StorePriceOut(
                        store_id=p.store_id,
                        store_name=p.store_name,
                        current_price=p.price,
                        last_seen_at=p.observed_date,
                    )
                    for p in latest
                ],
            }
        )

    return await cached_json(request, cache.PRICES, compute)


@routes.get(
    f"{API}/products/{{product_id}}/prices",
    summary="A product's price history, oldest first",
    query=PriceHistoryQuery,
    response=PriceHistoryOut,
    errors=(404,),
    cached=True,
    path_params=_PRODUCT_ID,
)
async def get_product_prices(request: web.Request) -> web.Response:
    await require_user(request)
    product_id = path_uuid(request, "product_id", "product")
    query = parse_query(request, PriceHistoryQuery)
    since = query.since or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DEFAULT_HISTORY_DAYS)

    async def compute() -> PriceHistoryOut:
        async with request.app[keys.sessionmaker]() as session:
            product = await products.get_product(session, product_id=product_id)
            if product is None:
                raise _not_found(product_id)
            points = await products.list_price_points(
                session, product_id=product_id, since=since, store_id=query.store_id, limit=MAX_PRICE_POINTS
            )
        return PriceHistoryOut(
            product_id=product.id,
            product_name=product.canonical_name,
            data_points=[
                PricePointOut(date=p.observed_date, price=p.price, store_id=p.store_id, store_name=p.store_name)
                for p in points
            ],
        )

    return await cached_json(request, cache.PRICES, compute)
