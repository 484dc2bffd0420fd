"""Request metrics and rate limits, driven by each route's declaration."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError
from hub.realtime.identity import Principal
from rest.auth import current_principal
from rest.openapi import Operation


def client_ip(request: web.Request) -> str:
    """The TCP peer, or, behind a trusted proxy (CARTSNITCH_TRUSTED_PROXIES), the rightmost untrusted
    ``X-Forwarded-For`` hop."""
    return request.app[keys.client_address].of_request(request.remote, request.headers)


def operation_of(request: web.Request) -> Operation | None:
    route = request.match_info.route
    return request.app[keys.operations].get(route.handler) if route.resource is not None else None


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        registry = request.app[keys.metrics]
        registry.http_requests.labels(request.method, route, str(status)).inc()
        registry.http_latency.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def options_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An ``OPTIONS`` request that is not a CORS preflight (no ``Origin`` or no ``Access-Control-Request-Method``)
    asks what the resource supports (RFC 9110 §9.3.7): 204 with ``Allow``. Preflights go to the CORS handler."""
    if request.method == "OPTIONS" and not (
        "Origin" in request.headers and "Access-Control-Request-Method" in request.headers
    ):
        resource = request.match_info.route.resource
        if resource is not None:
            methods = sorted({route.method for route in resource} | {"OPTIONS"})
            return web.Response(status=204, headers={"Allow": ",".join(methods)})
    return await handler(request)


@web.middleware
async def drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While the process drains, only liveness answers: everything else is sent elsewhere with a 503."""
    hub = request.app.get(keys.hub)
    if hub is not None and hub.draining and request.path != "/health":
        raise AppError(ProblemType.SERVICE_UNAVAILABLE, "this process is shutting down", headers={"Retry-After": "1"})
    return await handler(request)


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    op = operation_of(request)
    settings = request.app[keys.settings]
    if op is None or op.limit == "none" or not settings.rate_limit_enabled:
        return await handler(request)
    if op.limit == "auth":
        bucket, limit, window = "auth", settings.rate_limit_auth_requests, settings.rate_limit_auth_window_seconds
        identity = client_ip(request)
    else:
        bucket, limit, window = op.limit, settings.rate_limit_requests, settings.rate_limit_window_seconds
        identity = "ip:" + client_ip(request)
        if op.limit == "user":
            try:
                principal: Principal | None = await current_principal(request)
            except AppError:
                principal = None
            if principal is not None:
                identity = "user:" + principal.user_id
    verdict = await request.app[keys.limiter].hit(bucket, identity, limit=limit, window_seconds=window)
    headers = verdict.headers(bucket)
    if not verdict.allowed:
        raise AppError(
            ProblemType.RATE_LIMITED,
            f"at most {limit} requests per {window} s; retry in {verdict.reset_seconds} s",
            headers=headers,
        )
    response = await handler(request)
    if not response.prepared:
        response.headers.update(headers)
    return response
