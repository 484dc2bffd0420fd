"""The schema: created by the migrations on both databases, and adopted when the platform created it already."""

from __future__ import annotations

import logging
import secrets
import warnings
from collections.abc import Callable

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, make_url, text
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store import products
from hub.store.engine import build_engine
from hub.store.migrate import alembic_config, current_revision, upgrade
from hub.store.models import Base
from tests import factories

# The shared tables as the platform's own migrations create them (text user ids, JSONB upc_variants).
PLATFORM_DDL = """
CREATE TABLE users (id TEXT PRIMARY KEY, email VARCHAR(255) UNIQUE NOT NULL, hashed_password VARCHAR(255),
  display_name VARCHAR(100), email_verified BOOLEAN NOT NULL DEFAULT false, image TEXT,
  email_inbound_token VARCHAR(22) UNIQUE NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE sessions (id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL REFERENCES users(id)
  ON DELETE CASCADE, expires_at TIMESTAMPTZ NOT NULL, ip_address TEXT, user_agent TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE accounts (id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  account_id TEXT NOT NULL, provider_id TEXT NOT NULL, password TEXT, access_token TEXT, refresh_token TEXT,
  access_token_expires_at TIMESTAMPTZ, refresh_token_expires_at TIMESTAMPTZ, scope TEXT, id_token TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE verifications (id TEXT PRIMARY KEY, identifier TEXT NOT NULL, value TEXT NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE stores (id UUID PRIMARY KEY, name VARCHAR(100) NOT NULL, slug VARCHAR(20) UNIQUE NOT NULL,
  logo_url TEXT, website_url TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE store_locations (id UUID PRIMARY KEY, store_id UUID NOT NULL REFERENCES stores(id),
  address VARCHAR(255), city VARCHAR(100), state VARCHAR(2), zip VARCHAR(10), lat DOUBLE PRECISION,
  lng DOUBLE PRECISION, created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE user_store_accounts (id UUID PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
  store_id UUID NOT NULL REFERENCES stores(id), session_data TEXT, session_expires_at TIMESTAMPTZ,
  last_sync_at TIMESTAMPTZ, status VARCHAR(20) NOT NULL DEFAULT 'active',
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (user_id, store_id));
CREATE TABLE normalized_products (id UUID PRIMARY KEY, canonical_name VARCHAR(255) NOT NULL, category VARCHAR(50),
  subcategory VARCHAR(50), brand VARCHAR(100), size VARCHAR(20), size_unit VARCHAR(20), upc_variants JSONB,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX ix_np_upc ON normalized_products USING gin (upc_variants);
CREATE TABLE purchases (id UUID PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
  store_id UUID NOT NULL REFERENCES stores(id), store_location_id UUID REFERENCES store_locations(id),
  receipt_id VARCHAR(200) NOT NULL, purchase_date DATE NOT NULL, total NUMERIC(10,2) NOT NULL,
  subtotal NUMERIC(10,2), tax NUMERIC(10,2), savings_total NUMERIC(10,2), source_url TEXT, raw_data JSON,
  ingested_at TIMESTAMPTZ NOT NULL DEFAULT now(), created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), UNIQUE (user_id, store_id, receipt_id));
CREATE INDEX ix_purchases_user_store ON purchases (user_id, store_id);
CREATE TABLE purchase_items (id UUID PRIMARY KEY, purchase_id UUID NOT NULL REFERENCES purchases(id),
  product_name_raw VARCHAR(500) NOT NULL, upc VARCHAR(50), quantity NUMERIC(10,3) NOT NULL,
  unit_price NUMERIC(10,2) NOT NULL, extended_price NUMERIC(10,2) NOT NULL, regular_price NUMERIC(10,2),
  sale_price NUMERIC(10,2), coupon_discount NUMERIC(10,2), loyalty_discount NUMERIC(10,2), category_raw VARCHAR(100),
  normalized_product_id UUID REFERENCES normalized_products(id), created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE price_history (id UUID PRIMARY KEY, normalized_product_id UUID NOT NULL REFERENCES normalized_products(id),
  store_id UUID NOT NULL REFERENCES stores(id), observed_date DATE NOT NULL, regular_price NUMERIC(10,2) NOT NULL,
  sale_price NUMERIC(10,2), loyalty_price NUMERIC(10,2), coupon_price NUMERIC(10,2), source VARCHAR(20) NOT NULL,
  purchase_item_id UUID REFERENCES purchase_items(id), created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX ix_ph ON price_history (normalized_product_id, store_id, observed_date);
CREATE TABLE coupons (id UUID PRIMARY KEY, store_id UUID NOT NULL REFERENCES stores(id),
  normalized_product_id UUID REFERENCES normalized_products(id), title VARCHAR(255) NOT NULL, description TEXT,
  discount_type VARCHAR(20) NOT NULL, discount_value NUMERIC(10,2) NOT NULL, min_purchase NUMERIC(10,2),
  valid_from DATE, valid_to DATE, requires_clip BOOLEAN NOT NULL DEFAULT false, coupon_code VARCHAR(100),
  source_url TEXT, scraped_at TIMESTAMPTZ, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE shrinkflation_events (id UUID PRIMARY KEY,
  normalized_product_id UUID NOT NULL REFERENCES normalized_products(id), detected_date DATE NOT NULL,
  old_size VARCHAR(20) NOT NULL, new_size VARCHAR(20) NOT NULL, old_unit VARCHAR(20) NOT NULL,
  new_unit VARCHAR(20) NOT NULL, price_at_old_size NUMERIC(10,2), price_at_new_size NUMERIC(10,2),
  confidence NUMERIC(3,2), notes TEXT, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now());
INSERT INTO users (id, email, email_inbound_token)
  VALUES ('legacy-user-1', 'old@example.com', 'abcdefghijklmnopqrstuv');
"""


async def _tables(url: str) -> set[str]:
    engine = build_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_migrations_create_every_table_on_postgres(pg_url: str) -> None:
    assert set(Base.metadata.tables) <= await _tables(pg_url)


async def test_migrations_create_every_table_on_sqlite(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    engine = build_engine(url)
    try:
        await upgrade(engine)
        assert await current_revision(engine) is not None
        await upgrade(engine)  # idempotent
    finally:
        await engine.dispose()
    assert set(Base.metadata.tables) <= await _tables(url)


@pytest.mark.postgres
async def test_hub_adopts_a_database_the_platform_created(pg_admin_url: str) -> None:
    from tests.conftest import _asyncpg_dsn

    admin = await asyncpg.connect(_asyncpg_dsn(pg_admin_url))
    await admin.execute('DROP DATABASE IF EXISTS "platform_existing" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "platform_existing"')
    await admin.close()
    url = pg_admin_url.rsplit("/", 1)[0] + "/platform_existing"
    platform = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await platform.execute(PLATFORM_DDL)
    finally:
        await platform.close()

    engine = build_engine(url)
    try:
        await upgrade(engine)
        assert await current_revision(engine) is not None
    finally:
        await engine.dispose()
    assert set(Base.metadata.tables) <= await _tables(url)
    check = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        kept = await check.fetchval("SELECT email FROM users WHERE id = 'legacy-user-1'")
        upc_type = await check.fetchval(
            "SELECT data_type FROM information_schema.columns WHERE table_name='normalized_products' "
            "AND column_name='upc_variants'"
        )
    finally:
        await check.close()
    assert kept == "old@example.com"
    assert upc_type == "jsonb"


def _exists_on(dialect: str) -> Callable[..., bool]:
    """Leaves out the PostgreSQL-only GIN index (ddl_if) when comparing another database."""

    def include(obj: object, name: str, kind: str, reflected: bool, compare_to: object) -> bool:
        return not (
            kind == "index" and dialect != "postgresql" and getattr(obj, "dialect_kwargs", {}).get("postgresql_using")
        )

    return include


def _compare(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": _exists_on(connection.dialect.name)}
    )
    with warnings.catch_warnings():
        # SQLite cannot reflect expression indexes, so alembic names the one it skips (before include_object
        # is asked); it is the PostgreSQL-only trigram index, which SQLite never gets
        warnings.filterwarnings("ignore", "autogenerate skipping .* 'ix_normalized_products_search_trgm'")
        return compare_metadata(context, Base.metadata)


async def _schema_drift(url: str) -> list[object]:
    """What autogenerate would change to make the migrated database match the models (nothing, when they agree)."""
    engine = build_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_compare)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_the_migrations_build_the_schema_the_models_describe_on_postgres(pg_url: str) -> None:
    assert await _schema_drift(pg_url) == []


async def test_the_migrations_build_the_schema_the_models_describe_on_sqlite(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/drift.db"
    engine = build_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    assert await _schema_drift(url) == []


SEARCH_INDEXES = {"ix_normalized_products_created_at_id", "ix_normalized_products_search_trgm"}


async def _product_indexes(url: str) -> set[str]:
    engine = build_engine(url)
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(lambda c: inspect(c).get_indexes("normalized_products"))
        return {index["name"] for index in found if index["name"]}
    finally:
        await engine.dispose()


async def _downgrade(url: str, revision: str) -> None:
    engine = build_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: command.downgrade(alembic_config(c), revision))
        assert await current_revision(engine) == revision
    finally:
        await engine.dispose()


async def _upgrade(url: str) -> None:
    engine = build_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_migration_0003_adds_and_removes_the_search_indexes_on_postgres(pg_url: str) -> None:
    assert await _product_indexes(pg_url) >= SEARCH_INDEXES
    await _downgrade(pg_url, "0002")
    assert not SEARCH_INDEXES & await _product_indexes(pg_url)
    await _upgrade(pg_url)
    assert await _product_indexes(pg_url) >= SEARCH_INDEXES
    assert await _schema_drift(pg_url) == []


async def test_migration_0003_adds_and_removes_the_search_indexes_on_sqlite(sqlite_url: str) -> None:
    # SQLite gets the (created_at, id) index only: the trigram index is PostgreSQL's
    assert SEARCH_INDEXES & await _product_indexes(sqlite_url) == {"ix_normalized_products_created_at_id"}
    await _downgrade(sqlite_url, "0002")
    assert not SEARCH_INDEXES & await _product_indexes(sqlite_url)
    await _upgrade(sqlite_url)
    assert SEARCH_INDEXES & await _product_indexes(sqlite_url) == {"ix_normalized_products_created_at_id"}
    assert await _schema_drift(sqlite_url) == []


@pytest.mark.postgres
async def test_migration_0003_goes_on_without_pg_trgm_when_the_role_may_not_create_it(
    pg_admin_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A role that owns its tables but not the database may not create an extension, not even a trusted one."""
    from tests.conftest import _asyncpg_dsn

    role, password, database = "hub_no_extensions", secrets.token_urlsafe(12), "no_extensions"
    admin = await asyncpg.connect(_asyncpg_dsn(pg_admin_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    admin_url = make_url(pg_admin_url).set(database=database)
    admin = await asyncpg.connect(_asyncpg_dsn(admin_url.render_as_string(hide_password=False)))
    try:
        await admin.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
    finally:
        await admin.close()
    url = admin_url.set(username=role, password=password).render_as_string(hide_password=False)
    try:
        with caplog.at_level(logging.WARNING, logger="alembic"):
            await _upgrade(url)
        assert any("CREATE EXTENSION pg_trgm" in record.getMessage() for record in caplog.records)
        assert SEARCH_INDEXES & await _product_indexes(url) == {"ix_normalized_products_created_at_id"}
        engine = build_engine(url)
        try:
            async with engine.begin() as connection:
                assert await connection.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")) == 0
            async with AsyncSession(engine) as session, session.begin():
                await factories.create_product(session, canonical_name="Whole Milk", brand="Dairy Best")
            async with AsyncSession(engine) as session:
                found = await products.search_products(session, q="milk", limit=20)
            assert [row.canonical_name for row in found] == ["Whole Milk"]
        finally:
            await engine.dispose()
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(pg_admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


@pytest.mark.postgres
async def test_concurrent_migrations_of_a_fresh_database_all_succeed(pg_admin_url: str) -> None:
    """The pods and the migration Job of a first Kubernetes rollout all migrate at once: each must succeed."""
    import asyncio
    import os
    import secrets
    import sys

    from cryptography.fernet import Fernet

    from tests.conftest import _asyncpg_dsn

    admin = await asyncpg.connect(_asyncpg_dsn(pg_admin_url))
    await admin.execute('DROP DATABASE IF EXISTS "concurrent_migrations" WITH (FORCE)')
    await admin.execute('CREATE DATABASE "concurrent_migrations"')
    await admin.close()
    url = pg_admin_url.rsplit("/", 1)[0] + "/concurrent_migrations"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARTSNITCH_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "CARTSNITCH_DATABASE_URL": url,
            "CARTSNITCH_DEV_MODE": "false",
            "CARTSNITCH_JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "CARTSNITCH_SERVICE_KEY": secrets.token_urlsafe(32),
            "CARTSNITCH_FERNET_KEY": Fernet.generate_key().decode(),
            "CARTSNITCH_LOG_LEVEL": "WARNING",
        }
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in processes)), 120)
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
    assert set(Base.metadata.tables) <= await _tables(url)


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_alembics_line_per_plugin_is_shown_at_debug_only(level: str, shown: bool) -> None:
    """``serve`` configures logging before it loads Alembic, which logs a line per plugin it sets up: at INFO an
    operator reads which migrations ran, not that."""
    import subprocess
    import sys

    program = f"from hub.infra import logs; logs.install({level!r}, 20); import hub.store.migrate"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("setup plugin" in done.stderr) is shown, done.stderr[-2000:]
