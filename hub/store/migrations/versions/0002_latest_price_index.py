"""The newest observation of a product at a store is one index probe: (product, store, observed_date, id).

It replaces the index on (product, store, observed_date), a prefix of it that served the same queries but left the
id tie-break to a sort. Created with IF NOT EXISTS (and the old one dropped with IF EXISTS) so it also adopts a
database the platform created.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_price_history_product_store_date_id",
        "price_history",
        ["normalized_product_id", "store_id", "observed_date", "id"],
        unique=False,
        if_not_exists=True,
    )
    op.drop_index("ix_price_history_product_store_date", table_name="price_history", if_exists=True)


def downgrade() -> None:
    op.create_index(
        "ix_price_history_product_store_date",
        "price_history",
        ["normalized_product_id", "store_id", "observed_date"],
        unique=False,
        if_not_exists=True,
    )
    op.drop_index("ix_price_history_product_store_date_id", table_name="price_history", if_exists=True)
