"""The Socket.IO server: construction, the Redis adapter, and ending a user's connections on every process."""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from channels import bus, rooms
from channels.events import ControlEvent
from channels.payloads import utc_timestamp
from hub import jsonmod, keys
from hub.settings import Settings

SOCKETIO_PATH = "socket.io"


def control_envelope(event: ControlEvent, payload: dict[str, Any]) -> dict[str, Any]:
    """The envelope of a hub-to-connection control event (not part of any history, so it has no ``id``)."""
    return {"event_type": event.value, "timestamp": utc_timestamp(), "service": "hub", "payload": payload}


async def _end_local(server: socketio.AsyncServer, namespace: str, envelope: dict[str, Any]) -> None:
    participants = list(server.manager.get_participants(namespace, None)) if namespace in server.manager.rooms else []
    for sid, _eio_sid in participants:
        await server.emit(ControlEvent.SESSION_ENDED.value, envelope, to=sid, namespace=namespace, ignore_queue=True)
        await server.disconnect(sid, namespace=namespace, ignore_queue=True)


class HubRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis adapter; a ``cartsnitch.session.ended`` emit is carried out as "tell, then
    disconnect" by every process that holds a connection of that namespace."""

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("event") == ControlEvent.SESSION_ENDED.value:
            await _end_local(self.server, message.get("namespace") or "/", message.get("data") or {})
            return
        await super()._handle_emit(message)


def build_server(settings: Settings) -> socketio.AsyncServer:
    manager: Any
    if settings.redis_url:
        manager = HubRedisManager(settings.redis_url, channel=bus.SOCKETIO_CHANNEL)
    else:
        manager = socketio.AsyncManager()
    return socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        namespaces="*",
        json=jsonmod,
        cors_allowed_origins=list(settings.cors_origins),
        cors_credentials=True,
        ping_interval=settings.socket_ping_interval_seconds,
        ping_timeout=settings.socket_ping_timeout_seconds,
        max_http_buffer_size=settings.socket_max_payload_bytes,
        http_compression=False,
        logger=False,
        engineio_logger=False,
    )


async def end_user_connections(app: web.Application, user_id: str, *, reason: str) -> None:
    """Tell every live connection of ``user_id``, on every hub process, that its session ended; then drop it."""
    server = app[keys.sio]
    namespace = rooms.user_namespace(user_id)
    envelope = control_envelope(ControlEvent.SESSION_ENDED, {"reason": reason})
    if isinstance(server.manager, HubRedisManager):
        await server.emit(ControlEvent.SESSION_ENDED.value, envelope, namespace=namespace)
    else:
        await _end_local(server, namespace, envelope)


async def close_all(app: web.Application) -> None:
    """Sockets close first, before the database and Redis they depend on (on_shutdown runs before cleanup)."""
    await app[keys.sio].shutdown()
