"""Queries for a user's purchases, their line items and spending statistics."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    DateTime,
    Integer,
    Select,
    SQLColumnExpression,
    String,
    Subquery,
    Uuid,
    cast,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import NormalizedProduct, Purchase, PurchaseItem, Store

Period = Literal["month", "week", "year"]


@dataclass(frozen=True, slots=True)
class PurchaseRow:
    id: uuid.UUID
    store_id: uuid.UUID
    store_name: str
    purchase_date: date
    total: Decimal
    item_count: int
    subtotal: Decimal | None
    tax: Decimal | None
    savings_total: Decimal | None
    receipt_id: str
    store_location_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class SpendingStats:
    total_spent: Decimal
    purchase_count: int
    by_store: dict[str, Decimal]
    by_category: dict[str, Decimal]
    by_period: dict[str, Decimal]


def _purchases() -> Select[*tuple[Any, ...]]:
    return select(
        Purchase.id,
        Purchase.store_id,
        Purchase.purchase_date,
        Purchase.total,
        Purchase.subtotal,
        Purchase.tax,
        Purchase.savings_total,
        Purchase.receipt_id,
        Purchase.store_location_id,
    )


def _with_details(chosen: Subquery) -> Select[*tuple[Any, ...]]:
    """The chosen purchases with their store name and item count, both computed for those rows only."""
    item_count = select(func.count(PurchaseItem.id)).where(PurchaseItem.purchase_id == chosen.c.id).scalar_subquery()
    return select(
        chosen.c.id,
        chosen.c.store_id,
        Store.name,
        chosen.c.purchase_date,
        chosen.c.total,
        item_count,
        chosen.c.subtotal,
        chosen.c.tax,
        chosen.c.savings_total,
        chosen.c.receipt_id,
        chosen.c.store_location_id,
    ).join(Store, Store.id == chosen.c.store_id)


def _in_range(stmt: Select[*tuple[Any, ...]], since: date | None, until: date | None) -> Select[*tuple[Any, ...]]:
    if since is not None:
        stmt = stmt.where(Purchase.purchase_date >= since)
    if until is not None:
        stmt = stmt.where(Purchase.purchase_date <= until)
    return stmt


async def list_purchases_for_user(
    session: AsyncSession,
    *,
    user_id: str,
    store_id: uuid.UUID | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int,
    offset: int = 0,
    after: tuple[date, uuid.UUID] | None = None,
) -> list[PurchaseRow]:
    """Newest first (purchase date, then id, both descending); ``after`` continues from a keyset position."""
    stmt = _in_range(_purchases().where(Purchase.user_id == user_id), since, until)
    if store_id is not None:
        stmt = stmt.where(Purchase.store_id == store_id)
    if after is not None:
        after_date, after_id = after
        stmt = stmt.where(
            tuple_(Purchase.purchase_date, Purchase.id) < tuple_(literal(after_date, Date), literal(after_id, Uuid))
        )
    # The page is chosen from purchases alone (the (user_id, purchase_date, id) index serves the order and the
    # limit); store names and item counts are then looked up for those rows only.
    chosen = stmt.order_by(Purchase.purchase_date.desc(), Purchase.id.desc()).offset(offset).limit(limit).subquery()
    page = _with_details(chosen).order_by(chosen.c.purchase_date.desc(), chosen.c.id.desc())
    return [PurchaseRow(*row) for row in (await session.execute(page)).all()]


async def get_purchase_for_user(session: AsyncSession, *, user_id: str, purchase_id: uuid.UUID) -> PurchaseRow | None:
    chosen = _purchases().where(Purchase.id == purchase_id, Purchase.user_id == user_id).subquery()
    row = (await session.execute(_with_details(chosen))).one_or_none()
    return PurchaseRow(*row) if row is not None else None


async def list_purchase_items(session: AsyncSession, *, purchase_id: uuid.UUID) -> list[PurchaseItem]:
    result = await session.execute(
        select(PurchaseItem)
        .where(PurchaseItem.purchase_id == purchase_id)
        .order_by(PurchaseItem.created_at, PurchaseItem.id)
    )
    return list(result.scalars())


def _period_label(dialect: str, period: Period) -> ColumnElement[str]:
    """The period a purchase falls in: ``YYYY-MM``, ``YYYY``, or the Monday (``YYYY-MM-DD``) of its week."""
    day = Purchase.purchase_date
    if dialect == "postgresql":
        if period == "week":
            return func.to_char(func.date_trunc("week", cast(day, DateTime())), "YYYY-MM-DD")
        return func.to_char(day, "YYYY-MM" if period == "month" else "YYYY")
    if period == "week":
        days_since_monday = (cast(func.strftime("%w", day), Integer) + 6) % 7
        return func.date(day, literal("-", String) + cast(days_since_monday, String) + literal(" days", String))
    return func.strftime("%Y-%m" if period == "month" else "%Y", day)


async def _sums(
    session: AsyncSession,
    key: SQLColumnExpression[Any],
    amount: SQLColumnExpression[Any],
    stmt: Select[*tuple[Any, ...]],
) -> dict[str, Decimal]:
    # Grouping over a subquery keeps the key expression (and its bound parameters) out of GROUP BY, which
    # PostgreSQL would otherwise see as a different expression from the one selected.
    sub = stmt.add_columns(key.label("key"), amount.label("amount")).subquery()
    grouped = select(sub.c.key, func.sum(sub.c.amount)).group_by(sub.c.key).order_by(sub.c.key)
    return {str(k): v for k, v in (await session.execute(grouped)).all()}


async def spending_stats(
    session: AsyncSession,
    *,
    user_id: str,
    period: Period,
    since: date | None = None,
    until: date | None = None,
) -> SpendingStats:
    """Totals of the user's purchases, by store name, by product category and by period (oldest first)."""
    dialect = session.get_bind().dialect.name
    mine = _in_range(select().select_from(Purchase).where(Purchase.user_id == user_id), since, until)
    totals = mine.add_columns(
        func.coalesce(func.sum(Purchase.total), literal(0, Purchase.total.type)), func.count(Purchase.id)
    )
    total_spent, purchase_count = (await session.execute(totals)).one()
    category = func.coalesce(
        func.nullif(NormalizedProduct.category, ""),
        func.nullif(func.lower(func.trim(PurchaseItem.category_raw)), ""),
        "other",
    )
    items = mine.join(PurchaseItem, PurchaseItem.purchase_id == Purchase.id).outerjoin(
        NormalizedProduct, NormalizedProduct.id == PurchaseItem.normalized_product_id
    )
    return SpendingStats(
        total_spent=total_spent,
        purchase_count=purchase_count,
        by_store=await _sums(session, Store.name, Purchase.total, mine.join(Store, Store.id == Purchase.store_id)),
        by_category=await _sums(session, category, PurchaseItem.extended_price, items),
        by_period=await _sums(session, _period_label(dialect, period), Purchase.total, mine),
    )
