"""The Socket.IO server: python-socketio on the lean Engine.IO server, its Redis adapter, and ending a user's
connections on every process."""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from channels import bus, rooms
from channels.events import ControlEvent
from hub import keys
from hub.infra import jsonmod
from hub.realtime.control import control_envelope
from hub.realtime.engine import LeanEngine
from hub.settings import Settings

SOCKETIO_PATH = "socket.io"


class _IndexedRooms:
    """python-socketio's managers find a client's rooms by scanning every room of the namespace, and its server
    disconnects a client by scanning every namespace: with a namespace per user and thousands of clients in
    ``/public`` both are O(clients) per disconnect. This keeps an index per client instead."""

    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def _index(self) -> dict[tuple[str, str], set[Any]]:
        """(namespace, sid) -> the rooms joined besides the two every client is in (None and its own sid)."""
        index: dict[tuple[str, str], set[Any]] | None = self.__dict__.get("_room_index")
        if index is None:
            index = self.__dict__["_room_index"] = {}
        return index

    def _namespaces(self) -> dict[str, tuple[str, ...]]:
        namespaces: dict[str, tuple[str, ...]] | None = self.__dict__.get("_eio_namespaces")
        if namespaces is None:
            namespaces = self.__dict__["_eio_namespaces"] = {}
        return namespaces

    def namespaces_of(self, eio_sid: str) -> tuple[str, ...]:
        return self._namespaces().get(eio_sid, ())

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        if room is None:
            owner = self.rooms[namespace][None][sid]
            joined = self._namespaces().get(owner, ())
            if namespace not in joined:
                self._namespaces()[owner] = (*joined, namespace)
        elif room != sid:
            self._index().setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        entry = self._index().get((namespace, sid))
        if entry is not None:
            entry.discard(room)

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        if sid not in self.rooms.get(namespace, {}).get(None, {}):
            return []
        return [sid, *self._index().get((namespace, sid), ())]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        eio_sid = self.rooms[namespace].get(None, {}).get(sid)
        for room in (*self._index().pop((namespace, sid), ()), sid, None):
            super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        if eio_sid is not None:
            remaining = tuple(n for n in self._namespaces().get(eio_sid, ()) if n != namespace)
            if remaining:
                self._namespaces()[eio_sid] = remaining
            else:
                self._namespaces().pop(eio_sid, None)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]


class HubManager(_IndexedRooms, socketio.AsyncManager):  # type: ignore[misc]
    """The single-process manager (embedded default)."""


class HubRedisManager(_IndexedRooms, socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis adapter; a ``cartsnitch.session.ended`` emit is carried out as "tell, then
    disconnect" by every process that holds a connection of that namespace."""

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("event") == ControlEvent.SESSION_ENDED.value:
            # the publishing side wrapped the one argument in a list, as python-socketio's emit does
            data = message.get("data")
            envelope = data[0] if isinstance(data, list) and len(data) == 1 else data
            await _end_local(
                self.server, message.get("namespace") or "/", envelope if isinstance(envelope, dict) else {}
            )
            return
        await super()._handle_emit(message)


class HubServer(socketio.AsyncServer):  # type: ignore[misc]
    def _engineio_server_class(self) -> type[LeanEngine]:
        return LeanEngine

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        for namespace in self.manager.namespaces_of(eio_sid):
            await self._handle_disconnect(eio_sid, namespace, reason)
        self.environ.pop(eio_sid, None)


async def _end_local(server: socketio.AsyncServer, namespace: str, envelope: dict[str, Any]) -> None:
    participants = list(server.manager.get_participants(namespace, None)) if namespace in server.manager.rooms else []
    for sid, _eio_sid in participants:
        await server.emit(ControlEvent.SESSION_ENDED.value, envelope, to=sid, namespace=namespace, ignore_queue=True)
        await server.disconnect(sid, namespace=namespace, ignore_queue=True)


def build_server(settings: Settings) -> HubServer:
    manager: Any = (
        HubRedisManager(settings.redis_url, channel=bus.SOCKETIO_CHANNEL) if settings.redis_url else HubManager()
    )
    return HubServer(
        client_manager=manager,
        namespaces="*",
        json=jsonmod,
        cors_allowed_origins=list(settings.cors_origins),
        cors_credentials=True,
        ping_interval=settings.socket_ping_interval_seconds,
        ping_timeout=settings.socket_ping_timeout_seconds,
        max_http_buffer_size=settings.socket_max_payload_bytes,
        websocket_compression=settings.socket_compression,
        send_queue_bytes=settings.socket_send_queue_bytes,
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
