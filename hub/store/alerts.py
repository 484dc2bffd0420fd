"""Alert queries: the user's alert feed (price increases, shrinkflation and triggered price targets merged in SQL),
its read state, the user's alert settings and target-price alerts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
    TIMESTAMP,
    ColumnElement,
    Numeric,
    Select,
    String,
    and_,
    cast,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.keyset import newest_first
from hub.store.models import (
    AlertRead,
    AlertSettings,
    HubAlertOutbox,
    NormalizedProduct,
    PriceHistory,
    PriceTargetAlert,
    Purchase,
    PurchaseItem,
    ShrinkflationEvent,
    Store,
    UTCDateTime,
)
from hub.store.prices import effective_price, in_observed_order, latest_prices

PRICE_INCREASE_WINDOW_DAYS = 90
PRICE_INCREASE = "price_increase"
SHRINKFLATION = "shrinkflation"
PRICE_TARGET = "price_target"
OUTBOX_PAGE = 100
"""Outbox alerts read at once."""


@dataclass(frozen=True, slots=True)
class AlertPreferences:
    price_increase_threshold_pct: Decimal
    shrinkflation_enabled: bool
    email_notifications: bool


DEFAULT_PREFERENCES = AlertPreferences(Decimal("5.00"), True, False)


@dataclass(frozen=True, slots=True)
class FeedAlert:
    id: str
    alert_type: str
    product_id: uuid.UUID
    product_name: str
    message: str
    triggered_at: datetime
    read: bool


@dataclass(frozen=True, slots=True)
class TargetAlert:
    id: uuid.UUID
    product_id: uuid.UUID
    product_name: str
    target_price: Decimal
    current_price: Decimal | None
    triggered: bool
    created_at: datetime
    triggered_at: datetime | None


@dataclass(frozen=True, slots=True)
class TriggeredTarget:
    alert_id: uuid.UUID
    user_id: str
    product_id: uuid.UUID
    product_name: str
    store_slug: str
    target_price: Decimal
    current_price: Decimal


# --- settings ----------------------------------------------------------------------------------------------


async def get_alert_settings(session: AsyncSession, *, user_id: str) -> AlertPreferences:
    row = await session.get(AlertSettings, user_id)
    if row is None:
        return DEFAULT_PREFERENCES
    return AlertPreferences(row.price_increase_threshold_pct, row.shrinkflation_enabled, row.email_notifications)


async def save_alert_settings(
    session: AsyncSession, *, user_id: str, preferences: AlertPreferences, now: datetime
) -> AlertPreferences:
    values = {
        "price_increase_threshold_pct": preferences.price_increase_threshold_pct,
        "shrinkflation_enabled": preferences.shrinkflation_enabled,
        "email_notifications": preferences.email_notifications,
        "updated_at": now,
    }
    stmt = update(AlertSettings).where(AlertSettings.user_id == user_id).values(**values)
    stmt = stmt.execution_options(synchronize_session=False)
    if not (await session.execute(stmt)).rowcount:  # type: ignore[attr-defined]
        inserted = await _insert_once(session, AlertSettings(user_id=user_id, created_at=now, **values))
        if not inserted:
            # Another request inserted the row between our update and insert: ours is the later write.
            await session.execute(stmt)
    return await get_alert_settings(session, user_id=user_id)


async def _insert_once(session: AsyncSession, row: Any) -> bool:
    """Insert ``row`` in a savepoint; False when a unique key already holds it."""
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


# --- the feed -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Only:
    """One alert of the feed, by the parts of its id."""

    alert_type: str
    ids: tuple[uuid.UUID, ...]
    day: date | None = None


def parse_alert_id(alert_id: str) -> _Only | None:
    """``inc:<product>:<store>:<YYYY-MM-DD>``, ``shr:<event>`` or ``tgt:<target>``; None for anything else."""
    prefix, _, rest = alert_id.partition(":")
    parts = rest.split(":")
    try:
        if prefix == "inc" and len(parts) == 3:
            return _Only(PRICE_INCREASE, (uuid.UUID(parts[0]), uuid.UUID(parts[1])), date.fromisoformat(parts[2]))
        if prefix == "shr" and len(parts) == 1:
            return _Only(SHRINKFLATION, (uuid.UUID(parts[0]),))
        if prefix == "tgt" and len(parts) == 1:
            return _Only(PRICE_TARGET, (uuid.UUID(parts[0]),))
    except ValueError:
        return None
    return None


class _Sql:
    """Expressions whose spelling differs between PostgreSQL and SQLite."""

    def __init__(self, session: AsyncSession) -> None:
        self.postgres = session.get_bind().dialect.name == "postgresql"

    def uuid_text(self, column: Any) -> ColumnElement[str]:
        if self.postgres:
            return cast(column, String)
        # SQLite holds a UUID as 32 hex digits: put the dashes back so the ids read the same on both databases.
        hex_ = cast(column, String)
        parts = [func.substr(hex_, start, length) for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))]
        text: ColumnElement[str] = parts[0]
        for part in parts[1:]:
            text = text + "-" + part
        return text

    def date_text(self, column: Any) -> ColumnElement[str]:
        return func.to_char(column, "YYYY-MM-DD") if self.postgres else cast(column, String)

    def day_start(self, column: Any) -> ColumnElement[datetime]:
        """Midnight UTC of a date, comparable with the stored timestamps."""
        if self.postgres:
            return type_coerce(func.timezone("UTC", cast(column, TIMESTAMP())), UTCDateTime())
        # SQLite stores timestamps as text in this exact shape, so the strings order like the instants.
        return type_coerce(cast(column, String) + " 00:00:00.000000", UTCDateTime())


def _bought(user_id: str) -> Select[uuid.UUID | None]:
    return (
        select(PurchaseItem.normalized_product_id)
        .join(Purchase, Purchase.id == PurchaseItem.purchase_id)
        .where(Purchase.user_id == user_id, PurchaseItem.normalized_product_id.is_not(None))
    )


def _no_sizes() -> list[ColumnElement[Any]]:
    return [cast(null(), String(20)).label(name) for name in ("old_size", "new_size", "old_unit", "new_unit")]


def _increases(
    sql: _Sql, *, user_id: str, threshold: Decimal, since: date, only: _Only | None
) -> Select[*tuple[Any, ...]]:
    price = effective_price()
    partition = (PriceHistory.normalized_product_id, PriceHistory.store_id)
    inner = select(
        PriceHistory.normalized_product_id.label("product_id"),
        PriceHistory.store_id.label("store_id"),
        PriceHistory.observed_date.label("observed_date"),
        price.label("new_price"),
        func.lag(price).over(partition_by=partition, order_by=in_observed_order()).label("old_price"),
        func.row_number().over(partition_by=partition, order_by=in_observed_order(newest_first=True)).label("rank"),
    ).where(PriceHistory.normalized_product_id.in_(_bought(user_id)))
    if only is not None:
        inner = inner.where(PriceHistory.normalized_product_id == only.ids[0], PriceHistory.store_id == only.ids[1])
    ranked = inner.subquery("ranked")
    # (new - old) / old >= threshold%, without a division (SQLite would truncate integers) and rounded so binary
    # floating point on SQLite cannot miss a rise that is exactly the threshold.
    rise = func.round(
        (ranked.c.new_price - ranked.c.old_price) * 100 - literal(threshold, Numeric(6, 2)) * ranked.c.old_price, 4
    )
    stmt = (
        select(
            (
                literal("inc:")
                + sql.uuid_text(ranked.c.product_id)
                + ":"
                + sql.uuid_text(ranked.c.store_id)
                + ":"
                + sql.date_text(ranked.c.observed_date)
            ).label("id"),
            literal(PRICE_INCREASE, String(20)).label("alert_type"),
            ranked.c.product_id.label("product_id"),
            NormalizedProduct.canonical_name.label("product_name"),
            sql.day_start(ranked.c.observed_date).label("triggered_at"),
            cast(ranked.c.old_price, Numeric(10, 2)).label("old_value"),
            cast(ranked.c.new_price, Numeric(10, 2)).label("new_value"),
            Store.name.label("store_name"),
            *_no_sizes(),
        )
        .join(NormalizedProduct, NormalizedProduct.id == ranked.c.product_id)
        .join(Store, Store.id == ranked.c.store_id)
        .where(
            ranked.c.rank == 1,
            ranked.c.old_price > 0,
            ranked.c.new_price > ranked.c.old_price,
            ranked.c.observed_date >= since,
            rise >= 0,
        )
    )
    if only is not None and only.day is not None:
        stmt = stmt.where(ranked.c.observed_date == only.day)
    return stmt


def _shrinkflation(sql: _Sql, *, user_id: str, only: _Only | None) -> Select[*tuple[Any, ...]]:
    event = ShrinkflationEvent
    stmt = (
        select(
            (literal("shr:") + sql.uuid_text(event.id)).label("id"),
            literal(SHRINKFLATION, String(20)).label("alert_type"),
            event.normalized_product_id.label("product_id"),
            NormalizedProduct.canonical_name.label("product_name"),
            sql.day_start(event.detected_date).label("triggered_at"),
            event.price_at_old_size.label("old_value"),
            event.price_at_new_size.label("new_value"),
            cast(null(), String(100)).label("store_name"),
            event.old_size.label("old_size"),
            event.new_size.label("new_size"),
            event.old_unit.label("old_unit"),
            event.new_unit.label("new_unit"),
        )
        .join(NormalizedProduct, NormalizedProduct.id == event.normalized_product_id)
        .where(event.normalized_product_id.in_(_bought(user_id)))
    )
    if only is not None:
        stmt = stmt.where(event.id == only.ids[0])
    return stmt


def _targets_hit(sql: _Sql, *, user_id: str, only: _Only | None) -> Select[*tuple[Any, ...]]:
    target = PriceTargetAlert
    stmt = (
        select(
            (literal("tgt:") + sql.uuid_text(target.id)).label("id"),
            literal(PRICE_TARGET, String(20)).label("alert_type"),
            target.normalized_product_id.label("product_id"),
            NormalizedProduct.canonical_name.label("product_name"),
            type_coerce(target.triggered_at, UTCDateTime()).label("triggered_at"),
            target.target_price.label("old_value"),
            target.triggered_price.label("new_value"),
            Store.name.label("store_name"),
            *_no_sizes(),
        )
        .join(NormalizedProduct, NormalizedProduct.id == target.normalized_product_id)
        .outerjoin(Store, Store.id == target.triggered_store_id)
        .where(target.user_id == user_id, target.triggered_at.is_not(None))
    )
    if only is not None:
        stmt = stmt.where(target.id == only.ids[0])
    return stmt


async def _feed(
    session: AsyncSession,
    *,
    user_id: str,
    today: date,
    unread: bool | None = None,
    only: _Only | None = None,
    limit: int | None = None,
    offset: int = 0,
    after: tuple[datetime, str] | None = None,
) -> list[FeedAlert]:
    sql = _Sql(session)
    prefs = await get_alert_settings(session, user_id=user_id)
    since = today - timedelta(days=PRICE_INCREASE_WINDOW_DAYS)
    parts: list[Select[*tuple[Any, ...]]] = []
    if only is None or only.alert_type == PRICE_INCREASE:
        parts.append(
            _increases(sql, user_id=user_id, threshold=prefs.price_increase_threshold_pct, since=since, only=only)
        )
    if prefs.shrinkflation_enabled and (only is None or only.alert_type == SHRINKFLATION):
        parts.append(_shrinkflation(sql, user_id=user_id, only=only))
    if only is None or only.alert_type == PRICE_TARGET:
        parts.append(_targets_hit(sql, user_id=user_id, only=only))
    if not parts:  # asked for one shrinkflation alert while the user turned shrinkflation alerts off
        return []
    feed = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("feed")
    is_read = AlertRead.alert_id.is_not(None)
    stmt = (
        select(feed, is_read.label("read"))
        .outerjoin(AlertRead, and_(AlertRead.user_id == user_id, AlertRead.alert_id == feed.c.id))
        .order_by(feed.c.triggered_at.desc(), feed.c.id.desc())
    )
    if unread is not None:
        stmt = stmt.where(~is_read if unread else is_read)
    if after is not None:
        stmt = stmt.where(
            or_(feed.c.triggered_at < after[0], and_(feed.c.triggered_at == after[0], feed.c.id < after[1]))
        )
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    rows = (await session.execute(stmt)).mappings().all()
    return [
        FeedAlert(
            row["id"],
            row["alert_type"],
            row["product_id"],
            row["product_name"],
            _message(row),
            row["triggered_at"],
            bool(row["read"]),
        )
        for row in rows
    ]


def _dollars(value: Any) -> str:
    return f"${Decimal(str(value)):,.2f}"


def _message(row: Any) -> str:
    name = row["product_name"]
    old, new = row["old_value"], row["new_value"]
    if row["alert_type"] == PRICE_INCREASE:
        pct = (Decimal(str(new)) - Decimal(str(old))) / Decimal(str(old)) * 100
        return f"{name} went from {_dollars(old)} to {_dollars(new)} at {row['store_name']} (+{pct:.1f}%)"
    if row["alert_type"] == SHRINKFLATION:
        text = f"{name} shrank from {row['old_size']} {row['old_unit']} to {row['new_size']} {row['new_unit']}"
        if old is not None and new is not None:
            text += f" (price {_dollars(old)} before, {_dollars(new)} now)"
        return text
    where = f" at {row['store_name']}" if row["store_name"] else ""
    if new is None:
        return f"{name} reached your target of {_dollars(old)}{where}"
    return f"{name} costs {_dollars(new)}{where}, at or below your target of {_dollars(old)}"


async def list_alerts(
    session: AsyncSession,
    *,
    user_id: str,
    today: date,
    unread: bool | None,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, str] | None = None,
) -> list[FeedAlert]:
    """A page of the feed, newest first (``limit`` rows after the keyset position or offset)."""
    return await _feed(session, user_id=user_id, today=today, unread=unread, limit=limit, offset=offset, after=after)


async def get_alert(session: AsyncSession, *, user_id: str, alert_id: str, today: date) -> FeedAlert | None:
    """The alert when it is in this user's feed now."""
    only = parse_alert_id(alert_id)
    if only is None:
        return None
    found = await _feed(session, user_id=user_id, today=today, only=only)
    return next((alert for alert in found if alert.id == alert_id), None)


async def set_alert_read(session: AsyncSession, *, user_id: str, alert_id: str, read: bool, now: datetime) -> None:
    if read:
        await _insert_once(session, AlertRead(user_id=user_id, alert_id=alert_id, read_at=now))
    else:
        await session.execute(delete(AlertRead).where(AlertRead.user_id == user_id, AlertRead.alert_id == alert_id))


# --- target-price alerts ------------------------------------------------------------------------------------


def _lowest_prices(product_ids: Any) -> Any:
    """Per product, the lowest of its latest effective prices across stores."""
    ranked = (
        select(
            PriceHistory.normalized_product_id.label("product_id"),
            effective_price().label("price"),
            func.row_number()
            .over(
                partition_by=(PriceHistory.normalized_product_id, PriceHistory.store_id),
                order_by=in_observed_order(newest_first=True),
            )
            .label("rank"),
        )
        .where(PriceHistory.normalized_product_id.in_(product_ids))
        .subquery("ranked")
    )
    return (
        select(ranked.c.product_id, cast(func.min(ranked.c.price), Numeric(10, 2)).label("price"))
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.product_id)
        .subquery("lowest")
    )


def _targets(user_id: str) -> Select[*tuple[Any, ...]]:
    target = PriceTargetAlert
    lowest = _lowest_prices(select(target.normalized_product_id).where(target.user_id == user_id))
    return (
        select(
            target.id,
            target.normalized_product_id,
            NormalizedProduct.canonical_name,
            target.target_price,
            lowest.c.price,
            target.triggered_at.is_not(None),
            target.created_at,
            target.triggered_at,
        )
        .join(NormalizedProduct, NormalizedProduct.id == target.normalized_product_id)
        .outerjoin(lowest, lowest.c.product_id == target.normalized_product_id)
        .where(target.user_id == user_id)
    )


async def list_targets(
    session: AsyncSession, *, user_id: str, limit: int, offset: int = 0, after: tuple[datetime, uuid.UUID] | None = None
) -> list[TargetAlert]:
    target = PriceTargetAlert
    stmt = newest_first(session, _targets(user_id), created=target.created_at, key=target.id, after=after)
    stmt = stmt.limit(limit).offset(offset)
    return [TargetAlert(*row) for row in (await session.execute(stmt)).all()]


async def get_target(session: AsyncSession, *, user_id: str, target_id: uuid.UUID) -> TargetAlert | None:
    row = (await session.execute(_targets(user_id).where(PriceTargetAlert.id == target_id))).one_or_none()
    return TargetAlert(*row) if row is not None else None


async def product_exists(session: AsyncSession, *, product_id: uuid.UUID) -> bool:
    found = await session.execute(select(NormalizedProduct.id).where(NormalizedProduct.id == product_id))
    return found.first() is not None


async def has_pending_target(session: AsyncSession, *, user_id: str, product_id: uuid.UUID) -> bool:
    """Whether the user has a target on the product that has not fired."""
    found = await session.execute(
        select(PriceTargetAlert.id)
        .where(
            PriceTargetAlert.user_id == user_id,
            PriceTargetAlert.normalized_product_id == product_id,
            PriceTargetAlert.triggered_at.is_(None),
        )
        .limit(1)
    )
    return found.first() is not None


async def insert_target(
    session: AsyncSession, *, user_id: str, product_id: uuid.UUID, target_price: Decimal, now: datetime
) -> uuid.UUID:
    row = PriceTargetAlert(
        user_id=user_id, normalized_product_id=product_id, target_price=target_price, created_at=now, updated_at=now
    )
    session.add(row)
    await session.flush()
    return row.id


async def delete_target(session: AsyncSession, *, user_id: str, target_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(PriceTargetAlert).where(PriceTargetAlert.id == target_id, PriceTargetAlert.user_id == user_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def trigger_price_targets(
    session: AsyncSession,
    *,
    product_id: uuid.UUID,
    store_id: uuid.UUID,
    price: Decimal,
    now: datetime,
    target_id: uuid.UUID | None = None,
) -> list[TriggeredTarget]:
    """Fire every pending target of the product that ``price`` meets (only ``target_id``, when given). The update is
    conditional on the target still being pending, so a target fires exactly once even when two processes handle the
    same price."""
    target = PriceTargetAlert
    pending = [target.normalized_product_id == product_id, target.triggered_at.is_(None), target.target_price >= price]
    if target_id is not None:
        pending.append(target.id == target_id)
    stmt = (
        update(target)
        .where(*pending)
        .values(triggered_at=now, triggered_price=price, triggered_store_id=store_id, updated_at=now)
        .returning(target.id, target.user_id, target.target_price)
        .execution_options(synchronize_session=False)
    )
    fired: Sequence[Any] = (await session.execute(stmt)).all()
    if not fired:
        return []
    product_name = select(NormalizedProduct.canonical_name).where(NormalizedProduct.id == product_id)
    store_slug = select(Store.slug).where(Store.id == store_id)
    name, slug = (await session.execute(select(product_name.scalar_subquery(), store_slug.scalar_subquery()))).one()
    return [
        TriggeredTarget(alert_id, user_id, product_id, name, slug, target_price, price)
        for alert_id, user_id, target_price in sorted(fired, key=lambda row: (row[1], str(row[0])))
    ]


# --- the outbox of fired targets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StagedAlert:
    """A fired target's alert waiting in the outbox: the ``cartsnitch.alerts.price_target`` payload, and the queued
    price update (``entry_id``) that fired it."""

    entry_id: str
    alert_id: uuid.UUID
    payload: dict[str, Any]


async def fire_price_targets(
    session: AsyncSession,
    *,
    entry_id: str,
    product_id: uuid.UUID,
    store_id: uuid.UUID,
    price: Decimal,
    now: datetime,
    target_id: uuid.UUID | None = None,
) -> list[StagedAlert]:
    """Fire the targets ``price`` meets (only ``target_id``, when given) and put their alerts in the outbox, in the
    caller's transaction (a target is never fired without its alert kept). Returns the alerts of ``entry_id`` in the
    outbox: fired now, or by an earlier attempt at the same update (on any process) that did not record them."""
    fired = await trigger_price_targets(
        session, product_id=product_id, store_id=store_id, price=price, now=now, target_id=target_id
    )
    for target in fired:
        payload = {
            "user_id": target.user_id,
            "alert_id": str(target.alert_id),
            "product_id": str(target.product_id),
            "product_name": target.product_name,
            "store_slug": target.store_slug,
            "target_price": float(target.target_price),
            "current_price": float(target.current_price),
        }
        session.add(
            HubAlertOutbox(
                entry_id=entry_id, alert_id=target.alert_id, payload=orjson.dumps(payload).decode(), created_at=now
            )
        )
    await session.flush()
    return await staged_alerts(session, entry_id=entry_id)


async def fire_if_met(
    session: AsyncSession, *, target_id: uuid.UUID, product_id: uuid.UUID, now: datetime
) -> list[StagedAlert]:
    """A new target that the product's current price already meets fires at once, in the caller's transaction,
    its alert in the outbox as a price update's would be (at the store with the lowest price): waiting for the
    next price update would show the user a current price under the target on a target that has not fired."""
    latest = await latest_prices(session, product_ids=[product_id])
    if not latest:
        return []
    lowest = min(latest, key=lambda at_store: (at_store.price, str(at_store.store_id)))
    return await fire_price_targets(
        session,
        entry_id=f"created:{target_id}",
        product_id=product_id,
        store_id=lowest.store_id,
        price=lowest.price,
        now=now,
        target_id=target_id,
    )


async def staged_alerts(
    session: AsyncSession, *, entry_id: str | None = None, before: datetime | None = None
) -> list[StagedAlert]:
    """Alerts in the outbox, oldest first: all those of one price update, or a page of those staged before
    ``before``."""
    outbox = HubAlertOutbox
    stmt = select(outbox).order_by(outbox.created_at, outbox.entry_id, outbox.alert_id)
    stmt = stmt.where(outbox.entry_id == entry_id) if entry_id is not None else stmt.limit(OUTBOX_PAGE)
    if before is not None:
        stmt = stmt.where(outbox.created_at < before)
    rows = (await session.execute(stmt)).scalars().all()
    return [StagedAlert(row.entry_id, row.alert_id, orjson.loads(row.payload)) for row in rows]


async def unstage_alerts(session: AsyncSession, staged: Sequence[StagedAlert]) -> None:
    """Take recorded alerts out of the outbox."""
    by_entry: dict[str, list[uuid.UUID]] = {}
    for alert in staged:
        by_entry.setdefault(alert.entry_id, []).append(alert.alert_id)
    outbox = HubAlertOutbox
    for entry_id, alert_ids in by_entry.items():
        await session.execute(delete(outbox).where(outbox.entry_id == entry_id, outbox.alert_id.in_(alert_ids)))
