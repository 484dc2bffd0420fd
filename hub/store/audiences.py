"""Who an event is for, when its publisher did not say: buyers of a product, users a coupon is relevant to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import AlertSettings, Coupon, Purchase, PurchaseItem

DEFAULT_THRESHOLD_PCT = Decimal("5")


async def buyers_of_product(session: AsyncSession, *, product_id: uuid.UUID) -> list[str]:
    """Every user with a purchase line matched to the product."""
    stmt = (
        select(Purchase.user_id)
        .join(PurchaseItem, PurchaseItem.purchase_id == Purchase.id)
        .where(PurchaseItem.normalized_product_id == product_id)
        .distinct()
        .order_by(Purchase.user_id)
    )
    return list((await session.execute(stmt)).scalars())


async def alert_preferences(session: AsyncSession, *, user_ids: Sequence[str]) -> dict[str, tuple[Decimal, bool]]:
    """(price increase threshold %, shrinkflation enabled) per user; users without settings get the defaults."""
    prefs = {user_id: (DEFAULT_THRESHOLD_PCT, True) for user_id in user_ids}
    if not user_ids:
        return prefs
    rows = await session.execute(
        select(
            AlertSettings.user_id, AlertSettings.price_increase_threshold_pct, AlertSettings.shrinkflation_enabled
        ).where(AlertSettings.user_id.in_(list(user_ids)))
    )
    for user_id, threshold, shrinkflation in rows:
        prefs[user_id] = (threshold, shrinkflation)
    return prefs


async def coupon_audience(session: AsyncSession, *, coupon_ids: Sequence[uuid.UUID]) -> list[str]:
    """Users who bought a product a coupon is for, or shopped at the store of a store-wide coupon."""
    if not coupon_ids:
        return []
    coupons = (
        await session.execute(select(Coupon.store_id, Coupon.normalized_product_id).where(Coupon.id.in_(coupon_ids)))
    ).all()
    product_ids = [product for _store, product in coupons if product is not None]
    store_ids = [store for store, product in coupons if product is None]
    conditions = []
    if product_ids:
        conditions.append(
            Purchase.id.in_(select(PurchaseItem.purchase_id).where(PurchaseItem.normalized_product_id.in_(product_ids)))
        )
    if store_ids:
        conditions.append(Purchase.store_id.in_(store_ids))
    if not conditions:
        return []
    stmt = select(Purchase.user_id).where(or_(*conditions)).distinct().order_by(Purchase.user_id)
    return list((await session.execute(stmt)).scalars())
