"""A lean Engine.IO v4 server on aiohttp, in place of python-engineio's for python-socketio.

Why not python-engineio's own: it keeps a writer task and a queue per socket, a sleeping task per socket for
every ping, and a task per received websocket message, and it encodes every packet once per recipient. Here a
websocket write is a synchronous ``transport.write`` of a frame built once per event (server frames are unmasked,
so the same bytes go to every recipient), one task sweeps the heartbeats of every socket, and a socket whose
unsent bytes exceed a limit is dropped instead of queueing without bound. python-socketio talks to this class
through the same methods it calls on ``engineio.AsyncServer``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from engineio import packet as eio_packet
from engineio.base_server import BaseServer

log = logging.getLogger("hub.engine")

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0123456"
RECORD_SEPARATOR = "\x1e"
_TEXT, _BINARY = 0x1, 0x2
SWEEP_SECONDS = 1.0


def ws_frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One unmasked, unfragmented websocket frame (what a server sends)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


class Outbound:
    """One Engine.IO message encoded for both transports, built once and written to any number of sockets."""

    __slots__ = ("frame", "size", "text")

    def __init__(self, text: str) -> None:
        self.text = MESSAGE + text
        self.frame = ws_frame(self.text.encode())
        self.size = len(self.frame)


class EngineSocket:
    __slots__ = (
        "closed",
        "environ",
        "next_ping",
        "ping_deadline",
        "polled",
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

    def __init__(self, server: LeanEngine, sid: str, environ: dict[str, Any]) -> None:
        self.server = server
        self.sid = sid
        self.environ = environ
        self.session: dict[str, Any] | None = None
        self.ws: web.WebSocketResponse | None = None
        self.transport: asyncio.Transport | None = None
        self.ws_writer: asyncio.Queue[bytes | str | None] | None = None
        self.queue: list[str] = []
        self.queued_bytes = 0
        self.waiter: asyncio.Future[None] | None = None
        self.polled = False
        self.upgrading = False
        self.closed = False
        now = time.monotonic()
        self.next_ping = now + server.ping_interval
        self.ping_deadline = 0.0

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
        cors_credentials: bool = True,
        websocket_compression: bool = False,
        send_queue_bytes: int = 1 << 20,
        on_slow_consumer: Callable[[str], None] | None = None,
        **_ignored: Any,
    ) -> None:
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.max_http_buffer_size = int(max_http_buffer_size)
        self.cors_allowed_origins = cors_allowed_origins
        self.cors_credentials = cors_credentials
        self.websocket_compression = websocket_compression
        self.send_queue_bytes = send_queue_bytes
        self.on_slow_consumer = on_slow_consumer
        self.sockets: dict[str, EngineSocket] = {}
        self.handlers: dict[str, Handler] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._open_payload = orjson.dumps(
            {
                "upgrades": ["websocket"],
                "pingInterval": int(self.ping_interval * 1000),
                "pingTimeout": int(self.ping_timeout * 1000),
                "maxPayload": self.max_http_buffer_size,
            }
        )

    # --- the python-socketio facing API ------------------------------------------------------------------

    def on(self, event: str, handler: Handler | None = None) -> Any:
        def register(fn: Handler) -> Handler:
            self.handlers[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def attach(self, app: web.Application, engineio_path: str = "engine.io") -> None:
        path = "/" + engineio_path.strip("/") + "/"
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, path, self.handle_request)

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
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
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
        self.sockets.pop(socket.sid, None)
        waiter = socket.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if socket.ws_writer is not None:
            socket.ws_writer.put_nowait(None)
        if socket.ws is not None and not socket.ws.closed:
            self.start_background_task(socket.ws.close)
        handler = self.handlers.get("disconnect")
        if handler is not None:
            try:
                await handler(socket.sid, reason)
            except Exception:
                log.exception("disconnect handler failed")

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _cors_headers(self, request: web.Request) -> dict[str, str] | None:
        """CORS headers for an allowed origin, {} without an Origin header, None for a refused origin."""
        origin = request.headers.get("Origin")
        if origin is None:
            return {}
        allowed = self.cors_allowed_origins
        if allowed != "*" and (not allowed or origin not in allowed):
            return None
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if self.cors_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

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
        if cors is None:
            return self._error("Not an accepted origin", 4, 403)
        if request.method == "OPTIONS":
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
        sid = query.get("sid")
        is_upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if sid is None:
            if transport == "websocket":
                if not is_upgrade or request.method != "GET":
                    return self._error("Bad handshake method", 2, headers=cors)
                return await self._open_websocket(request)
            if request.method != "GET":
                return self._error("Bad handshake method", 2, headers=cors)
            return await self._open_polling(request, cors)
        socket = self.sockets.get(sid)
        if socket is None:
            return self._error("Session ID unknown", 1, headers=cors)
        if transport == "websocket":
            if not is_upgrade or socket.ws is not None:
                return self._error("Bad request", 3, headers=cors)
            return await self._upgrade(request, socket)
        if socket.ws is not None and not socket.upgrading:
            return self._error("Bad request", 3, headers=cors)
        if request.method == "GET":
            return await self._poll(socket, cors)
        return await self._post(request, socket, cors)

    def _environ(self, request: web.Request) -> dict[str, Any]:
        headers = request.headers
        environ = {
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "REMOTE_ADDR": request.remote or "",
            "HTTP_COOKIE": headers.get("Cookie", ""),
            "HTTP_AUTHORIZATION": headers.get("Authorization", ""),
            "HTTP_ORIGIN": headers.get("Origin", ""),
            "HTTP_X_FORWARDED_FOR": headers.get("X-Forwarded-For", ""),
        }
        return {key: value for key, value in environ.items() if value}

    def _new_socket(self, request: web.Request) -> EngineSocket:
        sid = self.generate_id()
        socket = EngineSocket(self, sid, self._environ(request))
        self.sockets[sid] = socket
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())
        return socket

    def _open_text(self, sid: str) -> str:
        return OPEN + '{"sid":"' + sid + '",' + self._open_payload.decode()[1:]

    async def _connected(self, socket: EngineSocket) -> bool:
        handler = self.handlers.get("connect")
        if handler is None:
            return True
        try:
            result = await handler(socket.sid, socket.environ)
        except Exception:
            log.exception("connect handler failed")
            result = False
        if result is False:
            socket.closed = True
            self.sockets.pop(socket.sid, None)
            return False
        return True

    async def _open_polling(self, request: web.Request, cors: dict[str, str]) -> web.Response:
        socket = self._new_socket(request)
        if not await self._connected(socket):
            return self._error("Unauthorized", 4, 401, headers=cors)
        body = self._open_text(socket.sid)
        if socket.queue:
            body += RECORD_SEPARATOR + socket.take_queue()
        return web.Response(text=body, content_type="text/plain", headers=cors)

    async def _poll(self, socket: EngineSocket, cors: dict[str, str]) -> web.Response:
        if socket.waiter is not None:
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return self._error("Overlapping poll", 3, headers=cors)
        if not socket.queue and not socket.upgrading and not socket.closed:
            socket.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(socket.waiter, self.ping_interval + self.ping_timeout)
            except TimeoutError:
                pass
            finally:
                socket.waiter = None
        if socket.upgrading or socket.upgraded:
            body = NOOP
        elif socket.queue:
            body = socket.take_queue()
        elif socket.closed:
            body = CLOSE
        else:
            body = NOOP
        socket.polled = True
        return web.Response(text=body, content_type="text/plain", headers=cors)

    async def _post(self, request: web.Request, socket: EngineSocket, cors: dict[str, str]) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_http_buffer_size:
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return self._error("Payload too large", 3, 413, headers=cors)
        raw = await request.content.read(self.max_http_buffer_size + 1)
        if len(raw) > self.max_http_buffer_size:
            await self.close_socket(socket, self.reason.TRANSPORT_ERROR)
            return self._error("Payload too large", 3, 413, headers=cors)
        for text in raw.decode("utf-8", "replace").split(RECORD_SEPARATOR):
            if not await self._receive(socket, text):
                break
        return web.Response(text="ok", content_type="text/html", headers=cors)

    async def _receive(self, socket: EngineSocket, text: str | bytes) -> bool:
        """Handle one packet from the client; False when the socket is (now) closed."""
        if socket.closed:
            return False
        if isinstance(text, bytes):
            return await self._message(socket, text)
        if not text:
            return True
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
        if kind == PONG:
            socket.ping_deadline = 0.0
            return True
        if kind == CLOSE:
            await self.close_socket(socket, self.reason.CLIENT_DISCONNECT)
            return False
        if kind == NOOP:
            return True
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
            log.info("closing %s after a bad packet: %s", socket.sid, exc)
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

    async def _open_websocket(self, request: web.Request) -> web.StreamResponse:
        ws = self._websocket()
        await ws.prepare(request)
        socket = self._new_socket(request)
        self._attach_ws(socket, ws, request)
        socket.write_text(self._open_text(socket.sid))
        if not await self._connected(socket):
            await ws.close()
            return ws
        await self._read_websocket(socket, ws)
        return ws

    async def _upgrade(self, request: web.Request, socket: EngineSocket) -> web.StreamResponse:
        ws = self._websocket()
        await ws.prepare(request)
        probe = await self._next_text(ws)
        if probe != PING + "probe":
            await ws.close()
            return ws
        await ws.send_str(PONG + "probe")
        socket.upgrading = True
        waiter = socket.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        upgrade = await self._next_text(ws)
        if upgrade != UPGRADE or socket.closed:
            socket.upgrading = False
            await ws.close()
            return ws
        pending = list(socket.queue)
        socket.queue.clear()
        socket.queued_bytes = 0
        self._attach_ws(socket, ws, request)
        socket.upgrading = False
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

    # --- heartbeat ----------------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """One task for every socket's heartbeat: ping when due, close when a pong is overdue."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            for socket in list(self._due(now)):
                if socket.ping_deadline and now > socket.ping_deadline:
                    await self.close_socket(socket, self.reason.PING_TIMEOUT)
                elif now >= socket.next_ping:
                    socket.next_ping = now + self.ping_interval
                    socket.ping_deadline = now + self.ping_timeout
                    socket.write_text(PING)

    def _due(self, now: float) -> Iterator[EngineSocket]:
        for socket in self.sockets.values():
            if now >= socket.next_ping or (socket.ping_deadline and now > socket.ping_deadline):
                yield socket
