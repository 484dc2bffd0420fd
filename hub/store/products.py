"""Queries for the product catalogue (normalized products) and a product's price history."""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Uuid,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.keyset import instant
from hub.store.models import PRODUCT_SEARCH_TEXT, NormalizedProduct, PriceHistory, Store, UTCDateTime
from hub.store.prices import effective_price, in_observed_order

LIKE_ESCAPE = "\\"
_PRODUCTS = NormalizedProduct.__table__.c


@dataclass(frozen=True, slots=True)
class PricePoint:
    observed_date: date
    price: Decimal
    store_id: uuid.UUID
    store_name: str


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


class ListedProduct(NamedTuple):
    """A search result: a product and the position it holds in the catalogue's order."""

    id: uuid.UUID
    canonical_name: str
    brand: str | None
    category: str | None
    size: str | None
    size_unit: str | None
    upc_variants: list[str] | None
    created_at: datetime


_TRIGRAM = re.compile(r"[^\W_]{3}")
"""Three letters or digits in a row: pg_trgm then finds at least one trigram in ``%needle%`` and its index narrows
the search. Without one it would scan the whole index, slower than reading the table."""


def _has_upc(dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # JSONB containment, so the GIN index on upc_variants answers it.
        return type_coerce(_PRODUCTS.upc_variants, JSONB).contains(bindparam("upc", type_=JSONB))
    variants = func.json_each(_PRODUCTS.upc_variants).table_valued("value")
    return exists(select(1).select_from(variants).where(variants.c.value == bindparam("upc", type_=String)))


def _contains(dialect: str, text: ColumnElement[str]) -> ColumnElement[bool]:
    pattern = bindparam("pattern", type_=String)
    # PostgreSQL escapes LIKE patterns with a backslash unless told otherwise (an ESCAPE clause would rewrite the
    # pattern for every row of a cached plan); SQLite has no escape character unless one is named
    return text.like(pattern) if dialect == "postgresql" else text.like(pattern, escape=LIKE_ESCAPE)


# A search is a plain Core statement with bound parameters, built once per combination of filters (building it and
# its cache key cost more than running it). Each spelling is its own prepared statement, so the plan PostgreSQL
# settles on for one after five runs serves only the needles it was made for.
@functools.cache
def _search_statement(
    dialect: str, *, q: bool, spaced: bool, fenced: bool, category: bool, store: bool, after: bool
) -> Select[*tuple[Any, ...]]:
    stmt = select(
        _PRODUCTS.id,
        _PRODUCTS.canonical_name,
        _PRODUCTS.brand,
        _PRODUCTS.category,
        _PRODUCTS.size,
        _PRODUCTS.size_unit,
        _PRODUCTS.upc_variants,
        _PRODUCTS.created_at,
    )
    if q:
        # In "name brand" a needle without a space lies within the name or within the brand; one with a space may
        # straddle the two, so the name and the brand are then tested apart as well.
        found = _contains(dialect, PRODUCT_SEARCH_TEXT)
        if spaced:
            found = and_(
                found,
                or_(
                    _contains(dialect, func.lower(_PRODUCTS.canonical_name)),
                    _contains(dialect, func.lower(_PRODUCTS.brand)),
                ),
            )
        stmt = stmt.where(or_(found, _has_upc(dialect)))
    if category:
        stmt = stmt.where(_PRODUCTS.category == bindparam("category"))
    if store:
        stmt = stmt.where(
            exists().where(
                PriceHistory.normalized_product_id == _PRODUCTS.id, PriceHistory.store_id == bindparam("store_id")
            )
        )
    created = instant(dialect, _PRODUCTS.created_at)
    if after:
        bound = instant(dialect, bindparam("after_created", type_=UTCDateTime()))
        stmt = stmt.where(tuple_(created, _PRODUCTS.id) < tuple_(bound, bindparam("after_id", type_=Uuid())))
    if fenced:
        # The matches first, then their order: left to itself, the plan PostgreSQL caches for this statement
        # walks the (created_at, id) index and tests every row until the page is full, which for a rare needle is
        # every row. A materialized CTE is planned on its own, from the trigram index.
        matched = stmt.cte("matched").prefix_with("MATERIALIZED")
        return (
            select(*matched.c)
            .order_by(matched.c.created_at.desc(), matched.c.id.desc())
            .offset(bindparam("offset", type_=Integer))
            .limit(bindparam("limit", type_=Integer))
        )
    return (
        stmt.order_by(created.desc(), _PRODUCTS.id.desc())
        .offset(bindparam("offset", type_=Integer))
        .limit(bindparam("limit", type_=Integer))
    )


def _like_pattern(needle: str) -> str:
    """``%needle%`` with LIKE's wildcards in ``needle`` escaped: they match themselves."""
    escaped = needle.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", LIKE_ESCAPE + "%")
    return "%" + escaped.replace("_", LIKE_ESCAPE + "_") + "%"


async def search_products(
    session: AsyncSession,
    *,
    q: str | None = None,
    category: str | None = None,
    store_id: uuid.UUID | None = None,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[ListedProduct]:
    """Products whose name or brand contains ``q`` (any case) or that carry ``q`` as a UPC, newest first;
    ``store_id`` keeps those with prices at that store."""
    dialect = _dialect(session)
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if q:
        params["pattern"] = _like_pattern(q.lower())
        params["upc"] = [q] if dialect == "postgresql" else q
    if category is not None:
        params["category"] = category
    if store_id is not None:
        params["store_id"] = store_id
    if after is not None:
        params["after_created"], params["after_id"] = after
    stmt = _search_statement(
        dialect,
        q=bool(q),
        spaced=q is not None and " " in q,
        fenced=q is not None and dialect == "postgresql" and _TRIGRAM.search(q) is not None,
        category=category is not None,
        store=store_id is not None,
        after=after is not None,
    )
    return [ListedProduct._make(row) for row in (await session.execute(stmt, params)).all()]


class Product(NamedTuple):
    id: uuid.UUID
    canonical_name: str
    brand: str | None
    category: str | None
    size: str | None
    size_unit: str | None
    upc_variants: list[str] | None


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
            PriceHistory.created_at,
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
    sub = newest.order_by(*in_observed_order(newest_first=True)).limit(limit).subquery()
    stmt = select(sub.c.observed_date, sub.c.price, sub.c.store_id, sub.c.store_name).order_by(
        *in_observed_order(sub.c)
    )
    return [PricePoint(*row) for row in (await session.execute(stmt)).all()]
