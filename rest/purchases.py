"""The user's purchases: the list, spending statistics and one purchase with its line items."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError, validation_error
from hub.store import purchases
from hub.store.purchases import LineItem, PurchaseRow
from rest import responses
from rest.api import API
from rest.auth import require_user
from rest.openapi import RouteTable
from rest.paging import PageQuery, page_of, respond
from rest.types import LocalMidnight, Money
from rest.validation import parse_query, path_uuid

routes = RouteTable("purchases")


class DateRange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    since: date | None = Field(None, description="first purchase date included (YYYY-MM-DD)")
    until: date | None = Field(None, description="last purchase date included (YYYY-MM-DD)")


class PurchaseQuery(PageQuery, DateRange):
    store_id: uuid.UUID | None = Field(None, description="only purchases at this store")


class StatsQuery(DateRange):
    period: Literal["month", "week", "year"] = Field(
        "month", description="by_period buckets: YYYY-MM, YYYY, or the Monday (YYYY-MM-DD) of each week"
    )


class PurchaseOut(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    store_name: str
    purchased_at: LocalMidnight = Field(description="the purchase date")
    total: Money
    item_count: int


class LineItemOut(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID | None = Field(description="the matched product, when the item was matched")
    name: str = Field(description="the item's name as printed on the receipt")
    quantity: Money
    unit_price: Money
    total_price: Money


class PurchaseDetailOut(PurchaseOut):
    subtotal: Money | None
    tax: Money | None
    savings_total: Money | None
    receipt_id: str
    store_location_id: uuid.UUID | None
    line_items: list[LineItemOut]


class StatsOut(BaseModel):
    total_spent: Money
    purchase_count: int
    by_store: dict[str, Money] = Field(description="amount spent per store name")
    by_category: dict[str, Money] = Field(description="line-item amounts per product category")
    by_period: dict[str, Money] = Field(description="amount spent per period, oldest first")


def _check_range(query: DateRange) -> None:
    if query.since is not None and query.until is not None and query.since > query.until:
        raise validation_error(
            [{"field": "since", "message": "must not be after until", "type": "value_error"}],
            "the date range is empty",
        )


def _summary(row: PurchaseRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "store_id": row.store_id,
        "store_name": row.store_name,
        "purchased_at": row.purchase_date,
        "total": row.total,
        "item_count": row.item_count,
    }


def _purchase_out(row: PurchaseRow) -> PurchaseOut:
    return PurchaseOut(**_summary(row))


def _line_item_out(item: LineItem) -> LineItemOut:
    return LineItemOut(
        id=item.id,
        product_id=item.product_id,
        name=item.name,
        quantity=item.quantity,
        unit_price=item.unit_price,
        total_price=item.total_price,
    )


@routes.get(
    f"{API}/purchases",
    summary="The user's purchases, newest first",
    query=PurchaseQuery,
    response=list[PurchaseOut],
    paged=True,
)
async def list_purchases(request: web.Request) -> web.Response:
    principal = await require_user(request)
    query = parse_query(request, PurchaseQuery)
    _check_range(query)
    page = page_of(request, query, date.fromisoformat, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await purchases.list_purchases_for_user(
            session,
            user_id=principal.user_id,
            store_id=query.store_id,
            since=query.since,
            until=query.until,
            limit=page.limit + 1,
            offset=page.offset,
            after=page.after,
        )
    return respond(request, rows, page, _purchase_out, lambda row: (row.purchase_date, row.id))


# Declared before /purchases/{purchase_id}: aiohttp matches routes in the order they are added.
@routes.get(
    f"{API}/purchases/stats",
    summary="The user's spending: totals by store, category and period",
    query=StatsQuery,
    response=StatsOut,
)
async def get_purchase_stats(request: web.Request) -> web.Response:
    principal = await require_user(request)
    query = parse_query(request, StatsQuery)
    _check_range(query)
    async with request.app[keys.sessionmaker]() as session:
        stats = await purchases.spending_stats(
            session, user_id=principal.user_id, period=query.period, since=query.since, until=query.until
        )
    return responses.json(
        StatsOut(
            total_spent=stats.total_spent,
            purchase_count=stats.purchase_count,
            by_store=stats.by_store,
            by_category=stats.by_category,
            by_period=stats.by_period,
        )
    )


@routes.get(
    f"{API}/purchases/{{purchase_id}}",
    summary="One purchase with its line items",
    response=PurchaseDetailOut,
    errors=(404,),
    path_params={"purchase_id": "the purchase's id (UUID)"},
)
async def get_purchase(request: web.Request) -> web.Response:
    principal = await require_user(request)
    purchase_id = path_uuid(request, "purchase_id", "purchase")
    async with request.app[keys.sessionmaker]() as session:
        row = await purchases.get_purchase_for_user(session, user_id=principal.user_id, purchase_id=purchase_id)
        if row is None:
            raise AppError(ProblemType.NOT_FOUND, f"no purchase {purchase_id}")
        items = await purchases.list_purchase_items(session, purchase_id=purchase_id)
    return responses.json(
        PurchaseDetailOut(
            **_summary(row),
            subtotal=row.subtotal,
            tax=row.tax,
            savings_total=row.savings_total,
            receipt_id=row.receipt_id,
            store_location_id=row.store_location_id,
            line_items=[_line_item_out(item) for item in items],
        )
    )
