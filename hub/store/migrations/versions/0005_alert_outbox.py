"""The outbox of target-price alerts: fired in the database, not yet recorded in the user's history.

Firing a target (database) and recording its alert (Redis, or the embedded history) cannot be one transaction. The
target's alert is written to this table in the transaction that fires it and deleted once recorded; a process
that handles the same price update again, or the periodic sweep of any process, records what is left (under an
idempotency key, so nothing twice). Before, a process that died between the two lost the live alert.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_alert_outbox",
        sa.Column("entry_id", sa.String(120), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", "alert_id", name=op.f("pk_hub_alert_outbox")),
    )
    op.create_index("ix_hub_alert_outbox_created_at", "hub_alert_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_hub_alert_outbox_created_at", table_name="hub_alert_outbox")
    op.drop_table("hub_alert_outbox")
