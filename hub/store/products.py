"""Queries for the product catalogue (normalized products) and a product's price history."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import ColumnElement, bindparam, exists, func, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.keyset import newest_first
from hub.store.models import NormalizedProduct, PriceHistory, Store
from hub.store.prices import effective_price


@dataclass(frozen=True, slots=True)
class PricePoint:
    observed_date: date
    price: Decimal
    store_id: uuid.UUID
    store_name: str


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _has_upc(dialect: str, upc: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # JSONB containment, so the GIN index on upc_variants answers it.
        return type_coerce(NormalizedProduct.upc_variants, JSONB).contains([upc])
    variants = func.json_each(NormalizedProduct.upc_variants).table_valued("value")
    return exists(select(1).select_from(variants).where(variants.c.value == upc))


async def search_products(
    session: AsyncSession,
    *,
    q: str | None = None,
    category: str | None = None,
    store_id: uuid.UUID | None = None,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[NormalizedProduct]:
    """Products whose name or brand contains ``q`` (any case) or that carry ``q`` as a UPC, newest first;
    ``store_id`` keeps those with prices at that store."""
    dialect = _dialect(session)
    stmt = select(NormalizedProduct)
    if q:
        needle = q.lower()
        stmt = stmt.where(
            or_(
                func.lower(NormalizedProduct.canonical_name).contains(needle, autoescape=True),
                func.lower(NormalizedProduct.brand).contains(needle, autoescape=True),
                _has_upc(dialect, q),
            )
        )
    if category is not None:
        stmt = stmt.where(NormalizedProduct.category == category)
    if store_id is not None:
        stmt = stmt.where(
            exists().where(
                PriceHistory.normalized_product_id == NormalizedProduct.id, PriceHistory.store_id == store_id
            )
        )
    stmt = newest_first(session, stmt, created=NormalizedProduct.created_at, key=NormalizedProduct.id, after=after)
    stmt = stmt.offset(offset).limit(limit)
    return list((await session.execute(stmt)).scalars())


class Product(NamedTuple):
    id: uuid.UUID
    canonical_name: str
    brand: str | None
    category: str | None
    size: str | None
    size_unit: str | None
    upc_variants: list[str] | None


_PRODUCTS = NormalizedProduct.__table__.c
_ONE_PRODUCT = select(
    _PRODUCTS.id,
    _PRODUCTS.canonical_name,
    _PRODUCTS.brand,
    _PRODUCTS.category,
    _PRODUCTS.size,
    _PRODUCTS.size_unit,
    _PRODUCTS.upc_variants,
).where(_PRODUCTS.id == bindparam("product_id"))


async def get_product(session: AsyncSession, *, product_id: uuid.UUID) -> Product | None:
    # a Core statement built once: the ORM's get() costs several times the query on this hot path
    row = (await session.execute(_ONE_PRODUCT, {"product_id": product_id})).one_or_none()
    return Product._make(row) if row is not None else None


async def list_price_points(
    session: AsyncSession,
    *,
    product_id: uuid.UUID,
    since: date,
    store_id: uuid.UUID | None = None,
    limit: int,
) -> list[PricePoint]:
    """The newest ``limit`` observations since ``since``, oldest first, with the effective price."""
    newest = (
        select(
            PriceHistory.id,
            PriceHistory.observed_date,
            effective_price().label("price"),
            PriceHistory.store_id,
            Store.name.label("store_name"),
        )
        .join(Store, Store.id == PriceHistory.store_id)
        .where(PriceHistory.normalized_product_id == product_id, PriceHistory.observed_date >= since)
    )
    if store_id is not None:
        newest = newest.where(PriceHistory.store_id == store_id)
    sub = newest.order_by(PriceHistory.observed_date.desc(), PriceHistory.id.desc()).limit(limit).subquery()
    stmt = select(sub.c.observed_date, sub.c.price, sub.c.store_id, sub.c.store_name).order_by(
        sub.c.observed_date, sub.c.id
    )
    return [PricePoint(*row) for row in (await session.execute(stmt)).all()]
