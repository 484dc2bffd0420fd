"""Liveness, readiness (database and Redis) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import text

from hub import __version__, keys
from rest import responses
from rest.openapi import RouteTable
from rest.problems import problem_response

routes = RouteTable("health")
CHECK_TIMEOUT = 2.0


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


class ReadyOut(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


@routes.get("/health", summary="Liveness: the process answers", auth="none", limit="none", response=HealthOut)
async def health(request: web.Request) -> web.Response:
    return responses.json(HealthOut(status="ok", version=__version__))


async def _check_database(request: web.Request) -> str:
    # through the sessionmaker: while its gate refuses requests (the database did not answer, and its probe has not
    # had an answer since), the process is not ready either
    async with request.app[keys.sessionmaker]() as session:
        await session.execute(text("SELECT 1"))
    return "ok"


async def _check_redis(request: web.Request) -> str:
    redis = request.app[keys.redis]
    if redis is None:
        return "not configured (in-process broker)"
    await redis.ping()
    return "ok"


@routes.get(
    "/ready",
    summary="Readiness: the database and Redis answer",
    auth="none",
    limit="none",
    response=ReadyOut,
    errors=(503,),
)
async def ready(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    healthy = True
    for name, check in (("database", _check_database), ("redis", _check_redis)):
        try:
            checks[name] = await asyncio.wait_for(check(request), CHECK_TIMEOUT)
        except Exception as exc:  # any failure of a dependency means "not ready", reported without internals
            healthy = False
            checks[name] = "unavailable" if not isinstance(exc, TimeoutError) else "timed out"
    if healthy:
        return responses.json(ReadyOut(status="ready", checks=checks))
    body = {
        "type": "https://cartsnitch.com/problems/service-unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "a dependency is down: "
        + ", ".join(k for k, v in checks.items() if v not in ("ok",) and not v.startswith("not configured")),
        "instance": request.path,
        "code": "SERVICE_UNAVAILABLE",
        "checks": checks,
    }
    return problem_response(body, {"Retry-After": "5"})


@routes.get("/metrics", summary="Prometheus metrics", auth="none", limit="none", content_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[keys.metrics]
    response = web.Response(body=registry.render())
    response.headers["Content-Type"] = registry.content_type
    return response
