"""Product search by index: a pg_trgm GIN index on name and brand, and the catalogue's (created_at, id) order.

``GET /products?q=`` matches ``q`` anywhere in the name or the brand (``LIKE '%q%'``), which no b-tree serves: every
search read and lower-cased the whole table. The trigram index (PostgreSQL only) holds ``lower(name || ' ' ||
brand)``; a needle with three letters or digits in a row is looked up in it, and the rows found are then tested
against the name and the brand apart, so the result is the same. Shorter needles, a category or no filter at all
read the catalogue newest first from the (created_at, id) index (both databases) and stop at the page's end.

pg_trgm ships with PostgreSQL (contrib) and is a trusted extension: the database's owner, or a role with CREATE on
the database, may create it. When the extension is there already nothing is asked of the role. When it can be
neither found nor created, the migration logs how to add it later and goes on without the trigram index: search
gives the same results, by reading the table. Downgrading drops the indexes and leaves the extension, which other
objects may use.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:30:00.000000
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

SEARCH_INDEX = "ix_normalized_products_search_trgm"
SEARCH_TEXT = "lower(canonical_name || coalesce(' ' || brand, ''))"
CREATE_SEARCH_INDEX = (
    f"CREATE INDEX IF NOT EXISTS {SEARCH_INDEX} ON normalized_products USING gin ({SEARCH_TEXT} gin_trgm_ops)"
)


def _trigrams_available() -> bool:
    """pg_trgm is installed in this database, or could be installed now."""
    bind = op.get_bind()
    if bind.scalar(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")):
        return True
    try:
        with bind.begin_nested():  # a savepoint: a refusal leaves the migration's transaction usable
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError as error:
        log.warning(
            "pg_trgm could not be created (%s); product search works without its index but reads the whole "
            "catalogue. To add it later, as a role allowed to: CREATE EXTENSION pg_trgm; %s;",
            str(error.orig).strip().splitlines()[0],
            CREATE_SEARCH_INDEX,
        )
        return False
    return True


def upgrade() -> None:
    op.create_index(
        "ix_normalized_products_created_at_id",
        "normalized_products",
        ["created_at", "id"],
        unique=False,
        if_not_exists=True,
    )
    if op.get_bind().dialect.name == "postgresql" and _trigrams_available():
        op.execute(CREATE_SEARCH_INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(SEARCH_INDEX, table_name="normalized_products", if_exists=True)
    op.drop_index("ix_normalized_products_created_at_id", table_name="normalized_products", if_exists=True)
