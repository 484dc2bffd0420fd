"""The real-time hub: who is subscribed to what on this process, delivery, resume, live auth.

A subscriber is anything that receives an audience's events: a socket connected to ``/users/{id}``, a socket's
membership of a ``/public`` room, an SSE stream or a long-poll. The first subscriber of an audience makes the
process subscribe to that audience's live channel; the last one leaving unsubscribes it. Every event is encoded
once per delivery, whatever the number of subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
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
from hub.errors import AppError, unavailable_dependency
from hub.infra.metrics import Metrics
from hub.infra.origins import OriginPolicy
from hub.infra.outages import Outages
from hub.realtime.engine import LeanEngine
from hub.realtime.fanout import RECONNECT_CAP, RECONNECT_FIRST, UNKNOWN_EPOCH, EventBus, History, id_of
from hub.realtime.identity import Authenticator, Principal
from hub.realtime.limits import Counts, KeyedBuckets
from hub.realtime.subscribers import (
    SHUTDOWN,
    Connection,
    SocketSubscriber,
    StreamSubscriber,
    Subscriber,
    after,
    event_type_of,
)
from hub.settings import Settings

log = logging.getLogger("hub.realtime")

REPLAY_BATCH = 500
LATENCY_SAMPLE = 16
"""The publish-to-send histogram observes one delivered event in this many (parsing a timestamp per event would
cost more than the rest of the delivery)."""
SNAPSHOT_TIMEOUT = 5.0
REPLAY_RETRY_SECONDS = 10.0
"""How long a replay keeps trying to read a history Redis does not serve, before the subscriber gets a resync."""
CLOSE_TASKS_TIMEOUT = 5.0
"""How long closing waits for the replays and deliveries it cancelled to end."""
Snapshotter = Callable[[str], Awaitable[dict[str, Any] | None]]
Channel = Connection | StreamSubscriber
HISTORY_LOST = "history_lost"
WARN, EXPIRE = 0, 1
REVALIDATE_BATCH = 200


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
        outages: Outages | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus_
        self.engine = engine
        self.authenticator = authenticator
        self.metrics = metrics
        self.server = server
        self.outages = outages or Outages()
        self.snapshot: Snapshotter | None = None
        self.origins = OriginPolicy(settings.cors_origins)
        self.connections: dict[str, Connection] = {}
        self._channels: dict[str, dict[int, Channel]] = {}
        """user id -> the live channels (user-namespace connections, SSE streams, long-polls) of that user."""
        self._per_user = Counts(settings.socket_max_connections_per_user)
        self._per_address = Counts(settings.socket_max_connections_per_address)
        self._inbound = KeyedBuckets(settings.socket_inbound_events_per_second, settings.socket_inbound_burst)
        self._connects = KeyedBuckets(settings.socket_connects_per_second, settings.socket_connect_burst)
        self.draining = False
        self._streams: set[StreamSubscriber] = set()
        self._deadlines: list[tuple[float, int, int, Channel, float]] = []
        """(when, tie-break, WARN or EXPIRE, channel, the expiry it was scheduled for): a heap."""
        self._deadline_seq = itertools.count()
        self._audiences: dict[str, dict[int, Subscriber]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._revalidator: asyncio.Task[None] | None = None
        self._live_counts = [0, 0]
        self._subscriptions_dirty = True
        self._delivered_counts: dict[str, int] = {}
        self._sampled = 0
        metrics.before_render.append(self.flush_metrics)
        bus_.on_live = self.on_live
        bus_.on_reconnect = self.on_bus_reconnect
        engine.on_slow_consumer = self._slow_consumer
        server.manager.on_session_ended = self.end_local

    # --- lifecycle ----------------------------------------------------------------------------------------

    def register_handlers(self) -> None:
        self.server.on("connect", self.on_connect, namespace="*")
        self.server.on("disconnect", self.on_disconnect, namespace="*")
        self.server.on("*", self.on_event, namespace="*")

    async def start(self) -> None:
        if not self.server.manager_initialized:
            # python-socketio starts its adapter at the first socket; revocations must reach this process's
            # streams even when it has no socket yet
            self.server.manager_initialized = True
            self.server.manager.initialize()
        self._sweeper = asyncio.ensure_future(self._auth_sweep())
        self._revalidator = asyncio.ensure_future(self._revalidate_loop())

    async def close(self) -> None:
        self.flush_metrics()
        if self.flush_metrics in self.metrics.before_render:
            self.metrics.before_render.remove(self.flush_metrics)
        for background in (self._sweeper, self._revalidator):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        # cancelled and awaited here, while the database and Redis they use are still open: a replay cancelled
        # after the engine is disposed waits forever on its connection's close (SQLAlchemy shields it)
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_TASKS_TIMEOUT)

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
            self.spawn(self._unsubscribe_unused(subscriber.audience))
            self._gauge()

    async def _unsubscribe_unused(self, audience: str) -> None:
        """Unsubscribe, unless a subscriber came for the audience since it emptied: a stream that replaces a closed
        one in the same loop turn has subscribed already, and an unsubscribe sent after that would leave it deaf."""
        if audience not in self._audiences:
            await self.bus.unsubscribe(audience)

    def _gauge(self) -> None:
        self._subscriptions_dirty = True

    def audiences(self) -> set[str]:
        return set(self._audiences)

    # --- live channels and revocation ---------------------------------------------------------------------

    def open_channel(self, channel: Channel) -> bool:
        """Count a long-lived channel against its caps (per user, or per client address when anonymous) and make
        it reachable by revocation; False when a cap is reached."""
        principal = channel.principal
        if principal is None:
            opened = self._per_address.acquire(channel.address or "unknown")
        elif opened := self._per_user.acquire(principal.user_id):
            self._channels.setdefault(principal.user_id, {})[id(channel)] = channel
        if opened and isinstance(channel, StreamSubscriber):
            self._streams.add(channel)
        if opened and principal is not None:
            self._watch(channel)
        return opened

    def close_channel(self, channel: Channel) -> None:
        if isinstance(channel, StreamSubscriber):
            self._streams.discard(channel)
        principal = channel.principal
        if principal is None:
            self._per_address.release(channel.address or "unknown")
            return
        channels = self._channels.get(principal.user_id)
        if channels is not None and channels.pop(id(channel), None) is not None:
            self._per_user.release(principal.user_id)
            if not channels:
                del self._channels[principal.user_id]

    def drain(self) -> None:
        """Refuse new connections and streams; end every stream with a reconnect (long-polls answer at once)."""
        self.draining = True
        self.engine.draining = True
        for stream in list(self._streams):
            stream.end(SHUTDOWN, ControlEvent.RECONNECT)

    def end_local(self, user_id: str, credential_id: str | None, reason: str) -> None:
        """End this process's live channels of a user (of one credential, or all), and forget cached liveness."""
        self.authenticator.forget(user_id, credential_id)
        for channel in list(self._channels.get(user_id, {}).values()):
            if credential_id is None or (channel.principal and channel.principal.credential_id == credential_id):
                self._end(channel, reason)

    def _end(self, channel: Channel, reason: str) -> None:
        if isinstance(channel, Connection):
            self.spawn(self._end_connection(channel, reason))
        else:
            channel.end(reason)

    async def _end_connection(self, conn: Connection, reason: str) -> None:
        if self.connections.get(conn.sid) is not conn:
            return
        for subscriber in list(conn.subscribers.values()):
            subscriber.send_control(ControlEvent.SESSION_ENDED, {"reason": reason})
        self._forget(conn)
        await self.server.disconnect(conn.sid, namespace=conn.namespace)

    async def _revalidate_loop(self) -> None:
        """Credentials can end where the hub does not see it (a Better-Auth sign-out deletes the session row; another
        service revokes a family): every live channel's credential is checked again within each interval, in
        batches spread over it, so that ten thousand sockets cost many small queries rather than one stall."""
        failing = False
        while True:
            started = asyncio.get_running_loop().time()
            principals = list(
                {
                    channel.principal.credential_id: channel.principal
                    for channels in self._channels.values()
                    for channel in channels.values()
                    if channel.principal is not None
                }.values()
            )
            batches = [principals[i : i + REVALIDATE_BATCH] for i in range(0, len(principals), REVALIDATE_BATCH)]
            pause = self.settings.session_revalidate_seconds / (len(batches) + 1)
            for batch in batches:
                await asyncio.sleep(pause)
                try:
                    await self.revalidate(batch)
                except Exception as exc:
                    if not failing:
                        log.warning("revalidating live sessions failed (%s); retrying", type(exc).__name__)
                    failing = True
                    continue
                failing = False
            left = self.settings.session_revalidate_seconds - (asyncio.get_running_loop().time() - started)
            await asyncio.sleep(max(pause, left))

    async def revalidate(self, principals: list[Principal]) -> None:
        """End the live channels of the credentials that are no longer live."""
        live = await self.authenticator.still_live(principals)
        now = time.time()
        for principal in principals:
            if principal.credential_id not in live:
                # an expiry the expiry check has not reached yet is an expiry: the client refreshes, rather than
                # signing its user out as it would after a revocation
                reason = "token_expired" if principal.expires_at <= now else "revoked"
                self.end_local(principal.user_id, principal.credential_id, reason)

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
            if not after(event_id, subscriber.last_id):
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

    async def catch_up(self, subscriber: Subscriber, since: EventId | None = None) -> None:
        """Replay the history after the subscriber's last id, then switch it to live with no gap. ``since``: where
        a subscriber that has received nothing yet starts (the bus reconnected: it may have missed events)."""
        replayed = 0
        position = subscriber.last_id or since
        floor_ms = since.ms if since is not None and subscriber.last_id is None else 0
        try:
            while position is not None:
                history = await self._read(subscriber, position)
                if history.resync is not None:
                    resync: dict[str, Any] = {"reason": history.resync}
                    if history.head is not None:
                        resync["next"] = str(history.head)  # reloaded through REST, the client goes on from here
                    subscriber.send_control(ControlEvent.RESYNC, resync)
                    self.metrics.resumes.labels("resync").inc()
                    subscriber.last_id = None
                    if history.resync != HISTORY_LOST:
                        break
                    # the history this id belonged to is gone: everything the new one holds is news to the
                    # subscriber (events accepted while the bus reconnected are there), so it is replayed whole
                    # (from when it subscribed, for one that had received nothing)
                    history = await self._read(subscriber, None)
                cache: dict[str, Any] = {}
                for event_id, envelope_json in history.events:
                    if subscriber.closed():
                        return
                    if event_id.ms < floor_ms:
                        continue
                    if after(event_id, subscriber.last_id) and subscriber.send(event_id, envelope_json, cache):
                        subscriber.last_id = event_id
                        replayed += 1
                    cache.clear()
                if len(history.events) < REPLAY_BATCH:
                    self.metrics.resumes.labels("replayed").inc()
                    break
                position = history.events[-1][0]
        except Exception as exc:
            dependency = unavailable_dependency(exc)
            if dependency is None:
                log.exception("replay of %s failed", subscriber.audience)
            else:
                self.outages.report(dependency, exc)
            subscriber.send_control(ControlEvent.RESYNC, {"reason": "history_unavailable"})
            subscriber.last_id = None
        finally:
            # No await from here on: the pending live events are flushed and the subscriber goes live atomically.
            cache = {}
            for event_id, envelope_json in subscriber.pending:
                if after(event_id, subscriber.last_id) and subscriber.send(event_id, envelope_json, cache):
                    subscriber.last_id = event_id
                cache.clear()
            subscriber.pending.clear()
            subscriber.replaying = False
            if replayed:
                self.metrics.replayed.inc(replayed)

    async def _read(self, subscriber: Subscriber, position: EventId | None) -> History:
        """One batch of history. While the bus cannot reach Redis the read is tried again (jittered, from 50 ms to
        a second apart) for REPLAY_RETRY_SECONDS at most: a Redis that restarts with its data then costs a resume
        nothing, where giving up at once would cost the subscriber its position (a resync)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLAY_RETRY_SECONDS
        delay = RECONNECT_FIRST
        while True:
            try:
                return await self.bus.read(subscriber.audience, position, REPLAY_BATCH)
            except Exception as exc:
                dependency = unavailable_dependency(exc)
                if dependency is None or subscriber.closed() or loop.time() + delay > deadline:
                    raise
                self.outages.report(dependency, exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RECONNECT_CAP)

    def on_bus_reconnect(self) -> None:
        """Live events may have been missed while the bus was away: everyone catches up from the history. A
        subscriber that had received nothing catches up from when it subscribed: in the history another subscriber
        of its audience here knows (a resync if that one was lost), or else in whatever history is current (it
        holds nothing that a lost history could contradict, and a resync to every quiet client after each failover
        would send them all to REST at once)."""
        for members in self._audiences.values():
            epoch = next((s.last_id.epoch for s in members.values() if s.last_id is not None), UNKNOWN_EPOCH)
            for subscriber in members.values():
                if not subscriber.replaying:
                    subscriber.replaying = True
                    since = None if subscriber.last_id is not None else EventId(subscriber.since_ms, 0, epoch)
                    self.spawn(self.catch_up(subscriber, since))

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
        address = environ.get("CLIENT_ADDRESS") or environ.get("REMOTE_ADDR") or "unknown"
        if self.draining:
            raise _refusal(ProblemType.SERVICE_UNAVAILABLE, "this hub process is shutting down; reconnect")
        if not self._connects.take(address):
            self.metrics.inbound_limited.inc()
            raise _refusal(ProblemType.RATE_LIMITED, "too many connection attempts from this address; slow down")
        if namespace != rooms.PUBLIC_NAMESPACE:
            user_id = rooms.parse_user_namespace(namespace)
            if user_id is None:
                raise _refusal(ProblemType.NOT_FOUND, f"no namespace {namespace[:100]!r}")
            origin = environ.get("HTTP_ORIGIN")
            if origin and not self.origins.allows(origin, environ.get("HTTP_HOST")):
                raise _refusal(
                    ProblemType.FORBIDDEN,
                    f"the origin {origin[:200]} may not open user namespaces (see CARTSNITCH_CORS_ORIGINS)",
                )
            try:
                principal = await self._authenticate(environ, auth)
            except Exception as exc:
                dependency = unavailable_dependency(exc)
                if dependency is None:
                    raise
                self.outages.report(dependency, exc)
                raise _refusal(
                    ProblemType.SERVICE_UNAVAILABLE, f"the {dependency} is unavailable; retry in a few seconds"
                ) from None
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
        conn = Connection(sid, namespace, engine_socket, principal, address)
        if principal is not None and not self.open_channel(conn):
            raise _refusal(
                ProblemType.RATE_LIMITED,
                f"at most {self._per_user.cap} live connections per user (CARTSNITCH_SOCKET_MAX_CONNECTIONS_PER_USER)",
            )
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
        if conn.principal is not None:
            self.close_channel(conn)
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
            if event in (ClientCommand.SUBSCRIBE, ClientCommand.UNSUBSCRIBE):
                async with conn.command_lock():  # in the order sent, as the reference server applies them
                    if event == ClientCommand.SUBSCRIBE:
                        return await self._subscribe_room(conn, data)
                    return self._unsubscribe_room(conn, data)
        elif event == ClientCommand.AUTH_REFRESH:
            return await self._refresh(conn, data)
        return {"ok": False, "problem": _problem(ProblemType.NOT_FOUND, f"unknown event {str(event)[:100]!r}")}

    def _take_token(self, conn: Connection) -> bool:
        # one budget per user (or client address), however many connections it opens and closes
        if self._inbound.take("user:" + conn.user_id if conn.user_id else "address:" + conn.address):
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
        # the namespace may have been left while the snapshot was read: its subscriptions are gone then
        if audience not in conn.subscribers and self._joined(conn):
            if len(conn.subscribers) >= 100:
                return {"ok": False, "problem": _problem(ProblemType.CONFLICT, "at most 100 rooms per connection")}
            subscriber = SocketSubscriber(conn, audience, None)
            conn.subscribers[audience] = subscriber  # before subscribing: leaving meanwhile removes it
            try:
                await self.add(subscriber)
            except Exception:
                if conn.subscribers.get(audience) is subscriber:
                    del conn.subscribers[audience]
                    self.remove(subscriber)
                return {
                    "ok": False,
                    "problem": _problem(ProblemType.SERVICE_UNAVAILABLE, "the event bus is unavailable; retry"),
                }
            if self.snapshot is not None:
                # again once subscribed (normally from the cache): a change in between also arrives as an event
                with contextlib.suppress(TimeoutError):
                    snapshot = await asyncio.wait_for(self.snapshot(room), SNAPSHOT_TIMEOUT) or snapshot
            if conn.subscribers.get(audience) is subscriber:
                self.spawn(self.catch_up(subscriber))
        return {"ok": True, "room": room, "snapshot": snapshot}

    def _joined(self, conn: Connection) -> bool:
        """The connection is still this process's (its namespace not left) and its transport open."""
        return self.connections.get(conn.sid) is conn and sid_alive(conn)

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
        self._watch(conn)
        return {"ok": True, "expires_at": int(principal.expires_at)}

    def _watch(self, channel: Channel) -> None:
        """Schedule a live channel's credential deadlines: the expiry notice (sockets, which can refresh) and the
        expiry. Entries made stale by a refresh or a close are skipped when they come due."""
        expires = channel.expires_at
        if expires == float("inf"):
            return
        if isinstance(channel, Connection):
            when = expires - self.settings.auth_expiring_notice_seconds
            heapq.heappush(self._deadlines, (when, next(self._deadline_seq), WARN, channel, expires))
        heapq.heappush(self._deadlines, (expires, next(self._deadline_seq), EXPIRE, channel, expires))
        if len(self._deadlines) > 4 * (len(self.connections) + len(self._streams)) + 1000:
            # entries of closed channels wait for their time: rebuild from the open ones now and then
            self._deadlines = [d for d in self._deadlines if self._is_open(d[3])]
            heapq.heapify(self._deadlines)

    def _is_open(self, channel: Channel) -> bool:
        if isinstance(channel, Connection):
            return self.connections.get(channel.sid) is channel
        return channel in self._streams

    async def _auth_sweep(self) -> None:
        """Warn sockets whose credentials are about to expire, and end the channels whose credentials expired;
        the deadlines are a heap, so a second costs what is due, not a look at every connection."""
        while True:
            await asyncio.sleep(1.0)
            self.flush_metrics()
            now = time.time()
            deadlines = self._deadlines
            while deadlines and deadlines[0][0] <= now:
                _, _, kind, channel, expires = heapq.heappop(deadlines)
                if channel.expires_at != expires or not self._is_open(channel):
                    continue
                if kind == EXPIRE:
                    if isinstance(channel, Connection):
                        self.spawn(self._expire(channel))
                    else:
                        channel.end("token_expired")
                elif isinstance(channel, Connection) and not channel.warned:
                    channel.warned = True
                    for subscriber in channel.subscribers.values():
                        subscriber.send_control(
                            ControlEvent.AUTH_EXPIRING,
                            {
                                "expires_at": datetime.fromtimestamp(channel.expires_at, UTC).isoformat(),
                                "seconds_left": max(0, int(channel.expires_at - now)),
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
