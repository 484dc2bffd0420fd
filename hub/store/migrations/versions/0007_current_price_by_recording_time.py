"""A product's current price at a store is the observation recorded last on the newest day.

Several observations of one product at one store on one day (the price changed during the day; a receipt and a
scrape) were told apart by their random id, so an older price of the day was as likely to be shown as current as
the newer one, while the price update event and the public trend said otherwise. The observation order is now
(observed_date, created_at, id), and the index that makes the newest one a single probe follows it. Created with
IF NOT EXISTS (and the old one dropped with IF EXISTS), as 0002 did, so it also adopts a database the platform
created.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_price_history_product_store_date_created_id",
        "price_history",
        ["normalized_product_id", "store_id", "observed_date", "created_at", "id"],
        unique=False,
        if_not_exists=True,
    )
    op.drop_index("ix_price_history_product_store_date_id", table_name="price_history", if_exists=True)


def downgrade() -> None:
    op.create_index(
        "ix_price_history_product_store_date_id",
        "price_history",
        ["normalized_product_id", "store_id", "observed_date", "id"],
        unique=False,
        if_not_exists=True,
    )
    op.drop_index("ix_price_history_product_store_date_created_id", table_name="price_history", if_exists=True)
