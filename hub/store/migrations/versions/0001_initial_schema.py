"""Initial schema: the platform's shared tables (adopted when present) and the tables the hub owns.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 00:15:59.661649
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


HUB_TABLES = (
    "sync_jobs",
    "shopping_list_items",
    "shopping_lists",
    "alert_reads",
    "price_target_alerts",
    "alert_settings",
    "refresh_tokens",
    "refresh_token_families",
    "hub_events",
    "hub_event_marks",
    "hub_meta",
)


def upgrade() -> None:
    if not _exists("hub_event_marks"):
        op.create_table(
            "hub_event_marks",
            sa.Column("audience", sa.String(length=200), nullable=False),
            sa.Column("max_deleted_id", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("audience", name=op.f("pk_hub_event_marks")),
        )
    if not _exists("hub_events"):
        op.create_table(
            "hub_events",
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
            sa.Column("audience", sa.String(length=200), nullable=False),
            sa.Column("envelope", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_hub_events")),
        )
    op.create_index("ix_hub_events_audience_id", "hub_events", ["audience", "id"], unique=False, if_not_exists=True)

    if not _exists("hub_meta"):
        op.create_table(
            "hub_meta",
            sa.Column("key", sa.String(length=50), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("key", name=op.f("pk_hub_meta")),
        )
    if not _exists("normalized_products"):
        op.create_table(
            "normalized_products",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("canonical_name", sa.String(length=255), nullable=False),
            sa.Column("category", sa.String(length=50), nullable=True),
            sa.Column("subcategory", sa.String(length=50), nullable=True),
            sa.Column("brand", sa.String(length=100), nullable=True),
            sa.Column("size", sa.String(length=20), nullable=True),
            sa.Column("size_unit", sa.String(length=20), nullable=True),
            sa.Column(
                "upc_variants",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            ),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_normalized_products")),
        )
    op.create_index(
        op.f("ix_normalized_products_category"),
        "normalized_products",
        ["category"],
        unique=False,
        if_not_exists=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_normalized_products_upc_variants",
            "normalized_products",
            ["upc_variants"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"upc_variants": "jsonb_path_ops"},
            if_not_exists=True,
        )

    if not _exists("stores"):
        op.create_table(
            "stores",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.Column("slug", sa.String(length=20), nullable=False),
            sa.Column("logo_url", sa.Text(), nullable=True),
            sa.Column("website_url", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_stores")),
            sa.UniqueConstraint("slug", name=op.f("uq_stores_slug")),
        )
    if not _exists("users"):
        op.create_table(
            "users",
            sa.Column("id", sa.Text(), nullable=False),
            sa.Column("email", sa.String(length=255), nullable=False),
            sa.Column("hashed_password", sa.String(length=255), nullable=True),
            sa.Column("display_name", sa.String(length=100), nullable=True),
            sa.Column("email_verified", sa.Boolean(), server_default=sa.false(), nullable=False),
            sa.Column("image", sa.Text(), nullable=True),
            sa.Column("email_inbound_token", sa.String(length=22), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
            sa.UniqueConstraint("email", name=op.f("uq_users_email")),
            sa.UniqueConstraint("email_inbound_token", name=op.f("uq_users_email_inbound_token")),
        )
    if not _exists("verifications"):
        op.create_table(
            "verifications",
            sa.Column("id", sa.Text(), nullable=False),
            sa.Column("identifier", sa.Text(), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
        )
    if not _exists("accounts"):
        op.create_table(
            "accounts",
            sa.Column("id", sa.Text(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("account_id", sa.Text(), nullable=False),
            sa.Column("provider_id", sa.Text(), nullable=False),
            sa.Column("password", sa.Text(), nullable=True),
            sa.Column("access_token", sa.Text(), nullable=True),
            sa.Column("refresh_token", sa.Text(), nullable=True),
            sa.Column("access_token_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("refresh_token_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("scope", sa.Text(), nullable=True),
            sa.Column("id_token", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_accounts_user_id_users"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        )
    op.create_index(op.f("ix_accounts_user_id"), "accounts", ["user_id"], unique=False, if_not_exists=True)

    if not _exists("alert_reads"):
        op.create_table(
            "alert_reads",
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("alert_id", sa.String(length=120), nullable=False),
            sa.Column("read_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_alert_reads_user_id_users"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("user_id", "alert_id", name=op.f("pk_alert_reads")),
        )
    if not _exists("alert_settings"):
        op.create_table(
            "alert_settings",
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column(
                "price_increase_threshold_pct",
                sa.Numeric(precision=6, scale=2),
                server_default="5.00",
                nullable=False,
            ),
            sa.Column("shrinkflation_enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
            sa.Column("email_notifications", sa.Boolean(), server_default=sa.false(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_alert_settings_user_id_users"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("user_id", name=op.f("pk_alert_settings")),
        )
    if not _exists("coupons"):
        op.create_table(
            "coupons",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("store_id", sa.Uuid(), nullable=False),
            sa.Column("normalized_product_id", sa.Uuid(), nullable=True),
            sa.Column("title", sa.String(length=255), nullable=False),
            sa.Column("description", sa.Text(), nullable=True),
            sa.Column("discount_type", sa.String(length=20), nullable=False),
            sa.Column("discount_value", sa.Numeric(precision=10, scale=2), nullable=False),
            sa.Column("min_purchase", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("valid_from", sa.Date(), nullable=True),
            sa.Column("valid_to", sa.Date(), nullable=True),
            sa.Column("requires_clip", sa.Boolean(), server_default=sa.false(), nullable=False),
            sa.Column("coupon_code", sa.String(length=100), nullable=True),
            sa.Column("source_url", sa.Text(), nullable=True),
            sa.Column("scraped_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["normalized_product_id"],
                ["normalized_products.id"],
                name=op.f("fk_coupons_normalized_product_id_normalized_products"),
            ),
            sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_coupons_store_id_stores")),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        )
    op.create_index(
        op.f("ix_coupons_normalized_product_id"),
        "coupons",
        ["normalized_product_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(op.f("ix_coupons_store_id"), "coupons", ["store_id"], unique=False, if_not_exists=True)

    if not _exists("price_target_alerts"):
        op.create_table(
            "price_target_alerts",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("normalized_product_id", sa.Uuid(), nullable=False),
            sa.Column("target_price", sa.Numeric(precision=10, scale=2), nullable=False),
            sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("triggered_price", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("triggered_store_id", sa.Uuid(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["normalized_product_id"],
                ["normalized_products.id"],
                name=op.f("fk_price_target_alerts_normalized_product_id_normalized_products"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["triggered_store_id"],
                ["stores.id"],
                name=op.f("fk_price_target_alerts_triggered_store_id_stores"),
            ),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_price_target_alerts_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_price_target_alerts")),
        )
    op.create_index(
        "ix_price_target_alerts_product_pending",
        "price_target_alerts",
        ["normalized_product_id", "triggered_at"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_price_target_alerts_user_id"),
        "price_target_alerts",
        ["user_id"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("refresh_token_families"):
        op.create_table(
            "refresh_token_families",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("revoked_reason", sa.String(length=50), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_refresh_token_families_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token_families")),
        )
    op.create_index(
        op.f("ix_refresh_token_families_user_id"),
        "refresh_token_families",
        ["user_id"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("sessions"):
        op.create_table(
            "sessions",
            sa.Column("id", sa.Text(), nullable=False),
            sa.Column("token", sa.Text(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ip_address", sa.Text(), nullable=True),
            sa.Column("user_agent", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
            sa.UniqueConstraint("token", name=op.f("uq_sessions_token")),
        )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"], unique=False, if_not_exists=True)

    if not _exists("shopping_lists"):
        op.create_table(
            "shopping_lists",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_shopping_lists_user_id_users"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_shopping_lists")),
        )
    op.create_index(
        "ix_shopping_lists_user_id_created_at",
        "shopping_lists",
        ["user_id", "created_at"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("shrinkflation_events"):
        op.create_table(
            "shrinkflation_events",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("normalized_product_id", sa.Uuid(), nullable=False),
            sa.Column("detected_date", sa.Date(), nullable=False),
            sa.Column("old_size", sa.String(length=20), nullable=False),
            sa.Column("new_size", sa.String(length=20), nullable=False),
            sa.Column("old_unit", sa.String(length=20), nullable=False),
            sa.Column("new_unit", sa.String(length=20), nullable=False),
            sa.Column("price_at_old_size", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("price_at_new_size", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("confidence", sa.Numeric(precision=3, scale=2), nullable=True),
            sa.Column("notes", sa.Text(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["normalized_product_id"],
                ["normalized_products.id"],
                name=op.f("fk_shrinkflation_events_normalized_product_id_normalized_products"),
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_shrinkflation_events")),
        )
    op.create_index(
        op.f("ix_shrinkflation_events_normalized_product_id"),
        "shrinkflation_events",
        ["normalized_product_id"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("store_locations"):
        op.create_table(
            "store_locations",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("store_id", sa.Uuid(), nullable=False),
            sa.Column("address", sa.String(length=255), nullable=True),
            sa.Column("city", sa.String(length=100), nullable=True),
            sa.Column("state", sa.String(length=2), nullable=True),
            sa.Column("zip", sa.String(length=10), nullable=True),
            sa.Column("lat", sa.Float(), nullable=True),
            sa.Column("lng", sa.Float(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["store_id"],
                ["stores.id"],
                name=op.f("fk_store_locations_store_id_stores"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_store_locations")),
        )
    op.create_index(
        op.f("ix_store_locations_store_id"), "store_locations", ["store_id"], unique=False, if_not_exists=True
    )

    if not _exists("sync_jobs"):
        op.create_table(
            "sync_jobs",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("store_id", sa.Uuid(), nullable=False),
            sa.Column("status", sa.String(length=20), nullable=False),
            sa.Column("mode", sa.String(length=20), nullable=False),
            sa.Column("progress", sa.Float(), nullable=False),
            sa.Column("items_synced", sa.Integer(), nullable=False),
            sa.Column("message", sa.Text(), nullable=True),
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_sync_jobs_store_id_stores")),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_sync_jobs_user_id_users"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_jobs")),
        )
    op.create_index(
        "ix_sync_jobs_user_id_store_id_created_at",
        "sync_jobs",
        ["user_id", "store_id", "created_at"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("user_store_accounts"):
        op.create_table(
            "user_store_accounts",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("store_id", sa.Uuid(), nullable=False),
            sa.Column("session_data", sa.Text(), nullable=True),
            sa.Column("session_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["store_id"],
                ["stores.id"],
                name=op.f("fk_user_store_accounts_store_id_stores"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_user_store_accounts_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_user_store_accounts")),
            sa.UniqueConstraint("user_id", "store_id", name="uq_user_store_accounts_user_id_store_id"),
        )
    if not _exists("purchases"):
        op.create_table(
            "purchases",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("user_id", sa.Text(), nullable=False),
            sa.Column("store_id", sa.Uuid(), nullable=False),
            sa.Column("store_location_id", sa.Uuid(), nullable=True),
            sa.Column("receipt_id", sa.String(length=200), nullable=False),
            sa.Column("purchase_date", sa.Date(), nullable=False),
            sa.Column("total", sa.Numeric(precision=10, scale=2), nullable=False),
            sa.Column("subtotal", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("tax", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("savings_total", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("source_url", sa.Text(), nullable=True),
            sa.Column("raw_data", sa.JSON(), nullable=True),
            sa.Column("ingested_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_purchases_store_id_stores")),
            sa.ForeignKeyConstraint(
                ["store_location_id"],
                ["store_locations.id"],
                name=op.f("fk_purchases_store_location_id_store_locations"),
            ),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_purchases_user_id_users"), ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
            sa.UniqueConstraint("user_id", "store_id", "receipt_id", name="uq_purchases_user_id_store_id_receipt_id"),
        )
    op.create_index(
        "ix_purchases_user_id_purchase_date_id",
        "purchases",
        ["user_id", "purchase_date", "id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        "ix_purchases_user_id_store_id",
        "purchases",
        ["user_id", "store_id"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("refresh_tokens"):
        op.create_table(
            "refresh_tokens",
            sa.Column("jti", sa.String(length=64), nullable=False),
            sa.Column("family_id", sa.String(length=64), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["family_id"],
                ["refresh_token_families.id"],
                name=op.f("fk_refresh_tokens_family_id_refresh_token_families"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("jti", name=op.f("pk_refresh_tokens")),
        )
    op.create_index(
        op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"], unique=False, if_not_exists=True
    )

    if not _exists("shopping_list_items"):
        op.create_table(
            "shopping_list_items",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("list_id", sa.Uuid(), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.Column("normalized_product_id", sa.Uuid(), nullable=True),
            sa.Column("name", sa.String(length=255), nullable=False),
            sa.Column("quantity", sa.Numeric(precision=10, scale=3), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["list_id"],
                ["shopping_lists.id"],
                name=op.f("fk_shopping_list_items_list_id_shopping_lists"),
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["normalized_product_id"],
                ["normalized_products.id"],
                name=op.f("fk_shopping_list_items_normalized_product_id_normalized_products"),
                ondelete="SET NULL",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_shopping_list_items")),
        )
    op.create_index(
        op.f("ix_shopping_list_items_list_id"),
        "shopping_list_items",
        ["list_id"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("purchase_items"):
        op.create_table(
            "purchase_items",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("purchase_id", sa.Uuid(), nullable=False),
            sa.Column("product_name_raw", sa.String(length=500), nullable=False),
            sa.Column("upc", sa.String(length=50), nullable=True),
            sa.Column("quantity", sa.Numeric(precision=10, scale=3), nullable=False),
            sa.Column("unit_price", sa.Numeric(precision=10, scale=2), nullable=False),
            sa.Column("extended_price", sa.Numeric(precision=10, scale=2), nullable=False),
            sa.Column("regular_price", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("sale_price", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("coupon_discount", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("loyalty_discount", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("category_raw", sa.String(length=100), nullable=True),
            sa.Column("normalized_product_id", sa.Uuid(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["normalized_product_id"],
                ["normalized_products.id"],
                name=op.f("fk_purchase_items_normalized_product_id_normalized_products"),
            ),
            sa.ForeignKeyConstraint(
                ["purchase_id"],
                ["purchases.id"],
                name=op.f("fk_purchase_items_purchase_id_purchases"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_items")),
        )
    op.create_index(
        op.f("ix_purchase_items_normalized_product_id"),
        "purchase_items",
        ["normalized_product_id"],
        unique=False,
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_purchase_items_purchase_id"),
        "purchase_items",
        ["purchase_id"],
        unique=False,
        if_not_exists=True,
    )

    if not _exists("price_history"):
        op.create_table(
            "price_history",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("normalized_product_id", sa.Uuid(), nullable=False),
            sa.Column("store_id", sa.Uuid(), nullable=False),
            sa.Column("observed_date", sa.Date(), nullable=False),
            sa.Column("regular_price", sa.Numeric(precision=10, scale=2), nullable=False),
            sa.Column("sale_price", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("loyalty_price", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("coupon_price", sa.Numeric(precision=10, scale=2), nullable=True),
            sa.Column("source", sa.String(length=20), server_default="receipt", nullable=False),
            sa.Column("purchase_item_id", sa.Uuid(), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
            sa.ForeignKeyConstraint(
                ["normalized_product_id"],
                ["normalized_products.id"],
                name=op.f("fk_price_history_normalized_product_id_normalized_products"),
            ),
            sa.ForeignKeyConstraint(
                ["purchase_item_id"],
                ["purchase_items.id"],
                name=op.f("fk_price_history_purchase_item_id_purchase_items"),
                ondelete="SET NULL",
            ),
            sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_price_history_store_id_stores")),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_price_history")),
        )
    op.create_index(
        "ix_price_history_observed_date", "price_history", ["observed_date"], unique=False, if_not_exists=True
    )
    op.create_index(
        "ix_price_history_product_store_date",
        "price_history",
        ["normalized_product_id", "store_id", "observed_date"],
        unique=False,
        if_not_exists=True,
    )


def _exists(table: str) -> bool:
    """The platform may have created its tables already: adopt them instead of failing."""
    return sa.inspect(op.get_bind()).has_table(table)


def downgrade() -> None:
    """Drop the tables the hub owns; the platform's shared tables and their data are left alone."""
    for table in HUB_TABLES:
        op.drop_table(table)
