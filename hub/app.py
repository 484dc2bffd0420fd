"""create_app(settings): the only place that wires everything together."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from hub import keys, resources
from hub.infra.clientaddr import ClientAddress
from hub.infra.metrics import Metrics
from hub.infra.origins import OriginPolicy
from hub.infra.outages import Outages
from hub.realtime import socket
from hub.settings import Settings
from rest import middleware, problems, routes

log = logging.getLogger("hub")
SOCKETIO_PREFIX = "/" + socket.SOCKETIO_PATH + "/"


def _not_for_sockets(wrapped: Middleware) -> Middleware:
    """The REST middlewares stay out of the Socket.IO endpoint: a websocket lives for hours inside its handler,
    and every middleware around it would keep a frame alive for as long (a kilobyte a connection)."""

    @web.middleware
    def skip_sockets(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if request.path.startswith(SOCKETIO_PREFIX):
            return handler(request)
        return wrapped(request, handler)

    return skip_sockets


SERVER = "cartsnitch-hub"
AUTH_PREFIX = "/auth/"
"""Login, registration, refresh, password change: responses that carry credentials."""
MAX_REQUEST_TARGET = 8192
"""Bytes of a request's target (path and query) the hub parses; a longer one is a 414 (RFC 9112 §3)."""
MAX_HEADER_FIELD = 8190
"""Bytes of one header field (name and value); a longer one is a 431 (RFC 6585 §5). Unequal to the target's
limit, so that the parser's error tells which was exceeded."""
MAX_HEADERS = 128
"""Header fields in one request (aiohttp's default); more is a 431."""


def create_app(settings: Settings) -> web.Application:
    if not settings.jwt_secret_key:
        if not settings.dev_mode:
            raise ValueError("a JWT secret is required outside dev mode")
        log.warning("dev mode: no CARTSNITCH_JWT_SECRET_KEY, using a random one for this process")
        settings = settings.with_overrides(jwt_secret_key=secrets.token_urlsafe(48))
    app = web.Application(
        middlewares=[
            _not_for_sockets(m)
            for m in (
                middleware.metrics_middleware,
                problems.middleware,
                # the old gateway (FastAPI) answered a path with a trailing slash by a 307 to the path without it
                web.normalize_path_middleware(
                    append_slash=False, remove_slash=True, merge_slashes=False, redirect_class=web.HTTPTemporaryRedirect
                ),
                middleware.options_middleware,
                middleware.drain_middleware,
                middleware.rate_limit_middleware,
            )
        ],
        client_max_size=1 << 20,
        # a connection that has not sent a whole request head this long after it opened (or after its last
        # response) is closed: slow-header clients cannot hold connections open
        handler_args={
            "keepalive_timeout": settings.http_header_timeout_seconds,
            "max_line_size": MAX_REQUEST_TARGET,
            "max_field_size": MAX_HEADER_FIELD,
            "max_headers": MAX_HEADERS,
        },
    )
    app[keys.settings] = settings
    app[keys.metrics] = Metrics()
    app[keys.origins] = OriginPolicy(settings.cors_origins)
    app[keys.outages] = Outages()
    app[keys.client_address] = ClientAddress(settings.trusted_proxies)
    if not settings.better_auth_secret:
        log.warning(
            "CARTSNITCH_BETTER_AUTH_SECRET is not set: Better-Auth session cookies are accepted without checking "
            "their signature (anyone holding a raw session token can use it)"
        )
    app[keys.sio] = socket.build_server(settings)
    app[keys.sio].attach(app, socketio_path=socket.SOCKETIO_PATH)
    app.cleanup_ctx.extend(
        [
            resources.database_ctx,
            resources.redis_ctx,
            resources.http_client_ctx,
            resources.realtime_ctx,
            resources.demo_ticker_ctx,
        ]
    )
    app.on_shutdown.append(socket.close_all)
    routes.setup_routes(app)
    app.on_response_prepare.append(_common_headers)  # after aiohttp-cors's own: it adds only what that left out
    return app


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Name the service, not the Python and aiohttp versions it runs on; say that responses depend on the Origin
    (CORS headers differ by origin, so a shared cache must not hand one origin's copy to another); keep credentials
    and user data out of caches; and let a listed origin read the errors that no route's CORS handling saw."""
    response.headers["Server"] = SERVER
    response.headers.add("Vary", "Origin")
    if "Cache-Control" not in response.headers:
        op = middleware.operation_of(request)
        if op is not None and (op.auth != "none" or request.path.startswith(AUTH_PREFIX)):
            # credentials (RFC 6749 §5.1: a token response is never stored) and a user's data: no cache keeps them,
            # unless the route chose otherwise (its reads with an ETag are "private, no-cache")
            response.headers["Cache-Control"] = "no-store"
    origin = request.headers.get("Origin")
    if (
        origin is not None
        and response.status >= 300
        and "Access-Control-Allow-Origin" not in response.headers
        and request.app[keys.origins].allows(origin, None)
    ):
        # an error raised before a route's CORS handling (no route matches, a method the path does not have), or
        # the redirect of a trailing slash: a listed origin's script may read or follow it like any other answer,
        # rather than see an opaque network failure
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = ",".join(routes.EXPOSED_HEADERS)
    elif origin is not None and response.status in (307, 308) and await _redirects_to_public_read(request, response):
        # the trailing slash's redirect from a public read: any origin may follow it, as it may read the target
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = ",".join(routes.EXPOSED_HEADERS)


async def _redirects_to_public_read(request: web.Request, response: web.StreamResponse) -> bool:
    location = response.headers.get("Location")
    if "Access-Control-Allow-Origin" in response.headers or not location or not location.startswith("/"):
        return False
    match = await request.app.router.resolve(request.clone(rel_url=location))
    op = request.app[keys.operations].get(match.route.handler) if match.route.resource is not None else None
    return op is not None and routes.is_public_read(op)
