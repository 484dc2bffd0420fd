"""Idempotency keys of publishes in the embedded default (with Redis they live in Redis).

A retried publish within the retention window returns the first event's id and records nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_idempotency_keys",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(120), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hub_idempotency_keys_expires_at", "hub_idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_hub_idempotency_keys_expires_at", table_name="hub_idempotency_keys")
    op.drop_table("hub_idempotency_keys")
