"""The embedded history's event ids are never given twice.

``hub_events.id`` was SQLite's plain ``INTEGER PRIMARY KEY``: a new row takes the largest id in the table plus one,
so once trimming by age had emptied the table (a week without events, the demo ticker off), numbering began again
at 1 in the same epoch. The new events then carried the ids of events clients had already seen: a client caught up
to the old newest id got none of them, on any channel. ``AUTOINCREMENT`` makes SQLite remember the largest id ever
given (``sqlite_sequence``); it starts past every id in the table and every id trimmed from it. PostgreSQL's
sequence never gave an id twice: nothing changes there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("hub_events", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass
    op.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'hub_events', 0"
        " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'hub_events')"
    )
    op.execute(
        "UPDATE sqlite_sequence SET seq = max(seq,"
        " coalesce((SELECT max(id) FROM hub_events), 0),"
        " coalesce((SELECT max(max_deleted_id) FROM hub_event_marks), 0))"
        " WHERE name = 'hub_events'"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("hub_events", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
