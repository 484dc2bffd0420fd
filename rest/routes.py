"""The URL table: every resource module's routes, registered in one place."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp_cors
from aiohttp import web

from hub import __version__, keys
from rest import (
    alerts,
    auth,
    coupons,
    docs,
    events,
    health,
    internal,
    prices,
    products,
    public,
    purchases,
    pwa,
    scraping,
    shopping,
    stores,
)
from rest.openapi import Operation, RouteTable, build_spec

TABLES: tuple[RouteTable, ...] = (
    health.routes,
    docs.routes,
    auth.routes,
    stores.routes,
    purchases.routes,
    products.routes,
    prices.routes,
    coupons.routes,
    alerts.routes,
    shopping.routes,
    scraping.routes,
    public.routes,
    events.routes,
    internal.routes,
    pwa.routes,
)

DESCRIPTION = (
    "CartSnitch Hub: the REST API of the CartSnitch grocery price platform and its real-time Socket.IO hub "
    "(Socket.IO v5 / Engine.IO v4 at /socket.io/: namespace /users/{user_id} with auth {token, last_event_id}, "
    "namespace /public with subscribe/unsubscribe). Errors are application/problem+json (RFC 9457)."
)


def all_operations() -> Iterator[Operation]:
    for table in TABLES:
        yield from table.operations


def setup_routes(app: web.Application) -> None:
    settings = app[keys.settings]
    cors = aiohttp_cors.setup(
        app,
        defaults={
            origin: aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
                allow_credentials=True,
                expose_headers=(
                    "Link",
                    "ETag",
                    "RateLimit",
                    "RateLimit-Policy",
                    "Retry-After",
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset",
                    "Location",
                ),
                allow_headers=("Authorization", "Content-Type", "If-None-Match", "Last-Event-ID", "X-Service-Key"),
                max_age=600,
            )
            for origin in settings.cors_origins
        },
    )
    operations = list(all_operations())
    by_handler = {}
    for op in operations:
        route = app.router.add_route(op.method, op.path, op.handler, name=op.name)
        cors.add(route)
        by_handler[op.handler] = op
    app[keys.operations] = by_handler
    app[keys.openapi] = build_spec(operations, title="CartSnitch Hub API", version=__version__, description=DESCRIPTION)
