"""Coupon queries: those valid on a day, at a store, or relevant to what a user buys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.keyset import newest_first
from hub.store.models import Coupon, Purchase, PurchaseItem, Store


@dataclass(frozen=True, slots=True)
class CouponRow:
    id: uuid.UUID
    store_id: uuid.UUID
    store_name: str
    title: str
    description: str | None
    discount_value: Decimal
    discount_type: str
    min_purchase: Decimal | None
    product_id: uuid.UUID | None
    starts_at: date | None
    expires_at: date | None
    requires_clip: bool
    created_at: datetime
    coupon_code: str | None


def valid_on(day: date) -> ColumnElement[bool]:
    """Coupons valid on ``day`` (a missing start or end does not limit them)."""
    return and_(
        or_(Coupon.valid_from.is_(None), Coupon.valid_from <= day),
        or_(Coupon.valid_to.is_(None), Coupon.valid_to >= day),
    )


def _rows() -> Select[*tuple[Any, ...]]:
    return select(
        Coupon.id,
        Coupon.store_id,
        Store.name,
        Coupon.title,
        Coupon.description,
        Coupon.discount_value,
        Coupon.discount_type,
        Coupon.min_purchase,
        Coupon.normalized_product_id,
        Coupon.valid_from,
        Coupon.valid_to,
        Coupon.requires_clip,
        Coupon.created_at,
        Coupon.coupon_code,
    ).join(Store, Store.id == Coupon.store_id)


async def _page(
    session: AsyncSession,
    stmt: Select[*tuple[Any, ...]],
    *,
    limit: int,
    offset: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[CouponRow]:
    stmt = newest_first(session, stmt, created=Coupon.created_at, key=Coupon.id, after=after)
    stmt = stmt.offset(offset).limit(limit + 1)
    return [CouponRow(*row) for row in (await session.execute(stmt)).all()]


async def list_coupons(
    session: AsyncSession,
    *,
    today: date,
    store_id: uuid.UUID | None = None,
    include_expired: bool = False,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[CouponRow]:
    """Coupons valid today (or, with ``include_expired``, every coupon already started), newest first; one row
    more than ``limit`` tells the caller a next page exists."""
    stmt = _rows()
    if include_expired:
        stmt = stmt.where(or_(Coupon.valid_from.is_(None), Coupon.valid_from <= today))
    else:
        stmt = stmt.where(valid_on(today))
    if store_id is not None:
        stmt = stmt.where(Coupon.store_id == store_id)
    return await _page(session, stmt, limit=limit, offset=offset, after=after)


async def list_relevant_coupons(
    session: AsyncSession,
    *,
    user_id: str,
    today: date,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[CouponRow]:
    """Coupons valid today for a product the user bought, or store-wide at a store the user bought from."""
    bought = (
        select(PurchaseItem.normalized_product_id)
        .join(Purchase, Purchase.id == PurchaseItem.purchase_id)
        .where(Purchase.user_id == user_id, PurchaseItem.normalized_product_id.is_not(None))
    )
    shops = select(Purchase.store_id).where(Purchase.user_id == user_id)
    stmt = _rows().where(
        valid_on(today),
        or_(
            Coupon.normalized_product_id.in_(bought),
            and_(Coupon.normalized_product_id.is_(None), Coupon.store_id.in_(shops)),
        ),
    )
    return await _page(session, stmt, limit=limit, offset=offset, after=after)
