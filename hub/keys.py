"""Every AppKey and RequestKey, one line each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp import ClientSession
    from socketio import AsyncServer
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from hub.cache import Cache
    from hub.identity import Authenticator, Principal
    from hub.metrics import Metrics
    from hub.ratelimit import RateLimiter
    from hub.settings import Settings
    from hub.store.engine import Sessionmaker

settings = web.AppKey["Settings"]("hub.settings")
engine = web.AppKey["AsyncEngine"]("hub.engine")
sessionmaker = web.AppKey["Sessionmaker"]("hub.sessionmaker")
redis = web.AppKey["Redis | None"]("hub.redis")
authenticator = web.AppKey["Authenticator"]("hub.authenticator")
metrics = web.AppKey["Metrics"]("hub.metrics")
limiter = web.AppKey["RateLimiter"]("hub.limiter")
http_client = web.AppKey["ClientSession"]("hub.http_client")
operations = web.AppKey["dict[Any, Any]"]("hub.operations")
openapi = web.AppKey["dict[str, Any]"]("hub.openapi")

principal = web.RequestKey["Principal | None"]("hub.principal")
sio = web.AppKey["AsyncServer"]("hub.sio")
cache = web.AppKey["Cache"]("hub.cache")
