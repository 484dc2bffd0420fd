"""The PWA profile: the CartSnitch PWA's calls, answered in the shapes of its TypeScript types (``src/types/api.ts``
of cartsnitch/cartsnitch: camelCase, stores named by slug). A serialisation layer over the queries the /api/v1
routes run; a deployment builds the PWA with ``VITE_API_URL=/pwa/api/v1``.

Lists are complete up to ``MAX_LIST`` rows, newest first; beyond that ``Link: <…>; rel="next"`` continues them.
Date-backed values read ``YYYY-MM-DDT00:00:00`` (no offset), so the pages' ``new Date(…)`` shows the same day in
every time zone."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, Field, WithJsonSchema, field_validator

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError
from hub.infra import cache
from hub.store import alerts, coupons, prices, products, purchases, stores
from hub.store.models import NormalizedProduct
from hub.store.prices import UNCATEGORIZED, LatestPrice
from hub.store.purchases import LineItem, PurchaseRow
from rest import responses
from rest import stores as store_routes
from rest.api import PWA
from rest.auth import require_user
from rest.caching import cached_json
from rest.openapi import RouteTable
from rest.paging import CursorQuery, capped_page, respond, utc_datetime
from rest.products import MAX_PRICE_POINTS
from rest.types import LocalMidnight, Money, local_midnight
from rest.validation import parse_query, path_uuid

routes = RouteTable("pwa")
MAX_LIST = 500
HISTORY_DAYS = 90
_PRODUCT_ID = {"product_id": "the product's id (UUID)"}


def _absent(value: object) -> bool:
    return value is None


OptionalText = Annotated[str | None, WithJsonSchema({"type": "string"}, mode="serialization")]
"""A TypeScript optional string (``name?: string``): left out of the object when there is no value."""


class PwaPurchaseItem(BaseModel):
    """The PWA's ``PurchaseItem``: one line of a receipt."""

    id: uuid.UUID
    productId: str = Field(description='the matched product\'s id; "" when the line matched no product')
    name: str = Field(description="the item's name as printed on the receipt")
    quantity: Money
    price: Money = Field(description="the line total")
    unitPrice: Money


class PwaPurchase(BaseModel):
    """The PWA's ``Purchase``: one receipt with its lines."""

    id: uuid.UUID
    storeId: str = Field(description="the store's slug")
    storeName: str
    date: LocalMidnight
    total: Money
    items: list[PwaPurchaseItem]


class PwaProductPrice(BaseModel):
    """The PWA's ``ProductPrice``: a product's latest price at one store."""

    storeId: str = Field(description="the store's slug")
    storeName: str
    price: Money = Field(description="the lowest of the regular, sale and loyalty prices last seen")
    lastUpdated: LocalMidnight = Field(description="the day that price was seen")


class PwaProduct(BaseModel):
    """The PWA's ``Product``: a catalogue product with its latest price at each store."""

    id: uuid.UUID
    name: str
    brand: str = Field(description='"" when the brand is unknown')
    category: str = Field(description=f"{UNCATEGORIZED!r} when the product has no category")
    imageUrl: OptionalText = Field(None, exclude_if=_absent)
    prices: list[PwaProductPrice] = Field(description="one entry per store that prices the product")


class PwaPriceHistory(BaseModel):
    """The PWA's ``PriceHistory``: a store's price on a day (its last observation on or before that day)."""

    date: LocalMidnight
    price: Money = Field(description="the lowest of the regular, sale and loyalty prices")
    storeId: str = Field(description="the store's slug")


class PwaCoupon(BaseModel):
    """The PWA's ``Coupon``."""

    id: uuid.UUID
    productId: OptionalText = Field(None, exclude_if=_absent, description="absent for a store-wide coupon")
    storeName: str
    description: str
    discount: str = Field(description='for display: "$1.00", "20% off", "Buy 1 get 1 free" or "Get 1 free"')
    expiresAt: str = Field(description='the last valid day as YYYY-MM-DDT00:00:00; "" when it has no end')
    code: OptionalText = Field(None, exclude_if=_absent, description="the code to enter, when the coupon has one")


class PwaPriceAlert(BaseModel):
    """The PWA's ``PriceAlert``: one of the user's target-price alerts."""

    id: uuid.UUID
    productId: uuid.UUID
    productName: str
    targetPrice: Money
    currentPrice: Money = Field(description="the lowest latest price across stores; 0 when never seen")
    triggered: bool


class ProductsQuery(CursorQuery):
    q: str | None = Field(None, max_length=200, description="part of the name or brand (any case), or an exact UPC")

    @field_validator("q")
    @classmethod
    def _search_text(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value.strip() or None


# Rows render to plain dicts, validated as their model once per response (``respond(…, model=…)``): a purchase
# list builds hundreds of items, and a model per item costs several times the query.
def _item(item: LineItem) -> dict[str, object]:
    return {
        "id": item.id,
        "productId": str(item.product_id) if item.product_id is not None else "",
        "name": item.name,
        "quantity": item.quantity,
        "price": item.total_price,
        "unitPrice": item.unit_price,
    }


def _purchase(row: PurchaseRow, items: Iterable[LineItem]) -> dict[str, object]:
    return {
        "id": row.id,
        "storeId": row.store_slug,
        "storeName": row.store_name,
        "date": row.purchase_date,
        "total": row.total,
        "items": [_item(item) for item in items],
    }


def _product(product: NormalizedProduct | products.Product, latest: Iterable[LatestPrice]) -> dict[str, object]:
    return {
        "id": product.id,
        "name": product.canonical_name,
        "brand": product.brand or "",
        "category": product.category or UNCATEGORIZED,
        "prices": [
            {"storeId": p.store_slug, "storeName": p.store_name, "price": p.price, "lastUpdated": p.observed_date}
            for p in latest
        ],
    }


def _discount(kind: str, value: Decimal) -> str:
    if kind == "percent":
        return f"{value.normalize():f}% off"
    if kind == "bogo":
        return "Buy 1 get 1 free"
    if kind == "buy_x_get_y":
        return "Get 1 free"
    return f"${value:,.2f}"


def _coupon(row: coupons.CouponRow) -> dict[str, object]:
    return {
        "id": row.id,
        "productId": str(row.product_id) if row.product_id is not None else None,
        "storeName": row.store_name,
        "description": row.description or row.title,
        "discount": _discount(row.discount_type, row.discount_value),
        "expiresAt": local_midnight(row.expires_at) if row.expires_at is not None else "",
        "code": row.coupon_code,
    }


def _alert(target: alerts.TargetAlert) -> dict[str, object]:
    return {
        "id": target.id,
        "productId": target.product_id,
        "productName": target.product_name,
        "targetPrice": target.target_price,
        "currentPrice": target.current_price if target.current_price is not None else Decimal(0),
        "triggered": target.triggered,
    }


def _charted(points: Iterable[products.PricePoint], slugs: dict[uuid.UUID, str]) -> list[PwaPriceHistory]:
    """On every day some store's price was observed, each store's price that day: its last observation on or
    before it. ProductDetail puts the history in rows by day (``dateMap.get(h.date)[h.storeId] = h.price``) and
    draws a store's line only between rows that hold its price; stores are seen on different days, so their
    observations alone chart as scattered dashes."""
    held: dict[str, Decimal] = {}  # by slug, in the order the stores were first seen
    charted: list[PwaPriceHistory] = []
    for day, observed in itertools.groupby(points, key=lambda point: point.observed_date):
        for point in observed:  # oldest first: the day's last observation is the store's price that day
            held[slugs[point.store_id]] = point.price
        charted.extend(PwaPriceHistory(date=day, price=price, storeId=slug) for slug, price in held.items())
    return charted


def _not_found(product_id: uuid.UUID) -> AppError:
    return AppError(ProblemType.NOT_FOUND, f"no product {product_id}")


@routes.get(
    f"{PWA}/purchases",
    summary=f"The user's purchases with their items, newest first (Purchase[]; {MAX_LIST} per response)",
    query=CursorQuery,
    response=list[PwaPurchase],
    paged=True,
)
async def list_pwa_purchases(request: web.Request) -> web.Response:
    principal = await require_user(request)
    page = capped_page(request, parse_query(request, CursorQuery).cursor, MAX_LIST, dt.date.fromisoformat, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await purchases.list_purchases_for_user(
            session, user_id=principal.user_id, limit=page.limit + 1, after=page.after
        )
        items = await purchases.list_items_of_purchases(session, purchase_ids=[row.id for row in rows[: page.limit]])
    return respond(
        request,
        rows,
        page,
        lambda row: _purchase(row, items[row.id]),
        lambda row: (row.purchase_date, row.id),
        model=PwaPurchase,
    )


@routes.get(
    f"{PWA}/purchases/{{purchase_id}}",
    summary="One purchase with its items (Purchase)",
    response=PwaPurchase,
    errors=(404,),
    path_params={"purchase_id": "the purchase's id (UUID)"},
)
async def get_pwa_purchase(request: web.Request) -> web.Response:
    principal = await require_user(request)
    purchase_id = path_uuid(request, "purchase_id", "purchase")
    async with request.app[keys.sessionmaker]() as session:
        row = await purchases.get_purchase_for_user(session, user_id=principal.user_id, purchase_id=purchase_id)
        if row is None:
            raise AppError(ProblemType.NOT_FOUND, f"no purchase {purchase_id}")
        items = await purchases.list_purchase_items(session, purchase_id=purchase_id)
    return responses.json(PwaPurchase.model_validate(_purchase(row, items)))


@routes.get(
    f"{PWA}/products",
    summary=f"Search the product catalogue, newest first, with each product's prices (Product[]; {MAX_LIST} per "
    "response)",
    query=ProductsQuery,
    response=list[PwaProduct],
    paged=True,
)
async def list_pwa_products(request: web.Request) -> web.Response:
    await require_user(request)
    query = parse_query(request, ProductsQuery)
    page = capped_page(request, query.cursor, MAX_LIST, utc_datetime, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await products.search_products(session, q=query.q, limit=page.limit + 1, after=page.after)
        latest = await prices.latest_prices(session, product_ids=[row.id for row in rows[: page.limit]])
    by_product: dict[uuid.UUID, list[LatestPrice]] = defaultdict(list)
    for price in latest:
        by_product[price.product_id].append(price)
    return respond(
        request,
        rows,
        page,
        lambda row: _product(row, by_product[row.id]),
        lambda row: (row.created_at, row.id),
        model=PwaProduct,
    )


@routes.get(
    f"{PWA}/products/{{product_id}}",
    summary="One product with its latest price at each store (Product)",
    response=PwaProduct,
    errors=(404,),
    cached=True,
    path_params=_PRODUCT_ID,
)
async def get_pwa_product(request: web.Request) -> web.Response:
    await require_user(request)
    product_id = path_uuid(request, "product_id", "product")

    async def compute() -> PwaProduct:
        async with request.app[keys.sessionmaker]() as session:
            product = await products.get_product(session, product_id=product_id)
            if product is None:
                raise _not_found(product_id)
            latest = await prices.latest_prices(session, product_ids=[product_id])
        return PwaProduct.model_validate(_product(product, latest))

    return await cached_json(request, cache.PRICES, compute)


@routes.get(
    f"{PWA}/products/{{product_id}}/prices",
    summary=f"A product's prices over the last {HISTORY_DAYS} days, oldest first: on each day a price was seen, "
    f"every store's price that day (PriceHistory[]; from the newest {MAX_PRICE_POINTS} observations)",
    response=list[PwaPriceHistory],
    errors=(404,),
    cached=True,
    path_params=_PRODUCT_ID,
)
async def list_pwa_price_history(request: web.Request) -> web.Response:
    await require_user(request)
    product_id = path_uuid(request, "product_id", "product")
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=HISTORY_DAYS)

    async def compute() -> list[PwaPriceHistory]:
        async with request.app[keys.sessionmaker]() as session:
            if await products.get_product(session, product_id=product_id) is None:
                raise _not_found(product_id)
            points = await products.list_price_points(
                session, product_id=product_id, since=since, limit=MAX_PRICE_POINTS
            )
            slugs = {store.id: store.slug for store in await stores.list_stores(session)}
        return _charted(points, slugs)

    return await cached_json(request, cache.PRICES, compute, key=f"{request.path}@{since.isoformat()}")


@routes.get(
    f"{PWA}/coupons",
    summary=f"Coupons valid today, newest first (Coupon[]; {MAX_LIST} per response)",
    query=CursorQuery,
    response=list[PwaCoupon],
    paged=True,
)
async def list_pwa_coupons(request: web.Request) -> web.Response:
    await require_user(request)
    page = capped_page(request, parse_query(request, CursorQuery).cursor, MAX_LIST, utc_datetime, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await coupons.list_coupons(session, today=dt.date.today(), limit=page.limit, after=page.after)
    return respond(request, rows, page, _coupon, lambda row: (row.created_at, row.id), model=PwaCoupon)


@routes.get(
    f"{PWA}/alerts",
    summary=f"The user's target-price alerts, newest first (PriceAlert[]; {MAX_LIST} per response)",
    query=CursorQuery,
    response=list[PwaPriceAlert],
    paged=True,
)
async def list_pwa_alerts(request: web.Request) -> web.Response:
    principal = await require_user(request)
    page = capped_page(request, parse_query(request, CursorQuery).cursor, MAX_LIST, utc_datetime, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await alerts.list_targets(session, user_id=principal.user_id, limit=page.limit + 1, after=page.after)
    return respond(request, rows, page, _alert, lambda row: (row.created_at.isoformat(), row.id), model=PwaPriceAlert)


@routes.get(
    f"{PWA}/me/email-in-address",
    summary="The address that files forwarded receipts under this user (as on /api/v1)",
    response=store_routes.EmailInOut,
)
async def get_pwa_email_in_address(request: web.Request) -> web.StreamResponse:
    return await store_routes.get_email_in_address(request)
