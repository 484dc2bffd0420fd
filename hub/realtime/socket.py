"""The Socket.IO server: python-socketio on the lean Engine.IO server, its Redis adapter, and ending a user's
connections on every process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import socketio
from aiohttp import web
from redis.asyncio import Redis

from channels import bus, rooms
from channels.events import ControlEvent
from hub import keys
from hub.infra import jsonmod
from hub.infra.clientaddr import ClientAddress
from hub.infra.cluster import is_cluster_url, parse_cluster_url
from hub.realtime.engine import LeanEngine
from hub.realtime.fanout import RECONNECT_CAP, RECONNECT_FIRST
from hub.settings import Settings

SOCKETIO_PATH = "socket.io"
log = logging.getLogger("hub.socket")


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


SessionEnded = Callable[[str, str | None, str], None]
"""(user id, credential id or None for all of the user's, reason): ends this process's live channels."""


class HubManager(_IndexedRooms, socketio.AsyncManager):  # type: ignore[misc]
    """The single-process manager (embedded default)."""

    on_session_ended: SessionEnded | None = None


class HubRedisManager(_IndexedRooms, socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis adapter. A ``cartsnitch.session.ended`` emit to a user's namespace (its room naming
    one credential, or none for all of the user's) is carried out by every process for its own live channels of
    that user: sockets, SSE streams and long-polls each get the control event, then end.

    On a Redis Cluster the adapter keeps classic pub/sub on one node (a ``PUBLISH`` reaches every node of a
    cluster): it carries only these control messages, a few a minute, so sharding them would buy nothing, and each
    process picks its own node (a master that fails interrupts only the processes on it; they reconnect to the next
    node, and a revocation missed meanwhile reaches them at the next revalidation)."""

    on_session_ended: SessionEnded | None = None
    cluster_nodes: Callable[[], list[tuple[str, int]]] | None = None
    """The cluster's nodes as the bus knows them now (the URL's seeds until then)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._cluster = parse_cluster_url(url) if is_cluster_url(url) else None
        self._attempt = random.randrange(1 << 16)

    def _redis_connect(self) -> None:
        if self._cluster is None:
            super()._redis_connect()
            return
        nodes = (self.cluster_nodes() if self.cluster_nodes is not None else []) or list(self._cluster.nodes)
        host, port = nodes[self._attempt % len(nodes)]
        self._attempt += 1  # a node that fails is not tried again at the next attempt
        self.redis = Redis.from_url(self._cluster.node_url(host, port), **self.redis_options)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True

    async def close(self) -> None:
        """Stop listening and close the adapter's Redis connections (python-socketio leaves them to the GC)."""
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await thread
        for client in (self.pubsub, self.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        """python-socketio's listener, with the event bus's reconnect: from 50 ms, doubling, capped at a second,
        jittered, logged once per outage (its own waits 1, 2, 4 … 60 s and logs every attempt, so a revocation
        could miss the other processes for a minute after Redis came back)."""
        delay = RECONNECT_FIRST
        failing = False
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                if failing:
                    log.warning("socket adapter reconnected to Redis")
                delay = RECONNECT_FIRST
                failing = False
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:
                if not failing:
                    log.warning("socket adapter lost Redis (%s); reconnecting", type(exc).__name__)
                failing = True
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RECONNECT_CAP)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("event") == ControlEvent.SESSION_ENDED.value:
            user_id = rooms.parse_user_namespace(message.get("namespace") or "")
            data = message.get("data")
            payload = data[0] if isinstance(data, list) and data else data  # the adapter sends emit arguments as a list
            reason = payload.get("reason") if isinstance(payload, dict) else None
            if user_id is not None and self.on_session_ended is not None:
                self.on_session_ended(user_id, message.get("room"), str(reason or "revoked"))
            return
        await super()._handle_emit(message)


MAX_ATTACHMENTS = 10
"""Binary attachments one Socket.IO message may announce (the hub's own events carry none)."""
INVALID_NAMESPACE = {"message": "Invalid namespace"}
RESERVED_EVENTS = frozenset(
    ("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener")
)
"""Event names a client may not send (Socket.IO v5; the reference parser refuses them): the server's own
lifecycle."""


def _split(encoded: str) -> tuple[str | None, str]:
    """(the namespace as sent, or None; the payload's text) of an encoded Socket.IO packet:
    ``<type>[<attachments>-][<namespace>,][<ack id>][<payload>]``."""
    start = 1
    if encoded[:1] in ("5", "6"):
        dash = encoded.find("-")
        if dash < 2 or not encoded[1:dash].isdigit():
            raise ValueError("a binary packet announces its attachment count")
        start = dash + 1
    namespace = None
    if encoded.startswith("/", start):
        comma = encoded.find(",", start)
        end = len(encoded) if comma == -1 else comma
        namespace, start = encoded[start:end], min(end + 1, len(encoded))
    while start < len(encoded) and encoded[start].isdigit():
        start += 1
    return namespace, encoded[start:]


class ProtocolPacket(socketio.packet.Packet):  # type: ignore[misc]
    """python-socketio's packet, held to the Socket.IO v5 rules its parser leaves out (the reference parser's
    ``isPayloadValid``): a CONNECT carries an object or nothing, a DISCONNECT nothing, an event a non-empty array
    named by a string that is not reserved (or a number), an ack an array; and a binary packet announces at most
    MAX_ATTACHMENTS. A packet that breaks them is malformed, and the connection ends. A namespace keeps its query
    string (python-socketio drops it, as v4 allowed): in v5 a namespace has none, so ``/public?x=1`` is a namespace
    nobody serves."""

    def decode(self, encoded_packet: str | bytes) -> int:
        count: int = super().decode(encoded_packet)
        if count > MAX_ATTACHMENTS:
            raise ValueError("too many binary attachments")
        if not isinstance(encoded_packet, str):
            return count
        namespace, payload = _split(encoded_packet)
        if namespace is not None and "?" in namespace:
            self.namespace = namespace
        kind, data = self.packet_type, self.data
        if kind == socketio.packet.CONNECT:
            valid = not payload or isinstance(data, dict)
        elif kind == socketio.packet.DISCONNECT:
            valid = not payload
        elif kind in (socketio.packet.EVENT, socketio.packet.BINARY_EVENT):
            name = data[0] if isinstance(data, list) and data else None
            valid = (isinstance(name, str) and name not in RESERVED_EVENTS) or (
                isinstance(name, int | float) and not isinstance(name, bool)
            )
        elif kind in (socketio.packet.ACK, socketio.packet.BINARY_ACK):
            valid = isinstance(data, list)
        else:
            valid = True  # a CONNECT_ERROR from a client is refused by the server
        if not valid:
            raise ValueError(f"a malformed {socketio.packet.packet_names[kind]} packet")
        return count


def is_hub_namespace(namespace: str) -> bool:
    return namespace == rooms.PUBLIC_NAMESPACE or rooms.parse_user_namespace(namespace) is not None


class HubServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, max_payload_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_payload_bytes = max_payload_bytes
        self._attachment_bytes: dict[str, int] = {}

    def _engineio_server_class(self) -> type[LeanEngine]:
        return LeanEngine

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or "/"
        if not is_hub_namespace(namespace):
            # as the reference server answers a namespace it does not serve
            await self._send_packet(
                eio_sid, self.packet_class(socketio.packet.CONNECT_ERROR, data=INVALID_NAMESPACE, namespace=namespace)
            )
            return
        self._joined(eio_sid, namespace, False)
        await super()._handle_connect(eio_sid, namespace, data)
        engine_socket = self.eio.socket(eio_sid)
        if engine_socket is not None and self.manager.namespaces_of(eio_sid):
            engine_socket.joined = True

    def _joined(self, eio_sid: str, namespace: str | None, expected: bool) -> None:
        """The reference server ends a connection whose packet does not fit its state: a CONNECT to a namespace it
        has joined, an event, ack or DISCONNECT for one it has not."""
        if (self.manager.sid_from_eio_sid(eio_sid, namespace or "/") is not None) != expected:
            raise ValueError("a packet for a namespace " + ("not joined" if expected else "already joined"))

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        self._joined(eio_sid, namespace, True)
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_ack(self, eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        self._joined(eio_sid, namespace, True)
        await super()._handle_ack(eio_sid, namespace, id, data)

    async def _handle_disconnect(self, eio_sid: str, namespace: str | None, reason: Any = None) -> None:
        if reason == self.reason.CLIENT_DISCONNECT:
            self._joined(eio_sid, namespace, True)
        await super()._handle_disconnect(eio_sid, namespace, reason)

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        """Bound what a message may make the server hold: the attachments that follow a binary packet's header (its
        count is bounded by ``ProtocolPacket``) past the payload limit together (the connection ends). A text message
        while attachments are awaited is malformed (python-socketio would take it for one)."""
        if eio_sid in self._binary_packet:
            if isinstance(data, str):
                raise ValueError("a text message where a binary attachment was due")
            size = self._attachment_bytes.get(eio_sid, 0) + len(data)
            if size > self.max_payload_bytes:
                self._binary_packet.pop(eio_sid, None)
                self._attachment_bytes.pop(eio_sid, None)
                raise ValueError("binary attachments over the payload limit")
            self._attachment_bytes[eio_sid] = size
        try:
            await super()._handle_eio_message(eio_sid, data)
            pending = self._binary_packet.get(eio_sid)
            if pending is not None and pending.attachment_count == 0:
                # a binary packet announcing no attachment is complete as it is (python-socketio would wait)
                del self._binary_packet[eio_sid]
                handle = self._handle_event if pending.packet_type == socketio.packet.BINARY_EVENT else self._handle_ack
                await handle(eio_sid, pending.namespace, pending.id, pending.data)
        finally:
            if eio_sid not in self._binary_packet:
                self._attachment_bytes.pop(eio_sid, None)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        for namespace in self.manager.namespaces_of(eio_sid):
            await self._handle_disconnect(eio_sid, namespace, reason)
        self.environ.pop(eio_sid, None)
        self._binary_packet.pop(eio_sid, None)
        self._attachment_bytes.pop(eio_sid, None)


def build_server(settings: Settings) -> HubServer:
    manager: Any = (
        HubRedisManager(settings.redis_url, channel=bus.SOCKETIO_CHANNEL) if settings.redis_url else HubManager()
    )
    return HubServer(
        client_manager=manager,
        namespaces="*",
        serializer=ProtocolPacket,
        json=jsonmod,
        cors_allowed_origins=list(settings.cors_origins),
        ping_interval=settings.socket_ping_interval_seconds,
        ping_timeout=settings.socket_ping_timeout_seconds,
        connect_timeout=settings.socket_connect_timeout_seconds,
        max_http_buffer_size=settings.socket_max_payload_bytes,
        max_payload_bytes=settings.socket_max_payload_bytes,
        client_address=ClientAddress(settings.trusted_proxies),
        max_sessions_per_address=settings.socket_max_connections_per_address,
        websocket_compression=settings.socket_compression,
        send_queue_bytes=settings.socket_send_queue_bytes,
        logger=False,
        engineio_logger=False,
    )


async def end_user_connections(
    app: web.Application, user_id: str, *, reason: str, credential_id: str | None = None
) -> None:
    """End the live channels of ``user_id`` (those of one credential, or all) on every hub process: each gets
    ``cartsnitch.session.ended {reason}``, then closes. This process acts at once; the others within the Redis
    round trip. When Redis does not answer, the others learn it at their next revalidation."""
    server = app[keys.sio]
    if not isinstance(server.manager, HubRedisManager):
        app[keys.hub].end_local(user_id, credential_id, reason)
        return
    try:
        await asyncio.wait_for(
            server.emit(
                ControlEvent.SESSION_ENDED.value,
                {"reason": reason},
                namespace=rooms.user_namespace(user_id),
                room=credential_id,
            ),
            app[keys.settings].redis_timeout_seconds,
        )
    except Exception as exc:  # the local part ran before the publish; the rest is revalidation's
        log.warning("could not publish the end of a session (%s)", type(exc).__name__)
        app[keys.hub].end_local(user_id, credential_id, reason)


async def close_all(app: web.Application) -> None:
    """Streams and sockets close first, before the database and Redis they depend on (on_shutdown runs before
    cleanup): every stream is told to reconnect elsewhere (one left open would hold the shutdown for its whole
    timeout), then every socket gets an Engine.IO close."""
    hub = app.get(keys.hub)
    if hub is not None and not hub.draining:
        hub.drain()
    server = app[keys.sio]
    await server.shutdown()
    if isinstance(server.manager, HubRedisManager):
        await server.manager.close()
