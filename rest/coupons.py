"""Coupon routes: the coupons that can be used today, at a store or for what the user buys."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from hub import keys
from hub.infra import cache
from hub.store import coupons
from rest import paging, responses
from rest.api import API
from rest.auth import require_user
from rest.openapi import RouteTable
from rest.types import LocalMidnight, Money
from rest.validation import parse_query

routes = RouteTable("coupons")


class CouponsQuery(paging.PageQuery):
    store_id: uuid.UUID | None = Field(None, description="only this store's coupons")
    include_expired: bool = Field(False, description="also list coupons whose last day has passed")


class CouponOut(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    store_name: str
    title: str
    description: str = Field(description="the coupon's description, or its title when it has none")
    discount_value: Money
    discount_type: str = Field(description="percent, fixed, bogo or buy_x_get_y")
    min_purchase: Money | None
    product_id: uuid.UUID | None = Field(description="null for a store-wide coupon")
    starts_at: date | None = Field(description="the first day it is valid (null: no start)")
    expires_at: LocalMidnight | None = Field(description="the last day it is valid (null: no end)")
    requires_clip: bool


def _coupon_out(row: coupons.CouponRow) -> CouponOut:
    return CouponOut(
        id=row.id,
        store_id=row.store_id,
        store_name=row.store_name,
        title=row.title,
        description=row.description or row.title,
        discount_value=row.discount_value,
        discount_type=row.discount_type,
        min_purchase=row.min_purchase,
        product_id=row.product_id,
        starts_at=row.starts_at,
        expires_at=row.expires_at,
        requires_clip=row.requires_clip,
    )


def _position(row: coupons.CouponRow) -> tuple[datetime, uuid.UUID]:
    return row.created_at, row.id


def _cached_position(row: dict[str, Any]) -> tuple[str, str]:
    return row["_created_at"], row["id"]


def _hide_position(row: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != "_created_at"}


# Registered before any /coupons/{…} route so that "relevant" is never read as a coupon id.
@routes.get(
    f"{API}/coupons/relevant",
    summary="Active coupons for products and stores the user buys from",
    query=paging.PageQuery,
    response=list[CouponOut],
    paged=True,
)
async def list_relevant_coupons(request: web.Request) -> web.Response:
    principal = await require_user(request)
    query = parse_query(request, paging.PageQuery)
    page = paging.page_of(request, query, paging.utc_datetime, uuid.UUID)
    async with request.app[keys.sessionmaker]() as session:
        rows = await coupons.list_relevant_coupons(
            session,
            user_id=principal.user_id,
            today=date.today(),
            limit=page.limit,
            offset=page.offset,
            after=page.after,
        )
    return paging.respond(request, rows, page, render=_coupon_out, key=_position)


@routes.get(
    f"{API}/coupons",
    summary="Coupons valid today (optionally at one store), newest first",
    query=CouponsQuery,
    response=list[CouponOut],
    paged=True,
)
async def list_coupons(request: web.Request) -> web.Response:
    await require_user(request)
    query = parse_query(request, CouponsQuery)
    page = paging.page_of(request, query, paging.utc_datetime, uuid.UUID)
    today = date.today()

    async def compute() -> bytes:
        async with request.app[keys.sessionmaker]() as session:
            rows = await coupons.list_coupons(
                session,
                today=today,
                store_id=query.store_id,
                include_expired=query.include_expired,
                limit=page.limit,
                offset=page.offset,
                after=page.after,
            )
        return responses.dumps(
            [{**_coupon_out(row).model_dump(mode="json"), "_created_at": row.created_at.isoformat()} for row in rows]
        )

    key = f"{request.path}?{request.query_string}@{today.isoformat()}"
    rows = orjson.loads(await request.app[keys.cache].get_or_compute(cache.COUPONS, key, compute))
    return paging.respond(request, rows, page, render=_hide_position, key=_cached_position)
