"""Test factories: plain async functions that insert rows through the real models."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import bcrypt
from aiohttp import web

from hub import keys
from hub.infra.security import random_id
from hub.store import tokens, users
from hub.store.models import (
    Coupon,
    NormalizedProduct,
    PriceHistory,
    Purchase,
    PurchaseItem,
    Session,
    ShrinkflationEvent,
    Store,
    User,
)

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)
_hash: str | None = None


def password_hash() -> str:
    """One cost-12 hash of PASSWORD, computed once per test run."""
    global _hash
    if _hash is None:
        _hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    return _hash


async def create_user(session: Any, **overrides: Any) -> User:
    n = next(_counter)
    email = overrides.pop("email", f"user{n}-{uuid.uuid4().hex[:6]}@example.com")
    user = await users.insert_user(
        session,
        email=email,
        password_hash=password_hash(),
        display_name=overrides.pop("display_name", f"User {n}"),
        user_id=overrides.pop("id", None),
    )
    for name, value in overrides.items():
        setattr(user, name, value)
    await session.flush()
    return user


async def create_store(session: Any, **overrides: Any) -> Store:
    n = next(_counter)
    store = Store(name=overrides.pop("name", f"Store {n}"), slug=overrides.pop("slug", f"store{n}"), **overrides)
    session.add(store)
    await session.flush()
    return store


async def create_product(session: Any, **overrides: Any) -> NormalizedProduct:
    n = next(_counter)
    values: dict[str, Any] = {
        "canonical_name": f"Product {n}",
        "category": "pantry",
        "brand": "Acme",
        "size": "16",
        "size_unit": "oz",
        "upc_variants": [f"{n:012d}"],
    }
    values.update(overrides)
    product = NormalizedProduct(**values)
    session.add(product)
    await session.flush()
    return product


async def create_price(
    session: Any,
    *,
    product: NormalizedProduct,
    store: Store,
    observed: date,
    regular: str | Decimal,
    sale: str | Decimal | None = None,
    **overrides: Any,
) -> PriceHistory:
    row = PriceHistory(
        normalized_product_id=product.id,
        store_id=store.id,
        observed_date=observed,
        regular_price=Decimal(regular),
        sale_price=Decimal(sale) if sale is not None else None,
        source=overrides.pop("source", "receipt"),
        **overrides,
    )
    session.add(row)
    await session.flush()
    return row


async def create_purchase(
    session: Any,
    *,
    user: User,
    store: Store,
    purchased: date,
    items: list[tuple[NormalizedProduct | None, str, str]] | None = None,
    **overrides: Any,
) -> Purchase:
    """A purchase with line items given as (product, quantity, unit price)."""
    lines = items or []
    total = sum((Decimal(q) * Decimal(p) for _, q, p in lines), Decimal(0)).quantize(Decimal("0.01"))
    purchase = Purchase(
        user_id=user.id,
        store_id=store.id,
        receipt_id=overrides.pop("receipt_id", random_id(9)),
        purchase_date=purchased,
        total=overrides.pop("total", total),
        subtotal=total,
        tax=Decimal("0.00"),
        savings_total=Decimal("0.00"),
        **overrides,
    )
    session.add(purchase)
    await session.flush()
    for product, quantity, price in lines:
        extended = (Decimal(quantity) * Decimal(price)).quantize(Decimal("0.01"))
        session.add(
            PurchaseItem(
                purchase_id=purchase.id,
                product_name_raw=product.canonical_name if product else "UNKNOWN ITEM",
                upc=(product.upc_variants or [None])[0] if product else None,
                quantity=Decimal(quantity),
                unit_price=Decimal(price),
                extended_price=extended,
                regular_price=Decimal(price),
                normalized_product_id=product.id if product else None,
            )
        )
    await session.flush()
    return purchase


async def create_coupon(
    session: Any, *, store: Store, product: NormalizedProduct | None = None, **overrides: Any
) -> Coupon:
    values: dict[str, Any] = {
        "title": "Save on it",
        "description": "Save on it",
        "discount_type": "fixed",
        "discount_value": Decimal("1.00"),
        "valid_from": date.today() - timedelta(days=1),
        "valid_to": date.today() + timedelta(days=7),
        "requires_clip": False,
    }
    values.update(overrides)
    coupon = Coupon(store_id=store.id, normalized_product_id=product.id if product else None, **values)
    session.add(coupon)
    await session.flush()
    return coupon


async def create_shrinkflation(session: Any, *, product: NormalizedProduct, **overrides: Any) -> ShrinkflationEvent:
    values: dict[str, Any] = {
        "detected_date": date.today(),
        "old_size": "16",
        "new_size": "14.5",
        "old_unit": "oz",
        "new_unit": "oz",
        "price_at_old_size": Decimal("3.99"),
        "price_at_new_size": Decimal("3.99"),
        "confidence": Decimal("0.95"),
    }
    values.update(overrides)
    event = ShrinkflationEvent(normalized_product_id=product.id, **values)
    session.add(event)
    await session.flush()
    return event


def shrinkflation_payload(product: NormalizedProduct, **overrides: Any) -> dict[str, Any]:
    """The payload of a ``cartsnitch.alerts.shrinkflation`` event about ``product`` (no user: it goes to buyers)."""
    return {
        "product_id": str(product.id),
        "product_name": product.canonical_name,
        "old_size": 18,
        "new_size": 16,
        "old_unit": "oz",
        "new_unit": "oz",
        "price_at_old_size": 4.49,
        "price_at_new_size": 4.49,
        "confidence": 0.9,
        "detected_date": date.today().isoformat(),
        **overrides,
    }


async def create_session_token(session: Any, *, user: User, expires_in: timedelta = timedelta(days=1)) -> str:
    """A Better-Auth session row; returns its raw token."""
    token = random_id(24)
    session.add(Session(id=random_id(16), token=token, user_id=user.id, expires_at=datetime.now(UTC) + expires_in))
    await session.flush()
    return token


async def access_token(app: web.Application, user_id: str, *, ttl_seconds: int | None = None) -> str:
    """An access token of a new refresh family, as login would issue it."""
    family_id = random_id(16)
    async with app[keys.sessionmaker].begin() as session:
        await tokens.insert_family(session, family_id=family_id, user_id=user_id)
    return (
        app[keys.authenticator]
        .codec.issue("access", user_id=user_id, family_id=family_id, ttl_seconds=ttl_seconds)
        .token
    )


async def auth_headers(app: web.Application, user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await access_token(app, user_id)}"}


async def warm_password_hash() -> None:
    await asyncio.to_thread(password_hash)
