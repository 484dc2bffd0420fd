"""Shopping queries: saved shopping lists, and the prices and coupons the optimiser works from."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, delete, exists, func, literal, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.domain.optimizer import CouponOffer, Line, Problem, StoreRef
from hub.store.engine import locking
from hub.store.keyset import newest_first
from hub.store.models import Coupon, NormalizedProduct, PriceHistory, ShoppingList, ShoppingListItem, Store
from hub.store.prices import latest_prices

_LIKE_ESCAPE = "/"


@dataclass(frozen=True, slots=True)
class NewItem:
    product_id: uuid.UUID | None
    name: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class SavedItem:
    id: uuid.UUID
    product_id: uuid.UUID | None
    name: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class SavedList:
    id: uuid.UUID
    name: str
    items: tuple[SavedItem, ...]
    created_at: datetime
    updated_at: datetime


# --- saved lists --------------------------------------------------------------------------------------------


async def _with_items(session: AsyncSession, lists: Sequence[ShoppingList]) -> list[SavedList]:
    if not lists:
        return []
    rows = (
        await session.execute(
            select(ShoppingListItem)
            .where(ShoppingListItem.list_id.in_([row.id for row in lists]))
            .order_by(ShoppingListItem.list_id, ShoppingListItem.position)
        )
    ).scalars()
    items: dict[uuid.UUID, list[SavedItem]] = defaultdict(list)
    for item in rows:
        items[item.list_id].append(SavedItem(item.id, item.normalized_product_id, item.name, item.quantity))
    return [SavedList(row.id, row.name, tuple(items[row.id]), row.created_at, row.updated_at) for row in lists]


async def list_shopping_lists(
    session: AsyncSession,
    *,
    user_id: str,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[SavedList]:
    stmt = newest_first(
        session,
        select(ShoppingList).where(ShoppingList.user_id == user_id),
        created=ShoppingList.created_at,
        key=ShoppingList.id,
        after=after,
    )
    stmt = stmt.limit(limit).offset(offset)
    return await _with_items(session, list((await session.execute(stmt)).scalars()))


async def _own_list(
    session: AsyncSession, *, user_id: str, list_id: uuid.UUID, lock: bool = False
) -> ShoppingList | None:
    """The user's list; ``lock`` holds its row until the transaction ends, so that two replacements (or a
    replacement and a deletion) of one list run one after the other: the second sees the first's result."""
    query = select(ShoppingList).where(ShoppingList.id == list_id, ShoppingList.user_id == user_id)
    result = await (locking(session, query) if lock else session.execute(query))
    return result.scalar_one_or_none()


async def get_shopping_list(session: AsyncSession, *, user_id: str, list_id: uuid.UUID) -> SavedList | None:
    row = await _own_list(session, user_id=user_id, list_id=list_id)
    return (await _with_items(session, [row]))[0] if row is not None else None


def _add_items(session: AsyncSession, list_id: uuid.UUID, items: Sequence[NewItem], now: datetime) -> None:
    session.add_all(
        ShoppingListItem(
            list_id=list_id,
            position=position,
            normalized_product_id=item.product_id,
            name=item.name,
            quantity=item.quantity,
            created_at=now,
            updated_at=now,
        )
        for position, item in enumerate(items)
    )


async def insert_shopping_list(
    session: AsyncSession, *, user_id: str, name: str, items: Sequence[NewItem], now: datetime
) -> SavedList:
    row = ShoppingList(user_id=user_id, name=name, created_at=now, updated_at=now)
    session.add(row)
    await session.flush()
    _add_items(session, row.id, items, now)
    await session.flush()
    return (await _with_items(session, [row]))[0]


async def replace_shopping_list(
    session: AsyncSession, *, user_id: str, list_id: uuid.UUID, name: str, items: Sequence[NewItem], now: datetime
) -> SavedList | None:
    row = await _own_list(session, user_id=user_id, list_id=list_id, lock=True)
    if row is None:
        return None
    await session.execute(delete(ShoppingListItem).where(ShoppingListItem.list_id == list_id))
    await session.execute(
        update(ShoppingList)
        .where(ShoppingList.id == list_id)
        .values(name=name, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    _add_items(session, list_id, items, now)
    await session.flush()
    return SavedList(row.id, name, (await _with_items(session, [row]))[0].items, row.created_at, now)


async def delete_shopping_list(session: AsyncSession, *, user_id: str, list_id: uuid.UUID) -> bool:
    if await _own_list(session, user_id=user_id, list_id=list_id, lock=True) is None:
        return False
    await session.execute(delete(ShoppingListItem).where(ShoppingListItem.list_id == list_id))
    await session.execute(delete(ShoppingList).where(ShoppingList.id == list_id))
    return True


async def unknown_product_ids(session: AsyncSession, *, product_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = set(product_ids)
    if not wanted:
        return set()
    found = await session.execute(select(NormalizedProduct.id).where(NormalizedProduct.id.in_(wanted)))
    return wanted - set(found.scalars())


# --- optimiser inputs ---------------------------------------------------------------------------------------


async def resolve_stores(session: AsyncSession, *, refs: Sequence[str]) -> dict[str, uuid.UUID]:
    """Store ids by reference (a slug, any case, or an id); unknown references are absent."""
    ids: dict[str, uuid.UUID] = {}
    for ref in refs:
        try:
            ids[ref] = uuid.UUID(ref)
        except ValueError:
            continue
    slugs = {ref.lower() for ref in refs if ref not in ids}
    rows = (
        await session.execute(
            select(Store.id, Store.slug).where(or_(Store.id.in_(set(ids.values())), Store.slug.in_(slugs)))
        )
    ).all()
    by_slug = {slug.lower(): store_id for store_id, slug in rows}
    existing = {store_id for store_id, _ in rows}
    resolved = {ref: store_id for ref, store_id in ids.items() if store_id in existing}
    resolved.update({ref: by_slug[ref.lower()] for ref in refs if ref not in ids and ref.lower() in by_slug})
    return resolved


def _like_escape(text: str) -> str:
    for char in (_LIKE_ESCAPE, "%", "_"):
        text = text.replace(char, _LIKE_ESCAPE + char)
    return text


async def match_products(session: AsyncSession, *, names: Sequence[str]) -> dict[int, uuid.UUID]:
    """For each name (by position) the best priced product: the exact name (any case), else the shortest name that
    starts with it, else the shortest that contains it."""
    if not names:
        return {}
    wanted = union_all(
        *(
            select(
                literal(i).label("idx"),
                literal(name.lower()).label("exact"),
                literal(_like_escape(name.lower()) + "%").label("prefix"),
                literal("%" + _like_escape(name.lower()) + "%").label("pattern"),
            )
            for i, name in enumerate(names)
        )
    ).subquery("wanted")
    lowered = func.lower(NormalizedProduct.canonical_name)
    closeness = case((lowered == wanted.c.exact, 0), (lowered.like(wanted.c.prefix, escape=_LIKE_ESCAPE), 1), else_=2)
    ranked = (
        select(
            wanted.c.idx,
            NormalizedProduct.id.label("product_id"),
            func.row_number()
            .over(
                partition_by=wanted.c.idx,
                order_by=(
                    closeness,
                    func.length(NormalizedProduct.canonical_name),
                    NormalizedProduct.canonical_name,
                    NormalizedProduct.id,
                ),
            )
            .label("rank"),
        )
        .join(NormalizedProduct, lowered.like(wanted.c.pattern, escape=_LIKE_ESCAPE))
        .where(exists().where(PriceHistory.normalized_product_id == NormalizedProduct.id))
        .subquery("ranked")
    )
    rows = await session.execute(select(ranked.c.idx, ranked.c.product_id).where(ranked.c.rank == 1))
    return {idx: product_id for idx, product_id in rows.all()}


async def load_problem(
    session: AsyncSession,
    *,
    lines: Sequence[Line],
    store_ids: Sequence[uuid.UUID] | None,
    max_stores: int | None,
    today: date,
) -> Problem:
    """The optimiser's problem: lines without a product matched by name, the latest effective prices at the
    candidate stores (all, or ``store_ids``) and the coupons valid ``today`` there."""
    unnamed = [i for i, line in enumerate(lines) if line.product_id is None]
    matched = await match_products(session, names=[lines[i].name for i in unnamed])
    resolved = list(lines)
    for position, i in enumerate(unnamed):
        if position in matched:
            resolved[i] = replace(lines[i], product_id=matched[position])
    product_ids = sorted({line.product_id for line in resolved if line.product_id is not None})
    prices = await latest_prices(session, product_ids=product_ids, store_ids=store_ids)
    stores = {price.store_id: StoreRef(price.store_id, price.store_name) for price in prices}
    coupons: list[Any] = []
    if stores:
        coupons = list(
            (
                await session.execute(
                    select(
                        Coupon.id,
                        Coupon.store_id,
                        Coupon.normalized_product_id,
                        func.coalesce(Coupon.description, Coupon.title),
                        Coupon.discount_type,
                        Coupon.discount_value,
                        Coupon.min_purchase,
                        Coupon.valid_to,
                    )
                    .where(
                        Coupon.store_id.in_(list(stores)),
                        or_(Coupon.normalized_product_id.is_(None), Coupon.normalized_product_id.in_(product_ids)),
                        or_(Coupon.valid_from.is_(None), Coupon.valid_from <= today),
                        or_(Coupon.valid_to.is_(None), Coupon.valid_to >= today),
                        Coupon.discount_value > 0,
                    )
                    .order_by(Coupon.id)
                )
            ).all()
        )
    return Problem(
        lines=tuple(resolved),
        stores=tuple(stores.values()),
        prices={(price.product_id, price.store_id): price.price for price in prices},
        coupons=tuple(CouponOffer(*row) for row in coupons),
        max_stores=max_stores,
    )
