"""Queries for a user's purchases, their line items and spending statistics."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal, NamedTuple

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
    bindparam,
    cast,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import NormalizedProduct, Purchase, PurchaseItem, Store

Period = Literal["month", "week", "year"]


# Rows of the hot reads are NamedTuples: a page builds 20 of them, and a frozen dataclass sets each field through
# object.__setattr__ (a few per cent of a request's CPU time).
class PurchaseRow(NamedTuple):
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
    store_slug: str


class LineItem(NamedTuple):
    id: uuid.UUID
    product_id: uuid.UUID | None
    name: str  # as printed on the receipt
    quantity: Decimal
    unit_price: Decimal
    total_price: Decimal


@dataclass(frozen=True, slots=True)
class SpendingStats:
    total_spent: Decimal
    purchase_count: int
    by_store: dict[str, Decimal]
    by_category: dict[str, Decimal]
    by_period: dict[str, Decimal]


_PURCHASES = Purchase.__table__.c
_ITEMS = PurchaseItem.__table__.c


def _purchases() -> Select[*tuple[Any, ...]]:
    return select(
        _PURCHASES.id,
        _PURCHASES.store_id,
        _PURCHASES.purchase_date,
        _PURCHASES.total,
        _PURCHASES.subtotal,
        _PURCHASES.tax,
        _PURCHASES.savings_total,
        _PURCHASES.receipt_id,
        _PURCHASES.store_location_id,
    )


def _with_details(chosen: Subquery) -> Select[*tuple[Any, ...]]:
    """The chosen purchases with their store name and item count, both computed for those rows only."""
    item_count = (
        select(func.count()).select_from(PurchaseItem.__table__).where(_ITEMS.purchase_id == chosen.c.id)
    ).scalar_subquery()
    return select(
        chosen.c.id,
        chosen.c.store_id,
        Store.__table__.c.name,
        chosen.c.purchase_date,
        chosen.c.total,
        item_count,
        chosen.c.subtotal,
        chosen.c.tax,
        chosen.c.savings_total,
        chosen.c.receipt_id,
        chosen.c.store_location_id,
        Store.__table__.c.slug,
    ).join(Store.__table__, Store.__table__.c.id == chosen.c.store_id)


def _in_range(stmt: Select[*tuple[Any, ...]], since: date | None, until: date | None) -> Select[*tuple[Any, ...]]:
    if since is not None:
        stmt = stmt.where(Purchase.purchase_date >= since)
    if until is not None:
        stmt = stmt.where(Purchase.purchase_date <= until)
    return stmt


# The hot reads are plain Core statements with bound parameters, built once: building a statement and computing
# its cache key cost more than running it, and ORM statements take a slower path through the session.
@functools.cache
def _page_statement(store: bool, since: bool, until: bool, after: bool) -> Select[*tuple[Any, ...]]:
    """A page of one user's purchases for one combination of filters, newest first."""
    stmt = _purchases().where(_PURCHASES.user_id == bindparam("user_id"))
    if store:
        stmt = stmt.where(_PURCHASES.store_id == bindparam("store_id"))
    if since:
        stmt = stmt.where(_PURCHASES.purchase_date >= bindparam("since"))
    if until:
        stmt = stmt.where(_PURCHASES.purchase_date <= bindparam("until"))
    if after:
        stmt = stmt.where(
            tuple_(_PURCHASES.purchase_date, _PURCHASES.id)
            < tuple_(bindparam("after_date", type_=Date), bindparam("after_id", type_=Uuid))
        )
    # The page is chosen from purchases alone (the (user_id, purchase_date, id) index serves the order and the
    # limit); store names and item counts are then looked up for those rows only.
    chosen = (
        stmt.order_by(_PURCHASES.purchase_date.desc(), _PURCHASES.id.desc())
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
        .subquery()
    )
    return _with_details(chosen).order_by(chosen.c.purchase_date.desc(), chosen.c.id.desc())


_ONE_PURCHASE = _with_details(
    _purchases().where(_PURCHASES.id == bindparam("purchase_id"), _PURCHASES.user_id == bindparam("user_id")).subquery()
)
_LINE_ITEMS = (
    select(
        _ITEMS.id,
        _ITEMS.normalized_product_id,
        _ITEMS.product_name_raw,
        _ITEMS.quantity,
        _ITEMS.unit_price,
        _ITEMS.extended_price,
    )
    .where(_ITEMS.purchase_id == bindparam("purchase_id"))
    .order_by(_ITEMS.created_at, _ITEMS.id)
)
_ITEMS_OF_MANY = (
    select(
        _ITEMS.purchase_id,
        _ITEMS.id,
        _ITEMS.normalized_product_id,
        _ITEMS.product_name_raw,
        _ITEMS.quantity,
        _ITEMS.unit_price,
        _ITEMS.extended_price,
    )
    .where(_ITEMS.purchase_id.in_(bindparam("purchase_ids", expanding=True)))
    .order_by(_ITEMS.purchase_id, _ITEMS.created_at, _ITEMS.id)
)


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
    params: dict[str, Any] = {"user_id": user_id, "limit": limit, "offset": offset}
    if store_id is not None:
        params["store_id"] = store_id
    if since is not None:
        params["since"] = since
    if until is not None:
        params["until"] = until
    if after is not None:
        params["after_date"], params["after_id"] = after
    stmt = _page_statement(store_id is not None, since is not None, until is not None, after is not None)
    return [PurchaseRow._make(row) for row in (await session.execute(stmt, params)).all()]


async def get_purchase_for_user(session: AsyncSession, *, user_id: str, purchase_id: uuid.UUID) -> PurchaseRow | None:
    row = (await session.execute(_ONE_PURCHASE, {"purchase_id": purchase_id, "user_id": user_id})).one_or_none()
    return PurchaseRow._make(row) if row is not None else None


async def list_purchase_items(session: AsyncSession, *, purchase_id: uuid.UUID) -> list[LineItem]:
    """The purchase's line items in the order they were recorded."""
    rows = await session.execute(_LINE_ITEMS, {"purchase_id": purchase_id})
    return [LineItem._make(row) for row in rows.all()]


async def list_items_of_purchases(
    session: AsyncSession, *, purchase_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[LineItem]]:
    """The line items of many purchases in one query, each purchase's in the order they were recorded; every
    asked purchase has an entry (empty when it has no items)."""
    items: dict[uuid.UUID, list[LineItem]] = {purchase_id: [] for purchase_id in purchase_ids}
    if not items:
        return items
    rows = await session.execute(_ITEMS_OF_MANY, {"purchase_ids": list(items)})
    for purchase_id, *item in rows.all():
        items[purchase_id].append(LineItem._make(item))
    return items


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
