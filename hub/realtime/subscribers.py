"""Subscribers: what receives an audience's events on this process (a socket's namespace or room membership, an
SSE stream, a long-poll), and the socket connection that owns socket subscribers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels.bus import EventId
from channels.events import ControlEvent
from hub.infra.jsonmod import dumps
from hub.realtime.control import control_envelope
from hub.realtime.engine import EngineSocket, Outbound
from hub.realtime.identity import Principal


def event_type_of(envelope_json: str) -> str:
    start = envelope_json.find('"event_type":"')
    if start < 0:
        return "unknown"
    start += 14
    return envelope_json[start : envelope_json.find('"', start)]


def after(event_id: EventId, last: EventId | None) -> bool:
    return last is None or (event_id.ms, event_id.seq) > (last.ms, last.seq)


SHUTDOWN = "shutdown"
"""The reason a stream ends when its process drains: reconnect (to another process), nothing was revoked."""


SINCE_SLACK_MS = 1000
"""History ids carry Redis's clock: a subscriber that received nothing is caught up from a second before it
subscribed, so that a Redis clock behind the hub's loses it nothing."""


class Subscriber:
    """Receives one audience's events in id order, exactly once; while ``replaying``, live events wait in
    ``pending`` so that the history replay and the live stream meet without a gap or a duplicate."""

    __slots__ = ("audience", "last_id", "pending", "replaying", "since_ms")

    def __init__(self, audience: str, last_id: EventId | None) -> None:
        self.audience = audience
        self.last_id = last_id
        self.since_ms = int(time.time() * 1000) - SINCE_SLACK_MS
        """When it subscribed, as a history id's time (what it may have missed when the bus reconnects before it
        received anything)."""
        self.replaying = True
        self.pending: list[tuple[EventId, str]] = []

    def send(self, event_id: EventId, envelope_json: str, cache: dict[str, Any]) -> bool:
        raise NotImplementedError

    def send_control(self, event: ControlEvent, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def closed(self) -> bool:
        raise NotImplementedError


class SocketSubscriber(Subscriber):
    """A socket's interest in one audience: its user namespace, or one public room."""

    __slots__ = ("conn", "namespace")

    def __init__(self, conn: Connection, audience: str, last_id: EventId | None) -> None:
        super().__init__(audience, last_id)
        self.conn = conn
        self.namespace = conn.namespace

    def send(self, event_id: EventId, envelope_json: str, cache: dict[str, Any]) -> bool:
        out = cache.get(self.namespace)
        if out is None:
            # an Engine.IO message (4) carrying a Socket.IO event (2): 42<namespace>,["<type>",<envelope>]
            out = cache[self.namespace] = Outbound(
                f'42{self.namespace},["{event_type_of(envelope_json)}",{envelope_json}]'
            )
        return self.conn.engine_socket.write(out)

    def send_control(self, event: ControlEvent, payload: dict[str, Any]) -> None:
        envelope = dumps(control_envelope(event, payload))
        self.conn.engine_socket.write(Outbound(f'42{self.namespace},["{event.value}",{envelope}]'))

    def closed(self) -> bool:
        return self.conn.engine_socket.closed


class StreamSubscriber(Subscriber):
    """An SSE stream or a long-poll: events go to a bounded queue that the HTTP handler drains. One opened with
    credentials (``principal``) is a live channel of its user: it ends when they are revoked or expire."""

    __slots__ = ("address", "ended", "limit", "overflowed", "principal", "queue", "queued", "wake")

    def __init__(
        self,
        audience: str,
        last_id: EventId | None,
        limit_bytes: int,
        *,
        principal: Principal | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(audience, last_id)
        self.queue: list[tuple[str, str, str | None]] = []
        self.queued = 0
        self.limit = limit_bytes
        self.overflowed = False
        self.principal = principal
        self.address = address
        self.ended: str | None = None
        """Why the stream must end (its credentials ended, or the process is draining); None while it lives."""
        self.wake = asyncio.Event()

    @property
    def expires_at(self) -> float:
        return self.principal.expires_at if self.principal is not None else float("inf")

    def end(self, reason: str, event: ControlEvent = ControlEvent.SESSION_ENDED) -> None:
        """Queue a last control event and wake the handler, which sends it and closes the stream."""
        if self.ended is None:
            self.ended = reason
            self.send_control(event, {"reason": reason})

    def send(self, event_id: EventId, envelope_json: str, cache: dict[str, Any]) -> bool:
        if self.overflowed:
            return False
        self.queued += len(envelope_json)
        if self.queued > self.limit:
            self.overflowed = True
            self.wake.set()
            return False
        self.queue.append((event_type_of(envelope_json), envelope_json, str(event_id)))
        self.wake.set()
        return True

    def send_control(self, event: ControlEvent, payload: dict[str, Any]) -> None:
        # a resync's ``next`` is the stream's position from then on (the SSE frame's id: a reconnecting EventSource
        # sends it back rather than the id that needed the resync); a resync with nowhere to go on from clears the
        # id (an empty ``id:``), so that a reconnect reads the history from its start instead of resyncing again.
        # Only a history that could not be read leaves the position as it was
        position = payload.get("next")
        if position is None and event is ControlEvent.RESYNC and payload.get("reason") != "history_unavailable":
            position = ""
        self.queue.append((event.value, dumps(control_envelope(event, payload)), position))
        self.wake.set()

    def take(self) -> list[tuple[str, str, str | None]]:
        items, self.queue = self.queue, []
        self.queued = 0
        self.wake.clear()
        return items

    def closed(self) -> bool:
        return self.overflowed or self.ended is not None


class Connection:
    """One Socket.IO namespace connection of this process."""

    __slots__ = (
        "address",
        "commands",
        "engine_socket",
        "expires_at",
        "namespace",
        "principal",
        "sid",
        "strikes",
        "subscribers",
        "user_id",
        "warned",
    )

    def __init__(
        self, sid: str, namespace: str, engine_socket: EngineSocket, principal: Principal | None, address: str
    ) -> None:
        self.sid = sid
        self.namespace = namespace
        self.engine_socket = engine_socket
        self.principal = principal
        self.address = address
        self.user_id = principal.user_id if principal else None
        self.expires_at = principal.expires_at if principal else 0.0
        self.warned = False
        self.subscribers: dict[str, SocketSubscriber] = {}
        self.strikes = 0
        self.commands: asyncio.Lock | None = None

    def command_lock(self) -> asyncio.Lock:
        """Serialises the connection's room commands: each event runs in its own task, and a subscribe waits for
        its snapshot, so an unsubscribe sent after it would otherwise take effect first (made on first use: most
        connections never send one)."""
        if self.commands is None:
            self.commands = asyncio.Lock()
        return self.commands
