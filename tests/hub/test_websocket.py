"""The hub's own websocket (RFC 6455) after the handshake: frames as a hostile or fragmenting client sends them, and
an idle socket that holds nothing of aiohttp's request machinery."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestServer

from hub import keys
from hub.app import create_app
from hub.realtime.engine import Outbound
from hub.realtime.websocket import LINGER_SECONDS
from tests.conftest import make_settings
from tests.eio import WebSocket

MAX_PAYLOAD = 64 * 1024


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]], sqlite_url: str) -> TestServer:
    return await aiohttp_server(create_app(make_settings(sqlite_url, socket_max_payload_bytes=MAX_PAYLOAD)))


def client_frame(payload: bytes, opcode: int = 0x1, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWs:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def frame(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next server frame (opcode, payload), or None at the end of the connection."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return head[0] & 0x0F, await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None

    async def text(self) -> str:
        while True:
            got = await self.frame()
            assert got is not None, "the connection ended"
            opcode, payload = got
            if opcode == 0x1 and payload != b"2":
                return payload.decode()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def raw(server: TestServer) -> AsyncIterator[RawWs]:
    parts = urlsplit(str(server.make_url("/")))
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    ws = RawWs(reader, writer)
    assert (await ws.text()).startswith("0{")
    ws.send(client_frame(b"40/public,"))
    assert (await ws.text()).startswith("40/public,")
    yield ws
    await ws.close()


async def _close_code(ws: RawWs) -> int | None:
    """The code of the server's close frame (skipping other frames), or None when it dropped the connection."""
    while (got := await ws.frame()) is not None:
        opcode, payload = got
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")
    return None


async def test_a_message_in_fragments_and_tcp_pieces_is_one_message(raw: RawWs) -> None:
    message = b'42/public,3["subscribe",{"room":"nope"}]'
    wire = client_frame(message[:10], 0x1, fin=False) + client_frame(message[10:25], 0x0, fin=False)
    wire += client_frame(b"", 0x9)  # a ping between the fragments
    wire += client_frame(message[25:], 0x0)
    for i in range(0, len(wire), 7):
        raw.send(wire[i : i + 7])
        await asyncio.sleep(0.01)
    frames = []
    while len(frames) < 2:
        got = await raw.frame()
        assert got is not None
        if got != (0x1, b"2"):
            frames.append(got)
    assert frames[0] == (0xA, b"")  # the pong
    assert frames[1][1].startswith(b'43/public,3[{"ok":false')


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(b"4x", masked=False), 1002),
        (client_frame(b"4x", rsv=0x40), 1002),
        (client_frame(b"x" * 200, 0x9), 1002),
        (client_frame(b"4" + b"x" * (MAX_PAYLOAD + 1)), 1009),
        (client_frame(b"\xff\xfe"), 1007),
        (client_frame(b"4x", 0x0), 1002),
        (client_frame(b"4x", 0x3), 1002),
        # RFC 6455 §5.5.1, §7.4: a close frame's body is a code a peer may send, then a UTF-8 reason
        (client_frame(b"\x03", 0x8), 1002),
        (client_frame((1005).to_bytes(2, "big"), 0x8), 1002),
        (client_frame((999).to_bytes(2, "big"), 0x8), 1002),
        (client_frame((2000).to_bytes(2, "big"), 0x8), 1002),
        (client_frame((1000).to_bytes(2, "big") + b"\xff\xfe", 0x8), 1007),
        # a frame that is fine but carries a broken Engine.IO or Socket.IO packet
        (client_frame(b"9"), 1002),
        (client_frame(b""), 1002),
        (client_frame(b'42/public,1["disconnect"]'), 1002),
    ],
    ids=[
        "unmasked",
        "reserved-bit",
        "long-ping",
        "too-big",
        "bad-utf8",
        "stray-continuation",
        "unknown-opcode",
        "close-one-byte",
        "close-reserved-code",
        "close-code-below-1000",
        "close-unassigned-code",
        "close-bad-utf8-reason",
        "unknown-engineio-packet",
        "empty-engineio-packet",
        "reserved-event-name",
    ],
)
async def test_a_broken_frame_ends_the_connection(raw: RawWs, wire: bytes, code: int) -> None:
    raw.send(wire)
    # the close frame always arrives, even while the client is still sending (RFC 6455 §7.1.1): the server stops
    # sending, reads and drops the rest, and closes once the client has
    assert await _close_code(raw) == code
    assert await raw.frame() is None


async def test_a_message_over_the_limit_gets_1009_while_the_client_still_sends(raw: RawWs) -> None:
    for _ in range(10):
        raw.send(client_frame(b"4" + b"x" * (4 * MAX_PAYLOAD)))  # far more than the server reads before refusing
    assert await _close_code(raw) == 1009
    assert await raw.frame() is None


async def test_a_client_that_never_closes_its_side_is_dropped_after_the_linger(raw: RawWs) -> None:
    raw.send(client_frame(b"9"))
    assert await _close_code(raw) == 1002
    started = asyncio.get_running_loop().time()
    assert await raw.frame(timeout=LINGER_SECONDS + 3) is None
    assert asyncio.get_running_loop().time() - started < LINGER_SECONDS + 1


@pytest.mark.parametrize("body", [(1000).to_bytes(2, "big"), b"", (4000).to_bytes(2, "big") + "au revoir é".encode()])
async def test_a_close_frame_is_answered_and_ends_the_session(raw: RawWs, server: TestServer, body: bytes) -> None:
    engine = server.app[keys.sio].eio
    assert len(engine.sockets) == 1
    raw.send(client_frame(body, 0x8))
    assert await _close_code(raw) == (int.from_bytes(body[:2], "big") if body else 1000)  # the code echoed
    await asyncio.sleep(0.1)
    assert not engine.sockets


async def test_an_event_written_as_the_peer_closes_is_refused_not_raised(raw: RawWs, server: TestServer) -> None:
    """A browser closing its tab: its close frame is answered (the sending side shut) and the session's close is
    scheduled. An event delivered to the socket in between (the same turn of the loop, from the Redis pub/sub
    connection's reader) is refused: raised, it closed that Redis connection and lost the platform's events."""
    engine = server.app[keys.sio].eio
    [socket] = engine.sockets.values()
    assert socket.ws is not None
    on_close, outcomes = socket.ws.on_close, []

    def closing() -> None:
        on_close()
        try:
            outcomes.append(socket.write(Outbound('42/public,["cartsnitch.prices.updated",{}]')))
        except Exception as exc:
            outcomes.append(exc)

    socket.ws.on_close = closing
    raw.send(client_frame((1001).to_bytes(2, "big"), 0x8))  # "going away", as a closing tab sends
    assert await _close_code(raw) == 1001
    assert outcomes == [False]


async def test_an_idle_websocket_keeps_no_request_task_or_http_protocol(server: TestServer) -> None:
    import aiohttp

    engine = server.app[keys.sio].eio
    assert server.runner is not None
    tasks_before = len(asyncio.all_tasks())
    async with aiohttp.ClientSession() as http:
        sockets = [await WebSocket.open(http, str(server.make_url("/"))) for _ in range(50)]
        for ws in sockets:
            await ws.send("40/public,")
            await ws.receive_skipping_pings()
        await asyncio.sleep(0.2)
        assert len(engine.sockets) == 50
        # the client's own reader tasks aside, the server holds no task and no aiohttp connection per socket
        server_connections = server.runner.server.connections if server.runner.server else []
        assert len(server_connections) == 0
        assert len(asyncio.all_tasks()) - tasks_before <= 50 + 2
        for ws in sockets:
            await ws.close()
