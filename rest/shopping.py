"""Shopping: saved shopping lists and the shopping-list optimiser (ClipArtist when configured, else our own)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

import aiohttp
from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from sqlalchemy.ext.asyncio import AsyncSession

from channels.errors import ProblemType
from hub import keys
from hub.domain import optimizer
from hub.errors import AppError, validation_error
from hub.store import shopping
from rest import responses
from rest.api import API
from rest.auth import require_user
from rest.openapi import RouteTable
from rest.paging import PageQuery, page_of, respond, utc_datetime
from rest.types import DecimalIn, LocalMidnight, Money
from rest.validation import parse_body, parse_query, path_uuid

routes = RouteTable("shopping")
log = logging.getLogger("hub.shopping")
MAX_ITEMS = 200
NO_NUL = r"^[^\x00]*$"

QuantityIn = Annotated[Decimal, DecimalIn("0.001", "9999", "0.001")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ItemIn(_Strict):
    product_id: uuid.UUID | None = None
    name: str = Field(min_length=1, max_length=255, pattern=NO_NUL)
    quantity: QuantityIn = Field(Decimal(1), json_schema_extra={"default": 1})


class ShoppingListIn(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    items: list[ItemIn] = Field(default_factory=list, max_length=MAX_ITEMS)


class ShoppingListReplacement(ShoppingListIn):
    """A PUT replaces the whole list: its items are required (``[]`` empties it), so that a body that forgot them
    does not delete them."""

    items: list[ItemIn] = Field(max_length=MAX_ITEMS)


class ListItemOut(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID | None
    name: str
    quantity: Money


class ShoppingListOut(BaseModel):
    id: uuid.UUID
    name: str
    items: list[ListItemOut]
    item_count: int = Field(description="how many items the list has")
    created_at: datetime
    updated_at: datetime


class OptimizeIn(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)
    preferred_stores: list[Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)]] | None = Field(
        None, max_length=50, description="shop only at these stores (slugs or ids); empty or absent: any store"
    )
    max_stores: int | None = Field(None, ge=1, le=50, description="visit at most this many stores")


class TripItemOut(BaseModel):
    product_id: uuid.UUID | None
    name: str
    quantity: Money
    unit_price: Money
    line_total: Money
    price: Money = Field(description="the old gateway's name for line_total: the trip's subtotal is their sum")


class TripCouponOut(BaseModel):
    coupon_id: uuid.UUID
    description: str
    savings: Money = Field(description="what the coupon takes off this trip")
    id: uuid.UUID = Field(description="the coupon's id (coupon_id), as the old gateway's coupon objects")
    store_id: uuid.UUID
    store_name: str
    discount_value: Money
    discount_type: str = Field(description="percent, fixed, bogo or buy_x_get_y")
    product_id: uuid.UUID | None = Field(description="null for a store-wide coupon")
    expires_at: LocalMidnight | None = Field(description="the last day it is valid (null: no end)")


class TripOut(BaseModel):
    store_id: uuid.UUID
    store_name: str
    items: list[TripItemOut]
    subtotal: Money
    coupons: list[TripCouponOut] = Field(default_factory=list)
    savings: Money


class SingleStoreOut(BaseModel):
    store_id: uuid.UUID
    store_name: str
    total_cost: Money


class UnpricedItemOut(BaseModel):
    product_id: uuid.UUID | None
    name: str
    quantity: Money
    reason: Literal["unknown_product", "no_price", "store_limit"] | None = Field(
        None, description="no product matched the name; no candidate store prices it; left out by max_stores"
    )


class OptimizeOut(BaseModel):
    trips: list[TripOut]
    total_cost: Money
    total_savings: Money
    single_store: SingleStoreOut | None = Field(None, description="the cheapest store that sells every item")
    greedy_total_cost: Money | None = Field(
        None, description="the cost of buying each item where its shelf price is lowest, for comparison"
    )
    unpriced_items: list[UnpricedItemOut] = Field(default_factory=list)
    optimizer: Literal["local", "clipartist"]


def _list_out(saved: shopping.SavedList) -> ShoppingListOut:
    return ShoppingListOut(
        id=saved.id,
        name=saved.name,
        items=[ListItemOut.model_validate(item, from_attributes=True) for item in saved.items],
        item_count=len(saved.items),
        created_at=saved.created_at,
        updated_at=saved.updated_at,
    )


async def _checked_items(session: AsyncSession, items: Sequence[ItemIn]) -> list[shopping.NewItem]:
    unknown = await shopping.unknown_product_ids(
        session, product_ids=[item.product_id for item in items if item.product_id is not None]
    )
    if unknown:
        raise validation_error(
            [
                {"field": f"items.{i}.product_id", "message": f"no product {item.product_id}", "type": "not_found"}
                for i, item in enumerate(items)
                if item.product_id in unknown
            ],
            "unknown products",
        )
    return [shopping.NewItem(item.product_id, item.name, item.quantity) for item in items]


@routes.get(
    f"{API}/shopping/lists",
    summary="The user's saved shopping lists, newest first",
    query=PageQuery,
    response=list[ShoppingListOut],
    paged=True,
)
async def list_shopping_lists(request: web.Request) -> web.Response:
    principal = await require_user(request)
    page = page_of(request, parse_query(request, PageQuery), utc_datetime, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await shopping.list_shopping_lists(
            session, user_id=principal.user_id, limit=page.limit + 1, offset=page.offset, after=page.after
        )
    return respond(request, rows, page, _list_out, lambda row: (row.created_at.isoformat(), row.id))


@routes.post(
    f"{API}/shopping/lists", summary="Save a shopping list", body=ShoppingListIn, response=ShoppingListOut, status=201
)
async def create_shopping_list(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await parse_body(request, ShoppingListIn)
    async with request.app[keys.sessionmaker].begin() as session:
        items = await _checked_items(session, body.items)
        saved = await shopping.insert_shopping_list(
            session, user_id=principal.user_id, name=body.name, items=items, now=datetime.now(UTC)
        )
    return responses.created(_list_out(saved), location=f"{API}/shopping/lists/{saved.id}")


@routes.get(
    f"{API}/shopping/lists/{{list_id}}",
    summary="One saved shopping list",
    response=ShoppingListOut,
    errors=(404,),
    path_params={"list_id": "the shopping list id"},
)
async def get_shopping_list(request: web.Request) -> web.Response:
    principal = await require_user(request)
    list_id = path_uuid(request, "list_id", "shopping list")
    async with request.app[keys.sessionmaker]() as session:
        saved = await shopping.get_shopping_list(session, user_id=principal.user_id, list_id=list_id)
    if saved is None:
        raise AppError(ProblemType.NOT_FOUND, f"no shopping list {list_id}")
    return responses.json(_list_out(saved))


@routes.put(
    f"{API}/shopping/lists/{{list_id}}",
    summary="Replace a saved shopping list's name and items",
    body=ShoppingListReplacement,
    response=ShoppingListOut,
    errors=(404,),
    path_params={"list_id": "the shopping list id"},
)
async def replace_shopping_list(request: web.Request) -> web.Response:
    principal = await require_user(request)
    list_id = path_uuid(request, "list_id", "shopping list")
    body = await parse_body(request, ShoppingListReplacement)
    async with request.app[keys.sessionmaker].begin() as session:
        items = await _checked_items(session, body.items)
        saved = await shopping.replace_shopping_list(
            session, user_id=principal.user_id, list_id=list_id, name=body.name, items=items, now=datetime.now(UTC)
        )
        if saved is None:
            raise AppError(ProblemType.NOT_FOUND, f"no shopping list {list_id}")
    return responses.json(_list_out(saved))


@routes.delete(
    f"{API}/shopping/lists/{{list_id}}",
    summary="Delete a saved shopping list",
    status=204,
    errors=(404,),
    path_params={"list_id": "the shopping list id"},
)
async def delete_shopping_list(request: web.Request) -> web.Response:
    principal = await require_user(request)
    list_id = path_uuid(request, "list_id", "shopping list")
    async with request.app[keys.sessionmaker].begin() as session:
        deleted = await shopping.delete_shopping_list(session, user_id=principal.user_id, list_id=list_id)
    if not deleted:
        raise AppError(ProblemType.NOT_FOUND, f"no shopping list {list_id}")
    return responses.no_content()


async def _ask_clipartist(request: web.Request, user_id: str, body: OptimizeIn) -> OptimizeOut | None:
    """ClipArtist's plan, or None (logged) when it fails in any way: we then optimise ourselves."""
    settings = request.app[keys.settings]
    url = f"{str(settings.clipartist_url).rstrip('/')}/optimize"
    headers = {"X-Service-Key": settings.service_key} if settings.service_key else {}
    payload = {
        "user_id": user_id,
        "items": [
            {
                "product_id": str(item.product_id) if item.product_id else None,
                "name": item.name,
                "quantity": float(item.quantity),
            }
            for item in body.items
        ],
        "preferred_stores": body.preferred_stores or None,
        "max_stores": body.max_stores,
    }
    try:
        async with request.app[keys.http_client].post(url, json=payload, headers=headers) as upstream:
            if upstream.status != 200:
                log.warning("ClipArtist answered %s: optimising locally", upstream.status)
                return None
            data = await upstream.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("ClipArtist failed (%s): optimising locally", type(exc).__name__)
        return None
    if not isinstance(data, dict):
        log.warning("ClipArtist answered with a %s, not a plan: optimising locally", type(data).__name__)
        return None
    try:
        return OptimizeOut.model_validate({**data, "optimizer": "clipartist"})
    except ValidationError as exc:
        log.warning("ClipArtist's plan does not fit the contract (%d errors): optimising locally", exc.error_count())
        return None


def _optimize_out(problem: optimizer.Problem, result: optimizer.Result) -> OptimizeOut:
    plan = result.plan
    trips = [
        TripOut(
            store_id=trip.store.id,
            store_name=trip.store.name,
            items=[
                TripItemOut(
                    product_id=p.line.product_id,
                    name=p.line.name,
                    quantity=p.line.quantity,
                    unit_price=p.unit_price,
                    line_total=p.line_total,
                    price=p.line_total,
                )
                for p in trip.lines
            ],
            subtotal=trip.subtotal,
            coupons=[
                TripCouponOut(
                    coupon_id=a.coupon.id,
                    description=a.coupon.description,
                    savings=a.savings,
                    id=a.coupon.id,
                    store_id=a.coupon.store_id,
                    store_name=trip.store.name,
                    discount_value=a.coupon.discount_value,
                    discount_type=a.coupon.discount_type,
                    product_id=a.coupon.product_id,
                    expires_at=a.coupon.expires_at,
                )
                for a in trip.coupons
            ],
            savings=trip.savings,
        )
        for trip in plan.trips
    ]
    unpriced = []
    for i in sorted((*plan.unpriced, *plan.dropped)):
        line = problem.lines[i]
        reason: Literal["unknown_product", "no_price", "store_limit"] = (
            "store_limit" if i in plan.dropped else "unknown_product" if line.product_id is None else "no_price"
        )
        unpriced.append(
            UnpricedItemOut(product_id=line.product_id, name=line.name, quantity=line.quantity, reason=reason)
        )
    single = result.single_store
    single_out = None
    if single is not None and single.trips:
        single_out = SingleStoreOut(
            store_id=single.trips[0].store.id, store_name=single.trips[0].store.name, total_cost=single.total_cost
        )
    return OptimizeOut(
        trips=trips,
        total_cost=plan.total_cost,
        total_savings=plan.total_savings,
        single_store=single_out,
        greedy_total_cost=result.greedy.total_cost,
        unpriced_items=unpriced,
        optimizer="local",
    )


@routes.post(
    f"{API}/shopping/optimize",
    summary="The cheapest way to buy a list across stores, coupons included",
    body=OptimizeIn,
    response=OptimizeOut,
)
async def optimize_shopping_list(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await parse_body(request, OptimizeIn)
    if request.app[keys.settings].clipartist_url:
        planned = await _ask_clipartist(request, principal.user_id, body)
        if planned is not None:
            return responses.json(planned)
    async with request.app[keys.sessionmaker]() as session:
        await _checked_items(session, body.items)
        store_ids = None
        if body.preferred_stores:  # an empty list is no preference, as the old gateway took it
            found = await shopping.resolve_stores(session, refs=body.preferred_stores)
            unknown = [
                {"field": f"preferred_stores.{i}", "message": f"no store {ref!r}", "type": "not_found"}
                for i, ref in enumerate(body.preferred_stores)
                if ref not in found
            ]
            if unknown:
                raise validation_error(unknown, "unknown stores")
            store_ids = sorted(set(found.values()))
        problem = await shopping.load_problem(
            session,
            lines=[optimizer.Line(item.product_id, item.name, item.quantity) for item in body.items],
            store_ids=store_ids,
            max_stores=body.max_stores,
            today=datetime.now(UTC).date(),
        )
    result = await asyncio.to_thread(optimizer.solve, problem)
    return responses.json(_optimize_out(problem, result))
