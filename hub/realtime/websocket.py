"""A websocket (RFC 6455) that owns its TCP transport once the handshake is answered.

Why not aiohttp's ``WebSocketResponse`` for every socket: a connection served by aiohttp keeps, for as long as it
lives, the request, its headers, the HTTP protocol object and parser, the handler task with its coroutine frames
and the websocket reader's queue: about half of an idle socket's memory. Here the Engine.IO server answers the
upgrade itself, hands the transport to this protocol and lets aiohttp's handler finish: an idle socket is this
small object and its transport. Frames are parsed in ``data_received`` and handed to callbacks synchronously (no
task per connection); server frames are written by the caller (unmasked, built once per event).

aiohttp's own websocket is still used when permessage-deflate is enabled (``CARTSNITCH_SOCKET_COMPRESSION``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct
from collections.abc import Callable, Mapping
from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_DATA, CLOSE_TOO_BIG, CLOSE_INTERNAL_ERROR = (
    1000,
    1002,
    1007,
    1009,
    1011,
)
LINGER_SECONDS = 2.0
"""After its close frame, how long a websocket keeps reading (and dropping) what the peer still sends, waiting for
the peer to close its end."""
log = logging.getLogger("hub.websocket")


def _sendable_close_code(code: int) -> bool:
    """A close code an endpoint may put in a close frame (RFC 6455 §7.4.1-2: not 1004-1006 or 1015, nothing below
    1000, nothing unassigned below 3000)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class HandshakeError(ValueError):
    """The request is not a valid websocket opening handshake."""


def handshake_response(headers: Mapping[str, str]) -> bytes:
    """The 101 response to a websocket opening handshake; raises HandshakeError when the request is not one."""
    if headers.get("Upgrade", "").lower() != "websocket":
        raise HandshakeError("Upgrade: websocket is missing")
    if "upgrade" not in [part.strip().lower() for part in headers.get("Connection", "").split(",")]:
        raise HandshakeError("Connection: upgrade is missing")
    if headers.get("Sec-WebSocket-Version") != "13":
        raise HandshakeError("only websocket version 13 is supported")
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64")
    except ValueError:
        raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64") from None
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324 (RFC 6455)
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\nServer: cartsnitch-hub\r\n\r\n"
    ).encode()


def frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One unmasked, unfragmented frame (what a server sends)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


def _unmask(mask: bytes, data: bytes) -> bytes:
    size = len(data)
    if not size:
        return data
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(size, "big")


class WebSocketProtocol(asyncio.Protocol):
    """The server side of one websocket, after the handshake. ``on_message(data)`` gets every text (str) and binary
    (bytes) message; ``on_close()`` is called once when the connection ends, whoever ended it."""

    __slots__ = (
        "_buffer",
        "_closed_sent",
        "_fragments",
        "_fragments_opcode",
        "_linger",
        "closed",
        "max_message",
        "on_close",
        "on_message",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        max_message: int,
        on_message: Callable[[str | bytes], Any],
        on_close: Callable[[], Any],
    ) -> None:
        self.transport = transport
        self.max_message = max_message
        self.on_message = on_message
        self.on_close = on_close
        self.closed = False
        self._closed_sent = False
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._fragments_opcode = 0
        self._linger: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # after the close frame: read and dropped (see _shut)
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        end = len(buffer)
        while not self.closed:
            if end - offset < 2:
                break
            first, second = buffer[offset], buffer[offset + 1]
            opcode = first & 0x0F
            fin = first & 0x80
            if first & 0x70 or not second & 0x80:  # reserved bits (no extension was agreed), or an unmasked frame
                self.fail(CLOSE_PROTOCOL_ERROR)
                return
            size = second & 0x7F
            head = 2
            if size == 126:
                if end - offset < 4:
                    break
                size = int.from_bytes(buffer[offset + 2 : offset + 4], "big")
                head = 4
            elif size == 127:
                if end - offset < 10:
                    break
                size = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                head = 10
            if size > self.max_message or (opcode >= CLOSE and (size > 125 or not fin)):
                self.fail(CLOSE_TOO_BIG if opcode < CLOSE else CLOSE_PROTOCOL_ERROR)
                return
            if end - offset < head + 4 + size:
                break
            mask = buffer[offset + head : offset + head + 4]
            start = offset + head + 4
            payload = _unmask(mask, buffer[start : start + size])
            offset = start + size
            try:
                self._frame(opcode, bool(fin), payload)
            except Exception:
                # a bug of ours must not pass for the client's fault in silence, nor leave the socket half open
                log.exception("handling a websocket frame failed")
                self.fail(CLOSE_INTERNAL_ERROR)
                return
        self._buffer = buffer[offset:] if offset < end else b""
        if len(self._buffer) > self.max_message + 14:
            self.fail(CLOSE_TOO_BIG)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self.closed:
            self.closed = True
            self.on_close()
        self._buffer = b""
        self._fragments = []

    def eof_received(self) -> bool:
        return False  # close the transport

    # --- frames ---------------------------------------------------------------------------------------------

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == CLOSE:
            # RFC 6455 §5.5.1, §7.4: a body is a status code a peer may send, then a UTF-8 reason
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else CLOSE_NORMAL
            if len(payload) == 1 or not _sendable_close_code(code):
                self.fail(CLOSE_PROTOCOL_ERROR)
                return
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                self.fail(CLOSE_INVALID_DATA)
                return
            self.close(code)  # echoed, as RFC 6455 §5.5.1 has it (and the reference server does)
            return
        if opcode == PING:
            self.transport.write(frame(payload, PONG))
            return
        if opcode == PONG:
            return
        if opcode == CONTINUATION:
            if not self._fragments_opcode:
                self.fail(CLOSE_PROTOCOL_ERROR)
                return
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > self.max_message:
                self.fail(CLOSE_TOO_BIG)
                return
            if not fin:
                return
            opcode, payload = self._fragments_opcode, b"".join(self._fragments)
            self._fragments, self._fragments_opcode = [], 0
        elif opcode in (TEXT, BINARY):
            if self._fragments_opcode:
                self.fail(CLOSE_PROTOCOL_ERROR)
                return
            if not fin:
                self._fragments, self._fragments_opcode = [payload], opcode
                return
        else:
            self.fail(CLOSE_PROTOCOL_ERROR)
            return
        if opcode == TEXT:
            try:
                self.on_message(payload.decode())
            except UnicodeDecodeError:
                self.fail(CLOSE_INVALID_DATA)
        else:
            self.on_message(payload)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Send a close frame and end the connection (the peer's own close frame is not awaited)."""
        if not self._closed_sent:
            self._closed_sent = True
            if not self.transport.is_closing():
                self.transport.write(frame(code.to_bytes(2, "big"), CLOSE))
                self._shut()
        if not self.closed:
            self.closed = True
            self.on_close()

    def fail(self, code: int) -> None:
        """A peer that breaks the protocol: a close frame, and nothing more it sends is handled."""
        self.close(code)

    def _shut(self) -> None:
        """Close the sending side once the close frame is out, and drop what the peer still sends until it closes
        its side (at most LINGER_SECONDS). Closing the socket with unread bytes would make the kernel reset the
        connection, and a peer still sending (a message over the limit, say) would lose the close frame and its
        code (RFC 6455 §7.1.1: the server closes the TCP connection first, cleanly)."""
        transport = self.transport
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.abort)
