"""Product search on PostgreSQL: a catalogue large enough for the planner to prefer the trigram index (migration
0003), with the plan PostgreSQL makes for the values at hand and the generic plan it caches after five runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from hub.store import products, seed
from hub.store.engine import build_engine
from hub.store.models import NormalizedProduct

pytestmark = pytest.mark.postgres

TRIGRAM_INDEX = "ix_normalized_products_search_trgm"
PAGE = 20
SPECIAL = ("Potato Chips 100%", "Half_and_Half", r"Back\Slash Soap", "Ground Beef 90/10")


async def _catalogue(engine: AsyncEngine) -> list[dict[str, Any]]:
    """The seed's catalogue of 2,000 products (the size the issue measured), and a few names with LIKE's special
    characters."""
    await seed.seed(
        engine,
        seed.SeedSize(users=1, products=2000, price_rows=0, purchases=0, seed=42),
        demo_email="demo@example.com",
        demo_password="a-password-for-tests",
    )
    async with engine.begin() as connection:
        await connection.execute(
            insert(NormalizedProduct),
            [{"canonical_name": name, "brand": None, "upc_variants": []} for name in SPECIAL],
        )
        rows = await connection.execute(
            select(
                NormalizedProduct.id,
                NormalizedProduct.canonical_name,
                NormalizedProduct.brand,
                NormalizedProduct.upc_variants,
                NormalizedProduct.created_at,
            )
        )
        catalogue = [row._asdict() for row in rows]
    # what autovacuum does soon after a load: statistics, and the GIN indexes' pending entries merged
    async with engine.connect() as connection:
        await (await connection.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text("VACUUM (ANALYZE) normalized_products")
        )
    return catalogue


def _expected(rows: list[dict[str, Any]], q: str) -> list[uuid.UUID]:
    """The search's meaning, in Python: ``q`` within the name or the brand in any case, or exactly a UPC."""
    needle = q.lower()
    found = [
        row
        for row in rows
        if needle in row["canonical_name"].lower()
        or needle in (row["brand"] or "").lower()
        or q in (row["upc_variants"] or [])
    ]
    found.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
    return [row["id"] for row in found[:PAGE]]


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(pg_url)
    yield engine
    await engine.dispose()


class Statements:
    """The SQL and parameters the driver was last given on this engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.last: tuple[str, Any] = ("", ())
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Connection, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.last = (statement, parameters)


async def _plan(session: AsyncSession, statement: str, parameters: Any) -> str:
    """EXPLAIN of a statement prepared as the hub's are, executed with these parameters (so under the session's
    plan_cache_mode)."""
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    assert raw is not None
    await raw.execute(f"PREPARE explained AS {statement}")
    try:
        # EXECUTE takes its arguments as SQL literals (EXPLAIN has no parameters of its own)
        args = [await raw.fetchval("SELECT quote_literal($1::text)", str(value)) for value in parameters]
        rows = await raw.fetch(f"EXPLAIN EXECUTE explained({', '.join(args)})")
    finally:
        await raw.execute("DEALLOCATE explained")
    return "\n".join(row[0] for row in rows)


# Few trigrams, few products: the index serves these whatever plan PostgreSQL makes.
RARE = ("arborio", "ARBORIO", "zzzz", "100%", "half_and", "chips 100")
# Planning for these very values PostgreSQL may read the table instead (a few per cent of the catalogue, or many
# trigrams to look up, against lower() and LIKE priced per row at a tenth of their cost); the plan it caches after
# five runs reads the index.
EITHER = ("milk", "MILK", "che", "organic", r"back\slash")
# No three letters or digits in a row: the plan cached for these is never the trigram index's (a needle without a
# trigram would read all of it).
SHORT = ("mi", "A", "%", "_", "\\", "e 9", "0/1", "/")


@pytest.mark.parametrize("plans", ["force_custom_plan", "force_generic_plan"])
async def test_search_reads_the_trigram_index_and_finds_what_it_should(engine: AsyncEngine, plans: str) -> None:
    rows = await _catalogue(engine)
    upc = next(row["upc_variants"][0] for row in rows if row["upc_variants"])
    statements = Statements(engine)
    cached = plans == "force_generic_plan"

    async def search(q: str) -> str:
        found = await products.search_products(session, q=q, limit=PAGE)
        assert [row.id for row in found] == _expected(rows, q), q
        return await _plan(session, *statements.last)

    async with AsyncSession(engine) as session, session.begin():
        await session.execute(text(f"SET LOCAL plan_cache_mode = {plans}"))
        for q in RARE:
            assert TRIGRAM_INDEX in await search(q), q
        for q in (*EITHER, upc):
            plan = await search(q)
            assert not cached or TRIGRAM_INDEX in plan, q
        for q in SHORT:
            plan = await search(q)
            assert not cached or TRIGRAM_INDEX not in plan, q
