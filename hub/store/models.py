"""SQLAlchemy models of the shared CartSnitch schema (CONTRACT §3) and of the tables the hub owns."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    func,
    literal_column,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; on SQLite a naive UTC value. Always an aware UTC datetime in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def Money() -> Numeric[Decimal]:
    return Numeric(10, 2)


JSONVariant = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money(), dict[str, Any]: JSONVariant}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), server_default=func.now(), onupdate=func.now(), nullable=False
    )


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid(), primary_key=True, default=uuid.uuid4)


# --- shared tables (names and columns as the platform has them) -------------------------------------------


class User(Timestamps, Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    hashed_password: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(100))
    email_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    image: Mapped[str | None] = mapped_column(Text)
    email_inbound_token: Mapped[str] = mapped_column(String(22), unique=True, nullable=False)


class Session(Timestamps, Base):
    """A Better-Auth browser session: the raw token is what the session cookie carries before its first dot."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    token: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ip_address: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)


class Account(Timestamps, Base):
    """A Better-Auth account; provider ``credential`` holds the bcrypt password hash."""

    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    account_id: Mapped[str] = mapped_column(Text, nullable=False)
    provider_id: Mapped[str] = mapped_column(Text, nullable=False)
    password: Mapped[str | None] = mapped_column(Text)
    access_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scope: Mapped[str | None] = mapped_column(Text)
    id_token: Mapped[str | None] = mapped_column(Text)


class Verification(Timestamps, Base):
    __tablename__ = "verifications"
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    identifier: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class Store(Timestamps, Base):
    __tablename__ = "stores"
    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    slug: Mapped[str] = mapped_column(String(20), unique=True, nullable=False)
    logo_url: Mapped[str | None] = mapped_column(Text)
    website_url: Mapped[str | None] = mapped_column(Text)


class StoreLocation(Timestamps, Base):
    __tablename__ = "store_locations"
    id: Mapped[uuid.UUID] = _uuid_pk()
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), nullable=False, index=True)
    address: Mapped[str | None] = mapped_column(String(255))
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(2))
    zip: Mapped[str | None] = mapped_column(String(10))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)


class UserStoreAccount(Timestamps, Base):
    __tablename__ = "user_store_accounts"
    __table_args__ = (UniqueConstraint("user_id", "store_id", name="uq_user_store_accounts_user_id_store_id"),)
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), nullable=False)
    session_data: Mapped[str | None] = mapped_column(Text)
    session_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="active", server_default="active")


class NormalizedProduct(Timestamps, Base):
    __tablename__ = "normalized_products"
    # the catalogue's order (newest first): a page, a short search and a category are read from its end
    __table_args__ = (Index("ix_normalized_products_created_at_id", "created_at", "id"),)
    id: Mapped[uuid.UUID] = _uuid_pk()
    canonical_name: Mapped[str] = mapped_column(String(255), nullable=False)
    category: Mapped[str | None] = mapped_column(String(50), index=True)
    subcategory: Mapped[str | None] = mapped_column(String(50))
    brand: Mapped[str | None] = mapped_column(String(100))
    size: Mapped[str | None] = mapped_column(String(20))
    size_unit: Mapped[str | None] = mapped_column(String(20))
    upc_variants: Mapped[list[str] | None] = mapped_column(JSONVariant)


Index(
    "ix_normalized_products_upc_variants",
    NormalizedProduct.upc_variants,
    postgresql_using="gin",
    postgresql_ops={"upc_variants": "jsonb_path_ops"},
).ddl_if(dialect="postgresql")

_PRODUCT = NormalizedProduct.__table__.c
PRODUCT_SEARCH_TEXT: ColumnElement[str] = func.lower(
    _PRODUCT.canonical_name.concat(
        func.coalesce(literal_column("' '", String).concat(_PRODUCT.brand), literal_column("''", String))
    )
)
"""A product's name and brand as one lower-case text, the expression the trigram index holds (spelled with SQL
literals, not bound parameters, so a query's expression is the index's). A needle in the name or in the brand is
in it too, so ``LIKE`` on it narrows a search without changing the result."""

# pg_trgm (migration 0003): serves LIKE '%needle%' on PRODUCT_SEARCH_TEXT when the needle has a trigram
Index(
    "ix_normalized_products_search_trgm",
    PRODUCT_SEARCH_TEXT.label("search_text"),
    postgresql_using="gin",
    postgresql_ops={"search_text": "gin_trgm_ops"},
).ddl_if(dialect="postgresql")


class Purchase(Timestamps, Base):
    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("user_id", "store_id", "receipt_id", name="uq_purchases_user_id_store_id_receipt_id"),
        Index("ix_purchases_user_id_store_id", "user_id", "store_id"),
        Index("ix_purchases_user_id_purchase_date_id", "user_id", "purchase_date", "id"),
    )
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), nullable=False)
    store_location_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("store_locations.id"))
    receipt_id: Mapped[str] = mapped_column(String(200), nullable=False)
    purchase_date: Mapped[date] = mapped_column(Date, nullable=False)
    total: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    subtotal: Mapped[Decimal | None] = mapped_column(Money())
    tax: Mapped[Decimal | None] = mapped_column(Money())
    savings_total: Mapped[Decimal | None] = mapped_column(Money())
    source_url: Mapped[str | None] = mapped_column(Text)
    raw_data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), nullable=False)


class PurchaseItem(Timestamps, Base):
    __tablename__ = "purchase_items"
    id: Mapped[uuid.UUID] = _uuid_pk()
    purchase_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("purchases.id", ondelete="CASCADE"), nullable=False, index=True
    )
    product_name_raw: Mapped[str] = mapped_column(String(500), nullable=False)
    upc: Mapped[str | None] = mapped_column(String(50))
    quantity: Mapped[Decimal] = mapped_column(Numeric(10, 3), nullable=False, default=Decimal(1))
    unit_price: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    extended_price: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    regular_price: Mapped[Decimal | None] = mapped_column(Money())
    sale_price: Mapped[Decimal | None] = mapped_column(Money())
    coupon_discount: Mapped[Decimal | None] = mapped_column(Money())
    loyalty_discount: Mapped[Decimal | None] = mapped_column(Money())
    category_raw: Mapped[str | None] = mapped_column(String(100))
    normalized_product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("normalized_products.id"), index=True)


class PriceHistory(Timestamps, Base):
    __tablename__ = "price_history"
    __table_args__ = (
        # the newest observation of a product at a store (latest_prices) is one probe, in observation order
        Index(
            "ix_price_history_product_store_date_created_id",
            "normalized_product_id",
            "store_id",
            "observed_date",
            "created_at",
            "id",
        ),
        Index("ix_price_history_observed_date", "observed_date"),
    )
    id: Mapped[uuid.UUID] = _uuid_pk()
    normalized_product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("normalized_products.id"), nullable=False)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), nullable=False)
    observed_date: Mapped[date] = mapped_column(Date, nullable=False)
    regular_price: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    sale_price: Mapped[Decimal | None] = mapped_column(Money())
    loyalty_price: Mapped[Decimal | None] = mapped_column(Money())
    coupon_price: Mapped[Decimal | None] = mapped_column(Money())
    source: Mapped[str] = mapped_column(String(20), nullable=False, default="receipt", server_default="receipt")
    purchase_item_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("purchase_items.id", ondelete="SET NULL"))


class Coupon(Timestamps, Base):
    __tablename__ = "coupons"
    id: Mapped[uuid.UUID] = _uuid_pk()
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), nullable=False, index=True)
    normalized_product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("normalized_products.id"), index=True)
    title: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    discount_type: Mapped[str] = mapped_column(String(20), nullable=False)
    discount_value: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    min_purchase: Mapped[Decimal | None] = mapped_column(Money())
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    requires_clip: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    coupon_code: Mapped[str | None] = mapped_column(String(100))
    source_url: Mapped[str | None] = mapped_column(Text)
    scraped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ShrinkflationEvent(Timestamps, Base):
    __tablename__ = "shrinkflation_events"
    id: Mapped[uuid.UUID] = _uuid_pk()
    normalized_product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("normalized_products.id"), nullable=False, index=True
    )
    detected_date: Mapped[date] = mapped_column(Date, nullable=False)
    old_size: Mapped[str] = mapped_column(String(20), nullable=False)
    new_size: Mapped[str] = mapped_column(String(20), nullable=False)
    old_unit: Mapped[str] = mapped_column(String(20), nullable=False)
    new_unit: Mapped[str] = mapped_column(String(20), nullable=False)
    price_at_old_size: Mapped[Decimal | None] = mapped_column(Money())
    price_at_new_size: Mapped[Decimal | None] = mapped_column(Money())
    confidence: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    notes: Mapped[str | None] = mapped_column(Text)


# --- tables the hub owns ------------------------------------------------------------------------------------


class RefreshFamily(Timestamps, Base):
    """One login: every refresh token rotated from it shares the family; reuse of a spent one revokes it."""

    __tablename__ = "refresh_token_families"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(50))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("refresh_token_families.id", ondelete="CASCADE"), nullable=False, index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), nullable=False)


class AlertSettings(Timestamps, Base):
    __tablename__ = "alert_settings"
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    price_increase_threshold_pct: Mapped[Decimal] = mapped_column(
        Numeric(6, 2), nullable=False, default=Decimal("5.00"), server_default="5.00"
    )
    shrinkflation_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=true())
    email_notifications: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class PriceTargetAlert(Timestamps, Base):
    __tablename__ = "price_target_alerts"
    __table_args__ = (Index("ix_price_target_alerts_product_pending", "normalized_product_id", "triggered_at"),)
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    normalized_product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("normalized_products.id", ondelete="CASCADE"), nullable=False
    )
    target_price: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    triggered_price: Mapped[Decimal | None] = mapped_column(Money())
    triggered_store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))


class AlertRead(Base):
    """Read state of one alert of the merged alert feed (the feed's ids are derived from their source rows)."""

    __tablename__ = "alert_reads"
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    read_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), nullable=False)


class ShoppingList(Timestamps, Base):
    __tablename__ = "shopping_lists"
    __table_args__ = (Index("ix_shopping_lists_user_id_created_at", "user_id", "created_at"),)
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)


class ShoppingListItem(Timestamps, Base):
    __tablename__ = "shopping_list_items"
    id: Mapped[uuid.UUID] = _uuid_pk()
    list_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("shopping_lists.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    normalized_product_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("normalized_products.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Numeric(10, 3), nullable=False, default=Decimal(1))


class SyncJob(Timestamps, Base):
    __tablename__ = "sync_jobs"
    __table_args__ = (Index("ix_sync_jobs_user_id_store_id_created_at", "user_id", "store_id", "created_at"),)
    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[str] = mapped_column(Text, ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="queued")
    mode: Mapped[str] = mapped_column(String(20), nullable=False)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    items_synced: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HubEvent(Base):
    """Event history when running without Redis (the embedded default)."""

    __tablename__ = "hub_events"
    # SQLite: an id is never given twice, even after the table was emptied (see migration 0006)
    __table_args__ = (Index("ix_hub_events_audience_id", "audience", "id"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    audience: Mapped[str] = mapped_column(String(200), nullable=False)
    envelope: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class HubEventMark(Base):
    """The newest event id trimmed from an audience's history, to tell a gap from an empty range."""

    __tablename__ = "hub_event_marks"
    audience: Mapped[str] = mapped_column(String(200), primary_key=True)
    max_deleted_id: Mapped[int] = mapped_column(BigInteger, nullable=False)


class HubMeta(Base):
    __tablename__ = "hub_meta"
    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class HubIdempotencyKey(Base):
    """What a publish with an Idempotency-Key recorded, in the embedded default (Redis keeps these otherwise)."""

    __tablename__ = "hub_idempotency_keys"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    event_id: Mapped[str] = mapped_column(String(120), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)


class HubAlertOutbox(Base):
    """A target-price alert fired in the database and not recorded in its user's history yet: written in the
    transaction that fires the target, deleted once the alert is recorded (a transactional outbox)."""

    __tablename__ = "hub_alert_outbox"
    entry_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
