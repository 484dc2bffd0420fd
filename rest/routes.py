"""The URL table: every resource module's routes, registered in one place."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp_cors
from aiohttp import HttpVersion11, hdrs, web

from hub import __version__, keys
from rest import (
    alerts,
    auth,
    coupons,
    dashboard,
    docs,
    events,
    health,
    internal,
    prices,
    problems,
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
    dashboard.routes,
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
    "namespace /public with subscribe/unsubscribe). Errors are application/problem+json (RFC 9457).\n\n"
    "Browsers: public reads and the public SSE stream answer any origin without credentials; user routes answer "
    "the configured origins with credentials. A state-changing request authenticated by the session cookie must "
    "come from an allowed origin (Origin, else Sec-Fetch-Site), else 403; bearer requests are not affected. "
    "EventSource cannot send headers: POST /api/v1/me/events/ticket returns a short-lived, single-use ticket for "
    "GET /api/v1/me/events/stream?ticket=…"
)


def all_operations() -> Iterator[Operation]:
    for table in TABLES:
        yield from table.operations


EXPOSED_HEADERS = (
    "Allow",
    "WWW-Authenticate",
    "Link",
    "ETag",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Location",
)
_ALLOWED_HEADERS = (
    "Authorization",
    "Cache-Control",  # EventSource polyfills send ``Cache-Control: no-cache`` with Last-Event-ID
    "Content-Type",
    "If-None-Match",
    "Last-Event-ID",
    "X-Service-Key",
    "Idempotency-Key",
)


def is_public_read(op: Operation) -> bool:
    """Reads anyone may make from any origin: no credentials, nothing changed (public data, health, docs)."""
    return op.auth == "none" and op.method == "GET"


async def expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` as aiohttp answers it; any other expectation is a 417 problem (aiohttp's own
    answer is plain text quoting the header back)."""
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the response proper has not begun
        return None
    return problems.from_http_exception(web.HTTPExpectationFailed(), request.path)


def setup_routes(app: web.Application) -> None:
    settings = app[keys.settings]
    cors = aiohttp_cors.setup(app)
    credentialed = {
        origin: aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
            allow_credentials=True, expose_headers=EXPOSED_HEADERS, allow_headers=_ALLOWED_HEADERS, max_age=600
        )
        for origin in settings.cors_origins
    }
    # listed origins keep their credentials on public reads too (a PWA sends its token everywhere)
    anyone = {
        **credentialed,
        "*": aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
            allow_credentials=False, expose_headers=EXPOSED_HEADERS, allow_headers=_ALLOWED_HEADERS, max_age=600
        ),
    }
    operations = list(all_operations())
    by_handler = {}
    # one resource per path, holding every method: a CORS preflight is answered by the path's resource, so a
    # method registered on a second resource of the same path would fail its preflight
    resources: dict[str, web.Resource] = {}
    for op in operations:
        resource = resources.get(op.path)
        if resource is None:
            resource = resources[op.path] = app.router.add_resource(op.path)
        options = anyone if is_public_read(op) else credentialed
        cors.add(resource.add_route(op.method, op.handler, expect_handler=expect), options)
        if op.method == "GET" and op.content_type != "text/event-stream":
            # RFC 9110 §9.1: a GET resource answers HEAD too (uptime checks, proxies); aiohttp sends no body
            cors.add(resource.add_route("HEAD", op.handler, expect_handler=expect), options)
        by_handler[op.handler] = op
    app[keys.operations] = by_handler
    app[keys.openapi] = build_spec(operations, title="CartSnitch Hub API", version=__version__, description=DESCRIPTION)
