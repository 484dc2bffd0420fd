"""Cleanup contexts for the process's resources: database, Redis, the upstream HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from hub import keys
from hub.infra.cache import Cache
from hub.infra.outages import RedisSkip
from hub.infra.ratelimit import RateLimiter
from hub.infra.security import TokenCodec
from hub.realtime import snapshots
from hub.realtime.fanout import EventBus, LocalBus, RedisBus, redis_client
from hub.realtime.hub import Hub
from hub.realtime.identity import Authenticator
from hub.realtime.ingest import Ingest
from hub.realtime.socket import HubRedisManager
from hub.realtime.ticker import DemoTicker
from hub.realtime.tickets import StreamTickets
from hub.store.engine import DatabaseGate, build_engine, build_sessionmaker

log = logging.getLogger("hub")


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    engine = build_engine(
        settings.database_url,
        wait_seconds=settings.database_timeout_seconds,
        statement_seconds=settings.database_statement_timeout_seconds,
    )
    app[keys.engine] = engine
    gate = DatabaseGate(engine, settings.database_timeout_seconds)
    app[keys.sessionmaker] = build_sessionmaker(engine, gate)
    app[keys.outages].watchers["database"] = gate.trip
    codec = TokenCodec(
        settings.jwt_secret_key,
        settings.jwt_algorithm,
        settings.jwt_access_token_expire_minutes * 60,
        settings.jwt_refresh_token_expire_days * 86400,
    )
    app[keys.authenticator] = Authenticator(
        codec, app[keys.sessionmaker], better_auth_secret=settings.better_auth_secret
    )
    yield
    await gate.close()
    await engine.dispose()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.settings]
    client = None
    if settings.redis_url:
        client = redis_client(settings.redis_url, timeout=settings.redis_timeout_seconds)
    app[keys.redis] = client
    # both can do without Redis: a short wait for it, and one failure makes both skip it for a second
    skip = RedisSkip(wait_seconds=settings.redis_timeout_seconds / 4)
    app[keys.limiter] = RateLimiter(client, skip)
    app[keys.cache] = Cache(client, settings.cache_ttl_seconds, skip)
    app[keys.tickets] = StreamTickets(client, settings.stream_ticket_seconds)
    yield
    if client is not None:
        await client.aclose()


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=app[keys.settings].upstream_timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
        app[keys.http_client] = session
        yield


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    """The event bus, the hub and the ingest pipeline; started after the database and Redis, stopped before."""
    settings = app[keys.settings]
    bus: EventBus
    if settings.redis_url:
        consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        bus = RedisBus(
            settings.redis_url,
            max_events=settings.history_max_events,
            max_age_seconds=settings.history_max_age_seconds,
            consumer=consumer,
            timeout=settings.redis_timeout_seconds,
            claim_seconds=settings.ingest_claim_seconds,
        )
    else:
        bus = LocalBus(
            app[keys.sessionmaker],
            max_events=settings.history_max_events,
            max_age_seconds=settings.history_max_age_seconds,
        )
    server = app[keys.sio]
    if (
        isinstance(bus, RedisBus)
        and isinstance(bus.redis, RedisCluster)
        and isinstance(server.manager, HubRedisManager)
    ):
        cluster = bus.redis
        server.manager.cluster_nodes = lambda: [(node.host, int(node.port)) for node in cluster.get_nodes()]
    hub = Hub(settings, bus, server.eio, app[keys.authenticator], app[keys.metrics], server, app[keys.outages])
    hub.register_handlers()
    ingest = Ingest(settings, bus, app[keys.sessionmaker], app[keys.cache], app[keys.metrics], app[keys.outages])
    snapshots.wire(app, hub, ingest, bus)
    app[keys.bus] = bus
    app[keys.hub] = hub
    app[keys.ingest] = ingest
    await bus.start()
    await hub.start()
    ingest.start()
    yield
    await ingest.close()
    await hub.close()
    await bus.close()


async def demo_ticker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The demo price ticker when it is on (dev mode only); started after the realtime core, stopped before it."""
    seconds = app[keys.settings].demo_ticker_seconds
    if seconds <= 0:
        yield
        return
    ticker = DemoTicker(app[keys.sessionmaker], app[keys.ingest], app[keys.hub], seconds)
    log.warning(
        "demo ticker: a simulated price change every %g s (CARTSNITCH_DEMO_TICKER_SECONDS=0 turns it off)", seconds
    )
    task = asyncio.create_task(ticker.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
