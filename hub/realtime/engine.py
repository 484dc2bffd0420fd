"""A lean Engine.IO v4 server on aiohttp, in place of python-engineio's for python-socketio.

Why not python-engineio's own: it keeps a writer task and a queue per socket, a sleeping task per socket for
every ping, and a task per received websocket message, and it encodes every packet once per recipient. Here a
websocket write is a synchronous ``transport.write`` of a frame built once per event (server frames are unmasked,
so the same bytes go to every recipient), one timer drives the heartbeats of every socket, and a socket whose
unsent bytes exceed a limit is dropped instead of queueing without bound. python-socketio talks to this class
through the same methods it calls on ``engineio.AsyncServer``.

The protocol is the Engine.IO v4 specification (``socketio/engine.io-protocol``) as the reference server implements
it, on both transports: handshake fields (``upgrades`` is empty on a session opened over websocket), the heartbeat
at the configured interval (the server pings, a missing pong closes the session after ``pingTimeout``), 400 with
``{code, message}`` for every refused request, close and upgrade semantics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from engineio import packet as eio_packet
from engineio.base_server import BaseServer

from hub.infra.clientaddr import ClientAddress
from hub.realtime.limits import Counts
from hub.realtime.websocket import CLOSE_PROTOCOL_ERROR, HandshakeError, WebSocketProtocol, handshake_response
from hub.realtime.websocket import frame as ws_frame

log = logging.getLogger("hub.engine")

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0123456"
RECORD_SEPARATOR = "\x1e"
_TEXT, _BINARY = 0x1, 0x2
BEAT_BATCH = 256
"""Pings written in one timer callback at most."""
INBOX_LIMIT = 256
"""Received websocket messages not yet handled, past which a connection is dropped as a flood."""


class Outbound:
    """One Engine.IO message (``text``: the packet, type included) encoded for both transports, built once and
    written to any number of sockets."""

    __slots__ = ("frame", "size", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.frame = ws_frame(text.encode())
        self.size = len(self.frame)


def is_open(transport: asyncio.BaseTransport | None) -> bool:
    """Whether a request's connection is still open (aiohttp drops the transport when the peer goes away)."""
    return transport is not None and not transport.is_closing()


class EngineSocket:
    __slots__ = (
        "address",
        "beat",
        "close_reason",
        "closed",
        "environ",
        "inbox",
        "inbox_task",
        "joined",
        "poll_transport",
        "polled",
        "posting",
        "probe_timer",
        "probing",
        "queue",
        "queued_bytes",
        "server",
        "session",
        "sid",
        "transport",
        "upgrading",
        "waiter",
        "ws",
        "ws_writer",
    )

    def __init__(self, server: LeanEngine, sid: str, environ: dict[str, Any], address: str) -> None:
        self.server = server
        self.sid = sid
        self.environ = environ
        self.address = address
        self.session: dict[str, Any] | None = None
        self.ws: WebSocketProtocol | web.WebSocketResponse | None = None
        self.transport: asyncio.Transport | None = None
        self.ws_writer: asyncio.Queue[bytes | str | None] | None = None
        self.queue: list[str] = []
        self.queued_bytes = 0
        self.waiter: asyncio.Future[None] | None = None
        self.poll_transport: asyncio.BaseTransport | None = None
        """The connection of the pending poll (``waiter``'s): whether its client is still there to read."""
        self.inbox: deque[str | bytes] | None = None
        """Messages received over the websocket and not yet handled (handled in order by ``inbox_task``)."""
        self.inbox_task: asyncio.Task[None] | None = None
        self.polled = False
        self.posting = False
        """A POST of this session is being read or handled: the protocol allows one at a time."""
        self.probing = False
        self.probe_timer: asyncio.TimerHandle | None = None
        self.upgrading = False
        self.closed = False
        self.close_reason = ""
        self.joined = False
        """Set by the Socket.IO server when a namespace is joined; a session that joins none within the connect
        timeout is closed."""
        self.beat = 0
        """Heartbeat generation: odd while a ping awaits its pong. Timer entries of another generation are stale."""

    @property
    def upgraded(self) -> bool:
        return self.ws is not None and not self.upgrading

    def write_text(self, text: str) -> bool:
        """Queue or write one encoded Engine.IO packet; False when the socket is closed or was dropped as slow."""
        if self.closed:
            return False
        if self.upgraded:
            return self._write_ws(text.encode(), _TEXT)
        return self._write_polling(text)

    def write(self, out: Outbound) -> bool:
        """Write a pre-encoded message (the fan-out path: no encoding, no task, no await)."""
        if self.closed:
            return False
        transport = self.transport
        if self.ws_writer is None and transport is not None and not self.upgrading:
            if transport.get_write_buffer_size() + out.size > self.server.send_queue_bytes:
                self.server.drop_slow(self)
                return False
            transport.write(out.frame)
            return True
        return self.write_text(out.text)

    def write_binary(self, data: bytes) -> bool:
        if self.closed:
            return False
        if self.upgraded:
            return self._write_ws(data, _BINARY)
        return self._write_polling("b" + base64.b64encode(data).decode())

    def _write_ws(self, payload: bytes, opcode: int) -> bool:
        if self.ws_writer is not None:
            self.ws_writer.put_nowait(payload if opcode == _BINARY else payload.decode())
            return True
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        frame = ws_frame(payload, opcode)
        if transport.get_write_buffer_size() + len(frame) > self.server.send_queue_bytes:
            self.server.drop_slow(self)
            return False
        transport.write(frame)
        return True

    def _write_polling(self, text: str) -> bool:
        if self.queued_bytes + len(text) > self.server.send_queue_bytes:
            self.server.drop_slow(self)
            return False
        self.queue.append(text)
        self.queued_bytes += len(text)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def take_queue(self) -> str:
        text = RECORD_SEPARATOR.join(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return text


Handler = Callable[..., Awaitable[Any]]


class LeanEngine:
    """The subset of ``engineio.AsyncServer`` that python-socketio uses, for the aiohttp integration."""

    async_mode = "aiohttp"
    reason = BaseServer.reason

    def __init__(
        self,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_http_buffer_size: int = 1_000_000,
        cors_allowed_origins: list[str] | str | None = None,
        websocket_compression: bool = False,
        send_queue_bytes: int = 1 << 20,
        connect_timeout: float = 45.0,
        client_address: ClientAddress | None = None,
        max_sessions_per_address: int = 1_000_000,
        on_slow_consumer: Callable[[str], None] | None = None,
        **_ignored: Any,
    ) -> None:
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_http_buffer_size = int(max_http_buffer_size)
        self.cors_allowed_origins = frozenset(
            [cors_allowed_origins] if isinstance(cors_allowed_origins, str) else cors_allowed_origins or ()
        )
        self.websocket_compression = websocket_compression
        self.send_queue_bytes = send_queue_bytes
        self.on_slow_consumer = on_slow_consumer
        self.client_address = client_address or ClientAddress(())
        self.sessions_per_address = Counts(max_sessions_per_address)
        self.draining = False
        self.sockets: dict[str, EngineSocket] = {}
        self.handlers: dict[str, Handler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Every socket waits the same interval for its next ping (and the same timeout for its pong, and for its
        # first namespace), so each deadline list is appended in time order: one timer at the earliest head serves
        # any number of sockets at any interval.
        self._pings: deque[tuple[float, EngineSocket, int]] = deque()
        self._pongs: deque[tuple[float, EngineSocket, int]] = deque()
        self._joins: deque[tuple[float, EngineSocket]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._open_fields = {
            "pingInterval": int(self.ping_interval * 1000),
            "pingTimeout": int(self.ping_timeout * 1000),
            "maxPayload": self.max_http_buffer_size,
        }

    # --- the python-socketio facing API ------------------------------------------------------------------

    def on(self, event: str, handler: Handler | None = None) -> Any:
        def register(fn: Handler) -> Handler:
            self.handlers[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def attach(self, app: web.Application, engineio_path: str = "engine.io") -> None:
        # every method reaches the handler: the protocol answers an unsupported one with 400, not aiohttp's 405
        app.router.add_route("*", "/" + engineio_path.strip("/") + "/", self.handle_request)

    async def send(self, sid: str, data: str | bytes) -> None:
        socket = self.sockets.get(sid)
        if socket is None:
            return
        if isinstance(data, bytes):
            socket.write_binary(data)
        else:
            socket.write_text(MESSAGE + data)

    async def send_packet(self, sid: str, pkt: eio_packet.Packet) -> None:
        socket = self.sockets.get(sid)
        if socket is None:
            return
        if pkt.binary:
            socket.write_binary(pkt.data)
        else:
            socket.write_text(pkt.encode())

    async def disconnect(self, sid: str | None = None) -> None:
        targets = [sid] if sid is not None else list(self.sockets)
        for target in targets:
            socket = self.sockets.get(target)
            if socket is not None:
                await self.close_socket(socket, self.reason.SERVER_DISCONNECT, send_close=True)

    def transport(self, sid: str) -> str:
        socket = self.sockets[sid]
        return "websocket" if socket.upgraded else "polling"

    async def get_session(self, sid: str) -> dict[str, Any]:
        socket = self.sockets[sid]
        if socket.session is None:
            socket.session = {}
        return socket.session

    async def save_session(self, sid: str, session: dict[str, Any]) -> None:
        self.sockets[sid].session = session

    @contextlib.asynccontextmanager
    async def session(self, sid: str) -> Any:
        yield await self.get_session(sid)

    def generate_id(self) -> str:
        return secrets.token_urlsafe(15)

    def create_event(self) -> asyncio.Event:
        return asyncio.Event()

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    def start_background_task(
        self, target: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(target(*args, **kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a socket task failed: %s", type(exc).__name__, exc_info=exc if log.isEnabledFor(10) else None)

    async def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for socket in list(self.sockets.values()):
            await self.close_socket(socket, self.reason.SERVER_DISCONNECT, send_close=True)
        for task in list(self._tasks):
            task.cancel()

    # --- fan-out helpers ---------------------------------------------------------------------------------

    def socket(self, sid: str) -> EngineSocket | None:
        return self.sockets.get(sid)

    def drop_slow(self, socket: EngineSocket) -> None:
        """A client that does not read is dropped (it reconnects and resumes from its last event id)."""
        if socket.closed:
            return
        if self.on_slow_consumer is not None:
            self.on_slow_consumer(socket.sid)
        if socket.transport is not None:
            socket.transport.abort()
        self.start_background_task(self.close_socket, socket, self.reason.TRANSPORT_ERROR)

    async def close_socket(self, socket: EngineSocket, reason: str, *, send_close: bool = False) -> None:
        if socket.closed:
            return
        if send_close:
            socket.write_text(CLOSE)
        socket.closed = True
        socket.close_reason = reason
        self._forget(socket)
        waiter = socket.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if socket.ws_writer is not None:
            socket.ws_writer.put_nowait(None)
        if isinstance(socket.ws, WebSocketProtocol) and reason == self.reason.TRANSPORT_ERROR:
            socket.ws.fail(CLOSE_PROTOCOL_ERROR)  # a close frame, and nothing more it sends is handled
        elif reason in (self.reason.TRANSPORT_ERROR, self.reason.PING_TIMEOUT) and socket.transport is not None:
            # a broken or hostile client gets no closing handshake: the connection is dropped at once, and
            # whatever it still sends is never read
            socket.transport.abort()
        elif isinstance(socket.ws, WebSocketProtocol):
            socket.ws.close()
        elif socket.ws is not None and not socket.ws.closed:
            self.start_background_task(socket.ws.close)
        handler = self.handlers.get("disconnect")
        if handler is not None:
            try:
                await handler(socket.sid, reason)
            except Exception:
                log.exception("disconnect handler failed")

    # --- heartbeat and connect timeout --------------------------------------------------------------------

    def _schedule(self, queue: deque[Any], entry: tuple[Any, ...]) -> None:
        queue.append(entry)
        if self._timer is None or entry[0] < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            # the time is kept here: uvloop's handles do not tell it
            self._timer_at = entry[0]
            self._timer = asyncio.get_running_loop().call_at(entry[0], self._beat)

    def _start_heartbeat(self, socket: EngineSocket) -> None:
        now = asyncio.get_running_loop().time()
        self._schedule(self._pings, (now + self.ping_interval, socket, socket.beat))
        self._schedule(self._joins, (now + self.connect_timeout, socket))

    def _pong(self, socket: EngineSocket) -> None:
        if socket.beat % 2 == 1:
            socket.beat += 1
            self._schedule(self._pings, (asyncio.get_running_loop().time() + self.ping_interval, socket, socket.beat))

    def _beat(self) -> None:
        """Ping the sockets whose interval is up, close those whose pong (or first namespace) is overdue."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        pings, pongs, joins = self._pings, self._pongs, self._joins
        budget = BEAT_BATCH  # a burst of due pings is written in slices, between which other callbacks run
        while pings and pings[0][0] <= now and budget:
            budget -= 1
            _, socket, beat = pings.popleft()
            if socket.closed or socket.beat != beat:
                continue
            socket.beat += 1
            socket.write_text(PING)
            pongs.append((now + self.ping_timeout, socket, socket.beat))
        while pongs and pongs[0][0] <= now:
            _, socket, beat = pongs.popleft()
            if not socket.closed and socket.beat == beat:
                self.start_background_task(self.close_socket, socket, self.reason.PING_TIMEOUT)
        while joins and joins[0][0] <= now:
            _, socket = joins.popleft()
            if not socket.closed and not socket.joined:
                self.start_background_task(self.close_socket, socket, self.reason.SERVER_DISCONNECT, send_close=True)
        heads = [queue[0][0] for queue in (pings, pongs, joins) if queue]
        if heads:
            self._timer_at = max(min(heads), now)
            self._timer = loop.call_at(self._timer_at, self._beat)

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        """Any origin may open a session (the ``/public`` namespace is for everyone), without credentials; a listed
        origin also gets credentials. User namespaces check the origin when they are joined."""
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        if origin in self.cors_allowed_origins:
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
        return {"Access-Control-Allow-Origin": "*", "Vary": "Origin"}

    @staticmethod
    def _error(message: str, code: int, status: int = 400, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=orjson.dumps({"code": code, "message": message}),
            content_type="application/json",
            headers=headers,
        )

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        cors = self._cors_headers(request)
        method = request.method
        if method == "OPTIONS":
            headers = dict(cors)
            headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            if "Access-Control-Request-Headers" in request.headers:
                headers["Access-Control-Allow-Headers"] = request.headers["Access-Control-Request-Headers"]
            return web.Response(status=204, headers=headers)
        query = request.query
        if query.get("EIO") != "4":
            return self._error("Unsupported protocol version", 5, headers=cors)
        transport = query.get("transport")
        if transport not in ("polling", "websocket"):
            return self._error("Transport unknown", 0, headers=cors)
        if "j" in query:
            # JSONP polling (Engine.IO v3's, gone from v4's specification): refused rather than answered as plain
            # polling, which a JSONP client cannot read
            return self._error("JSONP is not supported", 3, headers=cors)
        sid = query.get("sid")
        is_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if sid is None:
            if method != "GET" or (transport == "websocket") != is_upgrade:
                return self._error("Bad handshake method", 2, headers=cors)
            if self.draining:
                return self._error("Server shutting down", 4, 503, headers=cors)
            if self.sessions_per_address[self._address(request)] >= self.sessions_per_address.cap:
                return self._error("Too many sessions from this address", 4, 429, headers=cors)
            if transport == "websocket":
                return await self._open_websocket(request)
            return await self._open_polling(request, cors)
        socket = self.sockets.get(sid)
        if socket is None:
            return self._error("Session ID unknown", 1, headers=cors)
        if transport == "websocket":
            if not is_upgrade or method != "GET" or socket.ws is not None or socket.probing or socket.upgrading:
                return self._error("Bad request", 3, headers=cors)
            return await self._upgrade(request, socket)
        if socket.ws is not None and not socket.upgrading:
            return self._error("Bad request", 3, headers=cors)
        if method == "GET":
            return await self._poll(request, socket, cors)
        if method == "POST":
            return await self._post(request, socket, cors)
        return self._error("Bad request", 3, headers=cors)

    def _environ(self, request: web.Request) -> dict[str, Any]:
        headers = request.headers
        environ = {
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "REMOTE_ADDR": request.remote or "",
            "HTTP_HOST": headers.get("Host", ""),
            "HTTP_COOKIE": headers.get("Cookie", ""),
            "HTTP_AUTHORIZATION": headers.get("Authorization", ""),
            "HTTP_ORIGIN": headers.get("Origin", ""),
            "HTTP_X_FORWARDED_FOR": ",".join(headers.getall("X-Forwarded-For", [])),
        }
        return {key: value for key, value in environ.items() if value}

    def _address(self, request: web.Request) -> str:
        return self.client_address.of_request(request.remote, request.headers)

    def _new_socket(self, request: web.Request) -> EngineSocket:
        sid = self.generate_id()
        address = self._address(request)
        environ = self._environ(request)
        environ["CLIENT_ADDRESS"] = address
        socket = EngineSocket(self, sid, environ, address)
        self.sockets[sid] = socket
        self.sessions_per_address.acquire(address)
        return socket

    def _forget(self, socket: EngineSocket) -> None:
        if self.sockets.pop(socket.sid, None) is not None:
            self.sessions_per_address.release(socket.address)

    def _open_text(self, sid: str, upgrades: list[str]) -> str:
        return OPEN + orjson.dumps({"sid": sid, "upgrades": upgrades, **self._open_fields}).decode()

    async def _connected(self, socket: EngineSocket) -> bool:
        handler = self.handlers.get("connect")
        if handler is not None:
            try:
                result = await handler(socket.sid, socket.environ)
            except Exception:
                log.exception("connect handler failed")
                result = False
            if result is False:
                socket.closed = True
                self._forget(socket)
                return False
        self._start_heartbeat(socket)
        return True

    async def _open_polling(self, request: web.Request, cors: dict[str, str]) -> web.Response:
        socket = self._new_socket(request)
        if not await self._connected(socket):
            return self._error("Unauthorized", 4, 401, headers=cors)
        body = self._open_text(socket.sid, ["websocket"])
        if socket.queue:
            body += RECORD_SEPARATOR + socket.take_queue()
        return web.Response(text=body, content_type="text/plain", headers=cors)

    async def _poll(self, request: web.Request, socket: EngineSocket, cors: dict[str, str]) -> web.Response:
        if socket.waiter is not None:
            if is_open(socket.poll_transport):
                # two GETs at once: the protocol closes the session (the first poll then reads a close packet)
                await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
                return self._error("Overlapping poll", 3, headers=cors)
            # the pending poll's client went away (an aborted request, a proxy's idle timeout): this one replaces it
            if not socket.waiter.done():
                socket.waiter.set_result(None)
            socket.waiter = socket.poll_transport = None
        transport = request.transport
        if not socket.queue and not socket.upgrading and not socket.closed:
            waiter = socket.waiter = asyncio.get_running_loop().create_future()
            socket.poll_transport = transport
            try:
                await asyncio.wait_for(waiter, self.ping_interval + self.ping_timeout)
            except TimeoutError:
                pass
            finally:
                if socket.waiter is waiter:
                    socket.waiter = socket.poll_transport = None
            if not is_open(transport):
                # nobody would read this answer: what is queued stays for the client's next poll
                return web.Response(text=NOOP, content_type="text/plain", headers=cors)
        if socket.upgrading or socket.upgraded:
            body = NOOP
        elif socket.queue:
            body = socket.take_queue()
        elif socket.closed:
            # the client's own close packet ends its pending poll with a noop, a server-side close with a close
            body = NOOP if socket.close_reason == self.reason.CLIENT_DISCONNECT else CLOSE
        else:
            body = NOOP
        socket.polled = True
        return web.Response(text=body, content_type="text/plain", headers=cors)

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The whole body, however many pieces it arrives in; None when it is larger than the payload limit."""
        limit = self.max_http_buffer_size
        if request.content_length is not None and request.content_length > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.ping_timeout + self.ping_interval):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
        return b"".join(chunks)

    async def _post(self, request: web.Request, socket: EngineSocket, cors: dict[str, str]) -> web.Response:
        # the header as sent: aiohttp's content_type reads a missing one as application/octet-stream
        binary = request.headers.get("Content-Type", "").partition(";")[0].strip().lower() == "application/octet-stream"
        if socket.posting or binary:
            # two POSTs at once, or a binary body (v4 polling carries binary as base64 text): the protocol answers
            # 400 and closes the session, as the reference server does
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return self._error("Overlapping post" if socket.posting else "Bad request", 3, headers=cors)
        socket.posting = True
        try:
            return await self._handle_post(request, socket, cors)
        finally:
            socket.posting = False

    async def _handle_post(self, request: web.Request, socket: EngineSocket, cors: dict[str, str]) -> web.Response:
        try:
            raw = await self._read_body(request)
        except TimeoutError:
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return self._error("The body did not arrive in time", 3, 408, headers=cors)
        if raw is None:
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return self._error("Payload too large", 3, 413, headers=cors)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return self._error("Bad request", 3, headers=cors)
        for packet in text.split(RECORD_SEPARATOR):
            if not await self._receive(socket, packet):
                if socket.close_reason == self.reason.TRANSPORT_ERROR:
                    return self._error("Bad request", 3, headers=cors)
                break
        return web.Response(text="ok", content_type="text/html", headers=cors)

    async def _receive(self, socket: EngineSocket, text: str | bytes) -> bool:
        """Handle one packet from the client; False when the socket is (now) closed."""
        if socket.closed:
            return False
        if isinstance(text, bytes):
            return await self._message(socket, text)
        if not text:
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return False
        kind = text[0]
        if kind == MESSAGE:
            return await self._message(socket, text[1:])
        if kind == "b":
            try:
                data = base64.b64decode(text[1:], validate=True)
            except ValueError:
                await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
                return False
            return await self._message(socket, data)
        if kind == PONG:  # a pong's data, if any, means nothing outside the upgrade's probe
            self._pong(socket)
            return True
        if kind == CLOSE and len(text) == 1:
            await self.close_socket(socket, self.reason.CLIENT_DISCONNECT)
            return False
        if kind in (NOOP, UPGRADE):
            return True  # a stray upgrade on an open session means nothing (the reference server ignores it too)
        await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
        return False

    async def _message(self, socket: EngineSocket, data: str | bytes) -> bool:
        handler = self.handlers.get("message")
        if handler is None:
            return True
        try:
            await handler(socket.sid, data)
        except Exception as exc:
            # a packet python-socketio cannot parse: the client is broken or hostile, so the connection ends
            log.debug("closing %s after a bad packet: %s", socket.sid, type(exc).__name__)
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return False
        return not socket.closed

    def _websocket(self) -> web.WebSocketResponse:
        return web.WebSocketResponse(
            compress=self.websocket_compression,
            max_msg_size=self.max_http_buffer_size,
            autoping=True,
            heartbeat=None,
        )

    def _attach_ws(self, socket: EngineSocket, ws: web.WebSocketResponse, request: web.Request) -> None:
        socket.ws = ws
        socket.transport = request.transport
        if ws.compress:
            socket.ws_writer = asyncio.Queue()
            self.start_background_task(self._compressed_writer, socket, ws)

    @staticmethod
    async def _compressed_writer(socket: EngineSocket, ws: web.WebSocketResponse) -> None:
        """With permessage-deflate negotiated, frames go through aiohttp's compressor, in order."""
        queue = socket.ws_writer
        assert queue is not None
        while (item := await queue.get()) is not None:
            try:
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    # --- websocket without compression: the transport is taken from aiohttp once the handshake is answered ---

    def _take_over(self, request: web.Request) -> WebSocketProtocol | None:
        """Answer the opening handshake on the request's transport and make the transport a WebSocketProtocol's;
        aiohttp then finds its connection gone and its handler (and request, and task) end. None when the
        request is not a valid handshake."""
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        try:
            response = handshake_response(request.headers)
        except HandshakeError:
            return None
        ws = WebSocketProtocol(transport, self.max_http_buffer_size, _ignore, _nothing)
        transport.write(response)
        transport.set_protocol(ws)
        # aiohttp's protocol forgets the transport (so that it does not close it) and is told its connection is
        # gone: it stops tracking it, and the handler's response is never written
        http = request.protocol
        http.transport = None
        http.connection_lost(None)
        return ws

    def _serve_ws(self, socket: EngineSocket, ws: WebSocketProtocol) -> None:
        ws.on_message = lambda data: self._inbound(socket, data)
        ws.on_close = lambda: self._ws_closed(socket)
        socket.ws = ws
        socket.transport = ws.transport

    def _inbound(self, socket: EngineSocket, data: str | bytes) -> None:
        if data == PONG:  # the heartbeat, answered here: no task
            self._pong(socket)
            return
        inbox = socket.inbox
        if inbox is None:
            inbox = socket.inbox = deque()
        if len(inbox) >= INBOX_LIMIT:
            # far more messages than the handlers keep up with: a flood, not a client
            self.drop_slow(socket)
            return
        inbox.append(data)
        if socket.inbox_task is None:
            socket.inbox_task = self.start_background_task(self._handle_inbox, socket)

    async def _handle_inbox(self, socket: EngineSocket) -> None:
        inbox = socket.inbox
        try:
            while inbox and not socket.closed:
                if not await self._receive(socket, inbox.popleft()):
                    break
        finally:
            socket.inbox_task = None

    def _ws_closed(self, socket: EngineSocket) -> None:
        # the connection's sending side is shut already (the close frame answered): a write before the session's
        # close runs, an event delivered in the same turn of the loop, would raise ("write() after write_eof()")
        # into whoever delivers it, the Redis pub/sub connection included
        socket.transport = None
        if not socket.closed:
            self.start_background_task(self.close_socket, socket, self.reason.TRANSPORT_CLOSE)

    async def _open_websocket(self, request: web.Request) -> web.StreamResponse:
        if self.websocket_compression:
            return await self._open_compressed_websocket(request)
        ws = self._take_over(request)
        if ws is None:
            return self._error("Bad request", 3, headers=self._cors_headers(request))
        socket = self._new_socket(request)
        self._serve_ws(socket, ws)
        if await self._connected(socket):
            socket.write_text(self._open_text(socket.sid, []))
        else:
            ws.close()
        return _detached()

    async def _upgrade(self, request: web.Request, socket: EngineSocket) -> web.StreamResponse:
        if self.websocket_compression:
            return await self._compressed_upgrade(request, socket)
        ws = self._take_over(request)
        if ws is None:
            return self._error("Bad request", 3, headers=self._cors_headers(request))
        socket.probing = True
        ws.on_message = lambda data: self._upgrade_message(socket, ws, data)
        ws.on_close = lambda: self._upgrade_failed(socket, ws)
        probe_deadline = asyncio.get_running_loop().call_later(self.ping_timeout, self._probe_timeout, socket, ws)
        socket.probe_timer = probe_deadline
        return _detached()

    def _upgrade_message(self, socket: EngineSocket, ws: WebSocketProtocol, data: str | bytes) -> None:
        """The upgrade's probe exchange: ``2probe`` → ``3probe`` (the pending poll ends with a noop), then ``5``."""
        if data == PING + "probe" and socket.probing and not socket.upgrading and not socket.closed:
            ws.transport.write(ws_frame((PONG + "probe").encode()))
            socket.upgrading = True
            waiter = socket.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if data == UPGRADE and socket.upgrading and not socket.closed:
            self._cancel_probe_timer(socket)
            pending = list(socket.queue)
            socket.queue.clear()
            socket.queued_bytes = 0
            self._serve_ws(socket, ws)
            socket.probing = socket.upgrading = False
            for text in pending:
                socket.write_text(text)
            return
        self._upgrade_failed(socket, ws)

    def _upgrade_failed(self, socket: EngineSocket, ws: WebSocketProtocol) -> None:
        """The probe went wrong (or the websocket closed during it): the session goes on over polling."""
        if socket.ws is ws:
            return
        self._cancel_probe_timer(socket)
        socket.probing = socket.upgrading = False
        if not ws.closed:
            ws.close()

    def _probe_timeout(self, socket: EngineSocket, ws: WebSocketProtocol) -> None:
        socket.probe_timer = None
        self._upgrade_failed(socket, ws)

    @staticmethod
    def _cancel_probe_timer(socket: EngineSocket) -> None:
        if socket.probe_timer is not None:
            socket.probe_timer.cancel()
            socket.probe_timer = None

    # --- websocket with permessage-deflate: aiohttp's WebSocketResponse for the socket's lifetime ------------

    async def _open_compressed_websocket(self, request: web.Request) -> web.StreamResponse:
        ws = self._websocket()
        await ws.prepare(request)
        socket = self._new_socket(request)
        self._attach_ws(socket, ws, request)
        if not await self._connected(socket):
            await ws.close()
            return ws
        socket.write_text(self._open_text(socket.sid, []))
        await self._read_websocket(socket, ws)
        return ws

    async def _compressed_upgrade(self, request: web.Request, socket: EngineSocket) -> web.StreamResponse:
        ws = self._websocket()
        await ws.prepare(request)
        socket.probing = True
        try:
            probe = await self._next_text(ws)
            if probe != PING + "probe" or socket.closed:
                await ws.close()
                return ws
            await ws.send_str(PONG + "probe")
            socket.upgrading = True
            waiter = socket.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)  # the pending poll ends with a noop
            upgrade = await self._next_text(ws)
            if upgrade != UPGRADE or socket.closed:
                await ws.close()
                return ws
            pending = list(socket.queue)
            socket.queue.clear()
            socket.queued_bytes = 0
            self._attach_ws(socket, ws, request)
        finally:
            socket.probing = socket.upgrading = False
        for text in pending:
            socket.write_text(text)
        await self._read_websocket(socket, ws)
        return ws

    async def _next_text(self, ws: web.WebSocketResponse) -> str | None:
        try:
            msg = await asyncio.wait_for(ws.receive(), self.ping_timeout)
        except TimeoutError:
            return None
        return msg.data if msg.type == WSMsgType.TEXT else None

    async def _read_websocket(self, socket: EngineSocket, ws: web.WebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    ok = await self._receive(socket, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    ok = await self._message(socket, msg.data)
                else:
                    break
                if not ok:
                    break
        finally:
            await self.close_socket(socket, self.reason.TRANSPORT_CLOSE)


def _ignore(data: str | bytes) -> None:
    return None


def _nothing() -> None:
    return None


def _detached() -> web.Response:
    """What the handler returns once the transport is the websocket's: aiohttp finds its connection gone and
    sends nothing (a new object each time: aiohttp prepares the response it is given)."""
    return web.Response()
