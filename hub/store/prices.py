"""Price queries: what a product costs now at each store."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import PriceHistory, Store


def effective_price() -> ColumnElement[Any]:
    """What a shopper pays at the shelf: the lowest of the regular, sale and loyalty prices that are set."""
    sale_or_regular = case(
        (
            PriceHistory.sale_price.is_not(None) & (PriceHistory.sale_price < PriceHistory.regular_price),
            PriceHistory.sale_price,
        ),
        else_=PriceHistory.regular_price,
    )
    return case(
        (
            PriceHistory.loyalty_price.is_not(None) & (PriceHistory.loyalty_price < sale_or_regular),
            PriceHistory.loyalty_price,
        ),
        else_=sale_or_regular,
    )


@dataclass(frozen=True, slots=True)
class LatestPrice:
    product_id: uuid.UUID
    store_id: uuid.UUID
    store_name: str
    store_slug: str
    price: Decimal
    regular_price: Decimal
    observed_date: date


async def latest_prices(
    session: AsyncSession,
    *,
    product_ids: Sequence[uuid.UUID],
    store_ids: Sequence[uuid.UUID] | None = None,
) -> list[LatestPrice]:
    """The newest observation per (product, store) for the given products, with its effective price."""
    if not product_ids:
        return []
    ranked = select(
        PriceHistory.normalized_product_id.label("product_id"),
        PriceHistory.store_id.label("store_id"),
        effective_price().label("price"),
        PriceHistory.regular_price.label("regular_price"),
        PriceHistory.observed_date.label("observed_date"),
        func.row_number()
        .over(
            partition_by=(PriceHistory.normalized_product_id, PriceHistory.store_id),
            order_by=(PriceHistory.observed_date.desc(), PriceHistory.id.desc()),
        )
        .label("rank"),
    ).where(PriceHistory.normalized_product_id.in_(list(product_ids)))
    if store_ids is not None:
        ranked = ranked.where(PriceHistory.store_id.in_(list(store_ids)))
    sub = ranked.subquery()
    stmt = (
        select(
            sub.c.product_id,
            sub.c.store_id,
            Store.name,
            Store.slug,
            sub.c.price,
            sub.c.regular_price,
            sub.c.observed_date,
        )
        .join(Store, Store.id == sub.c.store_id)
        .where(sub.c.rank == 1)
        .order_by(sub.c.product_id, Store.name)
    )
    rows = (await session.execute(stmt)).all()
    return [LatestPrice(*row) for row in rows]
