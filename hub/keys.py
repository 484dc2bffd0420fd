"""Every AppKey and RequestKey, one line each."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientSession, web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from socketio import AsyncServer
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.infra.cache import Cache
from hub.infra.clientaddr import ClientAddress
from hub.infra.metrics import Metrics
from hub.infra.origins import OriginPolicy
from hub.infra.outages import Outages
from hub.infra.ratelimit import RateLimiter
from hub.realtime.fanout import EventBus
from hub.realtime.hub import Hub
from hub.realtime.identity import Authenticator, Principal
from hub.realtime.ingest import Ingest
from hub.realtime.tickets import StreamTickets
from hub.settings import Settings
from hub.store.engine import Sessionmaker

settings = web.AppKey("hub.settings", Settings)
engine = web.AppKey("hub.engine", AsyncEngine)
sessionmaker = web.AppKey("hub.sessionmaker", Sessionmaker)
redis = web.AppKey[Redis | RedisCluster | None]("hub.redis")
authenticator = web.AppKey("hub.authenticator", Authenticator)
metrics = web.AppKey("hub.metrics", Metrics)
limiter = web.AppKey("hub.limiter", RateLimiter)
cache = web.AppKey("hub.cache", Cache)
http_client = web.AppKey("hub.http_client", ClientSession)
sio = web.AppKey("hub.sio", AsyncServer)
origins = web.AppKey("hub.origins", OriginPolicy)
outages = web.AppKey("hub.outages", Outages)
client_address = web.AppKey("hub.client_address", ClientAddress)
tickets = web.AppKey("hub.tickets", StreamTickets)
operations = web.AppKey("hub.operations", dict[Any, Any])
openapi = web.AppKey("hub.openapi", dict[str, Any])

principal = web.RequestKey[Principal | None]("hub.principal")
bus = web.AppKey[EventBus]("hub.bus")
hub = web.AppKey("hub.hub", Hub)
ingest = web.AppKey("hub.ingest", Ingest)
