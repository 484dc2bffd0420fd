"""The real-time hub: who is subscribed to what on this process, delivery, resume, live auth.

A subscriber is anything that receives an audience's events: a socket connected to ``/users/{id}``, a socket's
membership of a ``/public`` room, an SSE stream or a long-poll. The first subscriber of an audience makes the
process subscribe to that audience's live channel; the last one leaving unsubscribes it. Every event is encoded
once per delivery, whatever the number of subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any

import socketio

from channels import bus, rooms
from channels.bus import EventId, parse_event_id
from channels.errors import Problem, ProblemType
from channels.events import ClientCommand, ControlEvent
from hub.errors import AppError
from hub.infra.jsonmod import dumps
from hub.infra.metrics import Metrics
from hub.realtime.control import control_envelope
from hub.realtime.engine import EngineSocket, LeanEngine, Outbound
from hub.realtime.fanout import EventBus, id_of
from hub.realtime.identity import Authenticator, Principal
from hub.settings import Settings

log = logging.getLogger("hub.realtime")

REPLAY_BATCH = 500
LATENCY_SAMPLE = 4
"""The publish-to-send histogram observes one delivered event in this many (parsing a timestamp per event would
cost more than the rest of the delivery)."""
SNAPSHOT_TIMEOUT = 5.0
Snapshotter = Callable[[str], Awaitable[dict[str, Any] | None]]


def event_type_of(envelope_json: str) -> str:
    start = envelope_json.find('"event_type":"')
    if start < 0:
        return "unknown"
    start += 14
    return envelope_json[start : envelope_json.find('"', start)]


def _after(event_id: EventId, last: EventId | None) -> bool:
    return last is None or (event_id.ms, event_id.seq) > (last.ms, last.seq)


class Subscriber:
    """Receives one audience's events in id order, exactly once; while ``replaying``, live events wait in
    ``pending`` so that the history replay and the live stream meet without a gap or a duplicate."""

    __slots__ = ("audience", "last_id", "pending", "replaying")

    def __init__(self, audience: str, last_id: EventId | None) -> None:
        self.audience = audience
        self.last_id = last_id
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
            text = "2" + self.namespace + ',["' + event_type_of(envelope_json) + '",' + envelope_json + "]"
            out = cache[self.namespace] = Outbound(text)
        return self.conn.engine_socket.write(out)

    def send_control(self, event: ControlEvent, payload: dict[str, Any]) -> None:
        envelope = dumps(control_envelope(event, payload))
        self.conn.engine_socket.write(Outbound("2" + self.namespace + ',["' + event.value + '",' + envelope + "]"))

    def closed(self) -> bool:
        return self.conn.engine_socket.closed


class StreamSubscriber(Subscriber):
    """An SSE stream or a long-poll: events go to a bounded queue that the HTTP handler drains."""

    __slots__ = ("ending", "limit", "overflowed", "queue", "queued", "wake")

    def __init__(self, audience: str, last_id: EventId | None, limit_bytes: int) -> None:
        super().__init__(audience, last_id)
        self.queue: list[tuple[str, str, str | None]] = []
        self.queued = 0
        self.limit = limit_bytes
        self.overflowed = False
        self.ending = False
        self.wake = asyncio.Event()

    def end(self) -> None:
        """Ask the HTTP handler to finish (the process is shutting down; the client resumes elsewhere)."""
        self.ending = True
        self.wake.set()

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
        self.queue.append((event.value, dumps(control_envelope(event, payload)), None))
        self.wake.set()

    def take(self) -> list[tuple[str, str, str | None]]:
        items, self.queue = self.queue, []
        self.queued = 0
        self.wake.clear()
        return items

    def closed(self) -> bool:
        return self.overflowed


class Connection:
    """One Socket.IO namespace connection of this process."""

    __slots__ = (
        "engine_socket",
        "expires_at",
        "namespace",
        "principal",
        "sid",
        "strikes",
        "subscribers",
        "tokens",
        "tokens_at",
        "user_id",
        "warned",
    )

    def __init__(
        self, sid: str, namespace: str, engine_socket: EngineSocket, principal: Principal | None, burst: int
    ) -> None:
        self.sid = sid
        self.namespace = namespace
        self.engine_socket = engine_socket
        self.principal = principal
        self.user_id = principal.user_id if principal else None
        self.expires_at = principal.expires_at if principal else 0.0
        self.warned = False
        self.subscribers: dict[str, SocketSubscriber] = {}
        self.tokens = float(burst)
        self.tokens_at = time.monotonic()
        self.strikes = 0


def _problem(kind: ProblemType, detail: str) -> dict[str, Any]:
    return Problem(kind, detail).to_dict()


def _refusal(kind: ProblemType, detail: str) -> Exception:
    # the client's connect_error carries {message, data}: the problem object is the data
    refusal: Exception = socketio.exceptions.ConnectionRefusedError(kind.title, _problem(kind, detail))
    return refusal


class Hub:
    def __init__(
        self,
        settings: Settings,
        bus_: EventBus,
        engine: LeanEngine,
        authenticator: Authenticator,
        metrics: Metrics,
        server: Any,
    ) -> None:
        self.settings = settings
        self.bus = bus_
        self.engine = engine
        self.authenticator = authenticator
        self.metrics = metrics
        self.server = server
        self.snapshot: Snapshotter | None = None
        self.connections: dict[str, Connection] = {}
        self._audiences: dict[str, dict[int, Subscriber]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._live_counts = [0, 0]
        self._subscriptions_dirty = True
        self._delivered_counts: dict[str, int] = {}
        self._sampled = 0
        metrics.before_render.append(self.flush_metrics)
        bus_.on_live = self.on_live
        bus_.on_reconnect = self.on_bus_reconnect
        engine.on_slow_consumer = self._slow_consumer

    # --- lifecycle ----------------------------------------------------------------------------------------

    def register_handlers(self) -> None:
        self.server.on("connect", self.on_connect, namespace="*")
        self.server.on("disconnect", self.on_disconnect, namespace="*")
        self.server.on("*", self.on_event, namespace="*")

    async def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._auth_sweep())

    async def close(self) -> None:
        self.flush_metrics()
        if self.flush_metrics in self.metrics.before_render:
            self.metrics.before_render.remove(self.flush_metrics)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._tasks):
            task.cancel()

    def end_streams(self) -> None:
        """End every SSE stream and long-poll of this process, so shutdown does not wait for them."""
        for members in self._audiences.values():
            for subscriber in members.values():
                if isinstance(subscriber, StreamSubscriber):
                    subscriber.end()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hub task failed", exc_info=task.exception())

    # --- interest ------------------------------------------------------------------------------------------

    async def add(self, subscriber: Subscriber) -> None:
        """Register a subscriber (replaying) and make sure this process receives its audience's live events."""
        audience = subscriber.audience
        members = self._audiences.get(audience)
        if members is None:
            members = self._audiences[audience] = {}
            ready = self._ready[audience] = asyncio.get_running_loop().create_future()
            members[id(subscriber)] = subscriber
            self._gauge()
            try:
                await self.bus.subscribe(audience)
            except Exception as exc:
                ready.set_exception(exc)
                ready.exception()
                self.remove(subscriber)
                raise
            ready.set_result(None)
            return
        members[id(subscriber)] = subscriber
        pending = self._ready.get(audience)
        if pending is not None and not pending.done():
            await asyncio.shield(pending)

    def remove(self, subscriber: Subscriber) -> None:
        members = self._audiences.get(subscriber.audience)
        if members is None or members.pop(id(subscriber), None) is None:
            return
        if not members:
            del self._audiences[subscriber.audience]
            self._ready.pop(subscriber.audience, None)
            self.spawn(self.bus.unsubscribe(subscriber.audience))
            self._gauge()

    def _gauge(self) -> None:
        self._subscriptions_dirty = True

    def audiences(self) -> set[str]:
        return set(self._audiences)

    # --- delivery ------------------------------------------------------------------------------------------

    def on_live(self, audience: str, envelope_json: str) -> None:
        """A live event from the bus: written to every subscriber of the audience on this process."""
        self._live_counts[0 if audience.startswith("user:") else 1] += 1
        members = self._audiences.get(audience)
        if not members:
            return
        event_id = id_of(envelope_json)
        if event_id is None:
            return
        cache: dict[str, Any] = {}
        delivered = 0
        for subscriber in list(members.values()):
            if subscriber.replaying:
                subscriber.pending.append((event_id, envelope_json))
                continue
            if not _after(event_id, subscriber.last_id):
                continue
            if subscriber.send(event_id, envelope_json, cache):
                subscriber.last_id = event_id
                delivered += 1
        if delivered:
            event_type = event_type_of(envelope_json)
            self._delivered_counts[event_type] = self._delivered_counts.get(event_type, 0) + delivered
            self._sampled += 1
            if self._sampled % LATENCY_SAMPLE == 1:
                self._observe_latency(envelope_json)

    def flush_metrics(self) -> None:
        if self._subscriptions_dirty:
            self._subscriptions_dirty = False
            users = sum(1 for audience in self._audiences if audience.startswith("user:"))
            self.metrics.subscriptions.labels("user").set(users)
            self.metrics.subscriptions.labels("room").set(len(self._audiences) - users)
        """Counters of the hot path are plain integers, moved into Prometheus once a second and before a scrape
        (a Prometheus increment takes a lock and costs as much as the rest of a delivery)."""
        users, rooms_ = self._live_counts
        if users:
            self.metrics.live_received.labels("user").inc(users)
        if rooms_:
            self.metrics.live_received.labels("room").inc(rooms_)
        self._live_counts = [0, 0]
        delivered, self._delivered_counts = self._delivered_counts, {}
        for event_type, count in delivered.items():
            self.metrics.events_delivered.labels(event_type).inc(count)

    def _observe_latency(self, envelope_json: str) -> None:
        start = envelope_json.find('"timestamp":"')
        if start < 0:
            return
        start += 13
        try:
            stamp = datetime.fromisoformat(envelope_json[start : envelope_json.find('"', start)])
        except ValueError:
            return
        if stamp.tzinfo is not None:
            self.metrics.publish_to_send.observe(max(0.0, time.time() - stamp.timestamp()))

    async def catch_up(self, subscriber: Subscriber) -> None:
        """Replay the history after the subscriber's last id, then switch it to live with no gap."""
        replayed = 0
        try:
            if subscriber.last_id is not None:
                while True:
                    history = await self.bus.read(subscriber.audience, subscriber.last_id, REPLAY_BATCH)
                    if history.resync is not None:
                        subscriber.send_control(ControlEvent.RESYNC, {"reason": history.resync})
                        self.metrics.resumes.labels("resync").inc()
                        subscriber.last_id = None
                        break
                    cache: dict[str, Any] = {}
                    for event_id, envelope_json in history.events:
                        if subscriber.closed():
                            return
                        if _after(event_id, subscriber.last_id) and subscriber.send(event_id, envelope_json, cache):
                            subscriber.last_id = event_id
                            replayed += 1
                        cache.clear()
                    if len(history.events) < REPLAY_BATCH:
                        self.metrics.resumes.labels("replayed").inc()
                        break
        except Exception:
            log.exception("replay of %s failed", subscriber.audience)
            subscriber.send_control(ControlEvent.RESYNC, {"reason": "history_unavailable"})
            subscriber.last_id = None
        finally:
            # No await from here on: the pending live events are flushed and the subscriber goes live atomically.
            cache = {}
            for event_id, envelope_json in subscriber.pending:
                if _after(event_id, subscriber.last_id) and subscriber.send(event_id, envelope_json, cache):
                    subscriber.last_id = event_id
                cache.clear()
            subscriber.pending.clear()
            subscriber.replaying = False
            if replayed:
                self.metrics.replayed.inc(replayed)

    def on_bus_reconnect(self) -> None:
        """Live events may have been missed while the bus was away: everyone catches up from the history."""
        for members in self._audiences.values():
            for subscriber in members.values():
                if not subscriber.replaying:
                    subscriber.replaying = True
                    self.spawn(self.catch_up(subscriber))

    # --- sockets -------------------------------------------------------------------------------------------

    async def _authenticate(self, environ: dict[str, Any], auth: Any) -> Principal:
        token = auth.get("token") if isinstance(auth, dict) else None
        if token is not None and not isinstance(token, str):
            raise _refusal(ProblemType.UNAUTHORIZED, "auth.token must be a string")
        try:
            if token:
                return await self.authenticator.bearer(token)
            cookies = _cookies(environ.get("HTTP_COOKIE", ""))
            principal = await self.authenticator.request_credentials(environ.get("HTTP_AUTHORIZATION"), cookies)
        except AppError as exc:
            raise _refusal(ProblemType.UNAUTHORIZED, exc.detail or "invalid credentials") from None
        if principal is None:
            raise _refusal(ProblemType.UNAUTHORIZED, "send auth: {token} (an access token) or the session cookie")
        return principal

    async def on_connect(self, namespace: str, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        principal = None
        last_id: EventId | None = None
        invalid_last_id = False
        if namespace != rooms.PUBLIC_NAMESPACE:
            user_id = rooms.parse_user_namespace(namespace)
            if user_id is None:
                raise _refusal(ProblemType.NOT_FOUND, f"no namespace {namespace[:100]!r}")
            principal = await self._authenticate(environ, auth)
            if principal.user_id != user_id:
                raise _refusal(ProblemType.FORBIDDEN, "this token belongs to another user")
            raw_last = auth.get("last_event_id") if isinstance(auth, dict) else None
            if raw_last is not None:
                last_id = parse_event_id(raw_last)
                invalid_last_id = last_id is None
        eio_sid = self.server.manager.eio_sid_from_sid(sid, namespace)
        engine_socket = self.engine.socket(eio_sid) if eio_sid else None
        if engine_socket is None or engine_socket.closed:
            return False
        conn = Connection(sid, namespace, engine_socket, principal, self.settings.socket_inbound_burst)
        self.connections[sid] = conn
        self.metrics.connections.labels(_kind(namespace)).inc()
        if principal is None:
            return True
        subscriber = SocketSubscriber(conn, bus.user_audience(principal.user_id), last_id)
        conn.subscribers[subscriber.audience] = subscriber
        try:
            await self.add(subscriber)
        except Exception:
            self._forget(conn)
            raise _refusal(ProblemType.SERVICE_UNAVAILABLE, "the event bus is unavailable; retry") from None
        if engine_socket.closed:
            self._forget(conn)
            return False
        if invalid_last_id:
            self.spawn(self._resync_then_live(subscriber, "invalid_last_event_id"))
        else:
            self.spawn(self.catch_up(subscriber))
        return True

    async def _resync_then_live(self, subscriber: SocketSubscriber, reason: str) -> None:
        subscriber.send_control(ControlEvent.RESYNC, {"reason": reason})
        subscriber.last_id = None
        await self.catch_up(subscriber)

    def _forget(self, conn: Connection) -> None:
        if self.connections.pop(conn.sid, None) is None:
            return
        self.metrics.connections.labels(_kind(conn.namespace)).dec()
        for subscriber in conn.subscribers.values():
            self.remove(subscriber)
        conn.subscribers.clear()

    async def on_disconnect(self, namespace: str, sid: str, reason: Any = None) -> None:
        conn = self.connections.get(sid)
        if conn is not None:
            self._forget(conn)

    async def on_event(self, event: str, namespace: str, sid: str, *args: Any) -> Any:
        conn = self.connections.get(sid)
        if conn is None:
            return None
        if not self._take_token(conn):
            return {"ok": False, "problem": _problem(ProblemType.RATE_LIMITED, "too many events; slow down")}
        data = args[0] if args else None
        if namespace == rooms.PUBLIC_NAMESPACE:
            if event == ClientCommand.SUBSCRIBE:
                return await self._subscribe_room(conn, data)
            if event == ClientCommand.UNSUBSCRIBE:
                return self._unsubscribe_room(conn, data)
        elif event == ClientCommand.AUTH_REFRESH:
            return await self._refresh(conn, data)
        return {"ok": False, "problem": _problem(ProblemType.NOT_FOUND, f"unknown event {str(event)[:100]!r}")}

    def _take_token(self, conn: Connection) -> bool:
        now = time.monotonic()
        rate = self.settings.socket_inbound_events_per_second
        conn.tokens = min(float(self.settings.socket_inbound_burst), conn.tokens + (now - conn.tokens_at) * rate)
        conn.tokens_at = now
        if conn.tokens >= 1:
            conn.tokens -= 1
            conn.strikes = 0
            return True
        self.metrics.inbound_limited.inc()
        conn.strikes += 1
        if conn.strikes > self.settings.socket_inbound_burst:
            # a client that keeps sending after being told to slow down is cut off
            self.spawn(self.server.disconnect(conn.sid, namespace=conn.namespace))
        return False

    async def _subscribe_room(self, conn: Connection, data: Any) -> dict[str, Any]:
        room = rooms.parse_public_room(data.get("room") if isinstance(data, dict) else None)
        if room is None:
            shown = data.get("room") if isinstance(data, dict) else data
            return {"ok": False, "problem": _problem(ProblemType.NOT_FOUND, f"no public room {str(shown)[:100]!r}")}
        snapshot = None
        if self.snapshot is not None:
            try:
                snapshot = await asyncio.wait_for(self.snapshot(room), SNAPSHOT_TIMEOUT)
            except TimeoutError:
                return {"ok": False, "problem": _problem(ProblemType.SERVICE_UNAVAILABLE, "snapshot timed out")}
            if snapshot is None:
                return {"ok": False, "problem": _problem(ProblemType.NOT_FOUND, f"no data for room {room!r}")}
        audience = bus.room_audience(room)
        if audience not in conn.subscribers and sid_alive(conn):
            if len(conn.subscribers) >= 100:
                return {"ok": False, "problem": _problem(ProblemType.CONFLICT, "at most 100 rooms per connection")}
            subscriber = SocketSubscriber(conn, audience, None)
            conn.subscribers[audience] = subscriber
            await self.add(subscriber)
            self.spawn(self.catch_up(subscriber))
        return {"ok": True, "room": room, "snapshot": snapshot}

    def _unsubscribe_room(self, conn: Connection, data: Any) -> dict[str, Any]:
        room = rooms.parse_public_room(data.get("room") if isinstance(data, dict) else None)
        if room is None:
            return {"ok": False, "problem": _problem(ProblemType.NOT_FOUND, "no such public room")}
        subscriber = conn.subscribers.pop(bus.room_audience(room), None)
        if subscriber is not None:
            self.remove(subscriber)
        return {"ok": True, "room": room}

    async def _refresh(self, conn: Connection, data: Any) -> dict[str, Any]:
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return {"ok": False, "problem": _problem(ProblemType.VALIDATION, "send {token: <access token>}")}
        try:
            principal = await self.authenticator.bearer(token)
        except AppError as exc:
            return {"ok": False, "problem": _problem(ProblemType.UNAUTHORIZED, exc.detail or "invalid token")}
        if principal.user_id != conn.user_id:
            return {"ok": False, "problem": _problem(ProblemType.FORBIDDEN, "this token belongs to another user")}
        conn.principal = principal
        conn.expires_at = principal.expires_at
        conn.warned = False
        return {"ok": True, "expires_at": int(principal.expires_at)}

    async def _auth_sweep(self) -> None:
        """Warn connections whose credentials are about to expire, and end those whose credentials expired."""
        notice = self.settings.auth_expiring_notice_seconds
        while True:
            await asyncio.sleep(1.0)
            self.flush_metrics()
            now = time.time()
            for conn in list(self.connections.values()):
                if conn.principal is None:
                    continue
                if now >= conn.expires_at:
                    self.spawn(self._expire(conn))
                elif not conn.warned and now >= conn.expires_at - notice:
                    conn.warned = True
                    for subscriber in conn.subscribers.values():
                        subscriber.send_control(
                            ControlEvent.AUTH_EXPIRING,
                            {
                                "expires_at": datetime.fromtimestamp(conn.expires_at, UTC).isoformat(),
                                "seconds_left": max(0, int(conn.expires_at - now)),
                            },
                        )

    async def _expire(self, conn: Connection) -> None:
        if self.connections.get(conn.sid) is not conn:
            return
        for subscriber in list(conn.subscribers.values()):
            subscriber.send_control(ControlEvent.SESSION_ENDED, {"reason": "token_expired"})
        self._forget(conn)
        await self.server.disconnect(conn.sid, namespace=conn.namespace)

    def _slow_consumer(self, eio_sid: str) -> None:
        self.metrics.slow_consumers.inc()
        log.info("dropping slow consumer %s (send queue over %d bytes)", eio_sid, self.settings.socket_send_queue_bytes)


def sid_alive(conn: Connection) -> bool:
    return not conn.engine_socket.closed


def _kind(namespace: str) -> str:
    return "public" if namespace == rooms.PUBLIC_NAMESPACE else "user"


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(header)
    return {key: morsel.value for key, morsel in jar.items()}
