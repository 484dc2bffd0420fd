"""Event types: the wire names of the catalog (CONTRACT §7) and who each one is for."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    SYNC_PROGRESS = "cartsnitch.sync.progress"
    RECEIPTS_INGESTED = "cartsnitch.receipts.ingested"
    ALERTS_PRICE_INCREASE = "cartsnitch.alerts.price_increase"
    ALERTS_SHRINKFLATION = "cartsnitch.alerts.shrinkflation"
    ALERTS_PRICE_TARGET = "cartsnitch.alerts.price_target"
    PRICES_UPDATED = "cartsnitch.prices.updated"
    COUPONS_UPDATED = "cartsnitch.coupons.updated"
    PRODUCTS_NORMALIZED = "cartsnitch.products.normalized"


class ControlEvent(StrEnum):
    """Events the hub sends to one connection; they are not part of any history."""

    RESYNC = "cartsnitch.resync"
    AUTH_EXPIRING = "cartsnitch.auth.expiring"
    SESSION_ENDED = "cartsnitch.session.ended"
    RECONNECT = "cartsnitch.reconnect"
    """The stream is ending because its hub process is shutting down: reconnect (with the last id) elsewhere."""


class ClientCommand(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    AUTH_REFRESH = "auth.refresh"


class Audience(StrEnum):
    USER = "user"
    """The user named by ``payload.user_id``."""
    USER_OR_BUYERS = "user_or_buyers"
    """``payload.user_id`` when present, otherwise every user who bought ``payload.product_id``."""
    TREND_ROOM = "trend_room"
    """The public room ``trend:<payload.product_id>``."""
    COUPON_USERS = "coupon_users"
    """Every user with a purchase relevant to one of ``payload.coupon_ids``."""
    NONE = "none"
    """Nobody: the event only invalidates caches."""


AUDIENCE: dict[EventType, Audience] = {
    EventType.SYNC_PROGRESS: Audience.USER,
    EventType.RECEIPTS_INGESTED: Audience.USER,
    EventType.ALERTS_PRICE_INCREASE: Audience.USER_OR_BUYERS,
    EventType.ALERTS_SHRINKFLATION: Audience.USER_OR_BUYERS,
    EventType.ALERTS_PRICE_TARGET: Audience.USER,
    EventType.PRICES_UPDATED: Audience.TREND_ROOM,
    EventType.COUPONS_UPDATED: Audience.COUPON_USERS,
    EventType.PRODUCTS_NORMALIZED: Audience.NONE,
}

LEGACY_CHANNEL_PREFIX = "cartsnitch."


_BY_NAME = {kind.value: kind for kind in EventType}


def parse_event_type(name: str) -> EventType | None:
    """The catalog event type named ``name``, or None when the catalog has no such event."""
    return _BY_NAME.get(name)


def is_direct(event_type: EventType, payload: dict[str, object]) -> bool:
    """True when the event goes straight to one user's history (no hub-side expansion needed)."""
    audience = AUDIENCE[event_type]
    if audience is Audience.USER:
        return True
    return audience is Audience.USER_OR_BUYERS and bool(payload.get("user_id"))
