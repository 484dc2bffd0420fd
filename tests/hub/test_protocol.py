"""Engine.IO v4 and Socket.IO v5 conformance, written from the specifications (``socketio/engine.io-protocol`` and
``socketio/socket.io-protocol``, their READMEs and test suites) and run on both transports with bare clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from hub.app import create_app
from tests.cluster import abandoned_get, start_hub, stop_hubs
from tests.conftest import make_settings
from tests.eio import PATH, RS, Polling, WebSocket

PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2
CONNECT_TIMEOUT = 1.0
MAX_PAYLOAD = 64 * 1024
TRANSPORTS = ("polling", "websocket")


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]], sqlite_url: str) -> TestServer:
    settings = make_settings(
        sqlite_url,
        socket_ping_interval_seconds=PING_INTERVAL,
        socket_ping_timeout_seconds=PING_TIMEOUT,
        socket_connect_timeout_seconds=CONNECT_TIMEOUT,
        socket_max_payload_bytes=MAX_PAYLOAD,
    )
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def calm_server(aiohttp_server: Callable[..., Awaitable[TestServer]], sqlite_url: str) -> TestServer:
    """The default heartbeat (25 s), for tests that pause longer than the fast one allows."""
    return await aiohttp_server(create_app(make_settings(sqlite_url)))


def base(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")


class HandWrittenPost:
    """A polling POST written on a connection of its own: its headers as given (none added, Content-Type
    included), its body sent in as many pieces as the test chooses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, polling: Polling, headers: str, first: bytes) -> HandWrittenPost:
        parts = urlsplit(polling.base)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        post = cls(reader, writer)
        head = f"POST {PATH}?EIO=4&transport=polling&sid={polling.sid} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        await post.send(f"{head}{headers}\r\n\r\n".encode() + first)
        return post

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer_head(self) -> bytes:
        """The status line and headers of the answer; the connection is closed after them."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        return head


class Session:
    """A Socket.IO-level view of either transport: send packets, read packets (pings answered)."""

    def __init__(self, polling: Polling | None = None, ws: WebSocket | None = None) -> None:
        self.polling = polling
        self.ws = ws
        self._buffer: list[str] = []

    @classmethod
    async def open(cls, transport: str, http: aiohttp.ClientSession, url: str) -> Session:
        if transport == "polling":
            return cls(polling=await Polling(http, url).open())
        return cls(ws=await WebSocket.open(http, url))

    @property
    def handshake(self) -> dict[str, Any]:
        return self.polling.handshake if self.polling else self.ws.handshake  # type: ignore[union-attr]

    async def send(self, packet: str) -> None:
        if self.polling is not None:
            status, body = await self.polling.post(packet)
            assert (status, body) == (200, "ok"), (status, body)
        else:
            assert self.ws is not None
            await self.ws.send(packet)

    async def send_breaking(self, packet: str) -> None:
        """Send a packet the server is expected to refuse (a polling POST of it may be answered 400)."""
        if self.polling is not None:
            await self.polling.post(packet)
        else:
            await self.send(packet)

    async def join_public(self) -> None:
        await self.send("40/public,")
        assert (await self.next()).startswith("40/public,{")

    async def call(self, ack_id: int, event: str) -> Any:
        """Send ``event`` (a JSON array) to ``/public`` with an ack id; the ack's first argument."""
        await self.send(f"42/public,{ack_id}{event}")
        ack = await self.next()
        prefix = f"43/public,{ack_id}"
        assert ack.startswith(prefix + "["), ack
        return json.loads(ack[len(prefix) :])[0]

    async def next(self, timeout: float = 5.0) -> str:
        """The next packet other than a ping (pings are answered) within ``timeout``."""
        async with asyncio.timeout(timeout):
            return await self._next(timeout)

    async def _next(self, timeout: float) -> str:
        while True:
            if not self._buffer:
                if self.polling is not None:
                    self._buffer = await self.polling.packets(timeout)
                else:
                    assert self.ws is not None
                    data = await self.ws.receive(timeout)
                    assert isinstance(data, str), data
                    self._buffer = [data]
            packet = self._buffer.pop(0)
            if packet == "2":
                await self.send("3")
                continue
            return packet

    async def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the server ended the session: a close packet then 400 (polling), or a closed websocket."""
        try:
            async with asyncio.timeout(timeout):
                if self.ws is not None:
                    while (data := await self.ws.receive(timeout)) is not None:
                        if data == "2":
                            await self.ws.send("3")
                    return True
                assert self.polling is not None
                while True:
                    status, body = await self.polling.get(timeout)
                    if status == 400:
                        return True
                    if "1" in body.split(RS):
                        status, _ = await self.polling.get(timeout)
                        return status == 400
                    if "2" in body.split(RS):
                        await self.polling.post("3")
        except TimeoutError:
            return False

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def sessions(http: aiohttp.ClientSession) -> AsyncIterator[list[Session]]:
    made: list[Session] = []
    yield made
    for session in made:
        await session.close()


async def open_session(sessions: list[Session], transport: str, http: aiohttp.ClientSession, url: str) -> Session:
    session = await Session.open(transport, http, url)
    sessions.append(session)
    return session


# --- Engine.IO: handshake -----------------------------------------------------------------------------------


async def test_polling_handshake_has_exactly_the_specified_fields(server: TestServer, http: Any) -> None:
    polling = await Polling(http, base(server)).open()
    assert set(polling.handshake) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert polling.handshake["upgrades"] == ["websocket"]
    assert polling.handshake["pingInterval"] == PING_INTERVAL * 1000
    assert polling.handshake["pingTimeout"] == PING_TIMEOUT * 1000
    assert polling.handshake["maxPayload"] == MAX_PAYLOAD


async def test_websocket_handshake_offers_no_upgrade(server: TestServer, http: Any) -> None:
    ws = await WebSocket.open(http, base(server))
    assert set(ws.handshake) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert ws.handshake["upgrades"] == []
    await ws.close()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("transport=polling", 5),
        ("EIO=abc&transport=polling", 5),
        ("EIO=3&transport=polling", 5),
        ("EIO=4", 0),
        ("EIO=4&transport=abc", 0),
        ("EIO=4&transport=polling&j=0", 3),  # JSONP: Engine.IO v3's, not v4's
    ],
)
async def test_bad_handshake_query_is_400(server: TestServer, http: Any, query: str, code: int) -> None:
    async with http.get(f"{base(server)}{PATH}?{query}") as response:
        assert response.status == 400
        assert (await response.json())["code"] == code


@pytest.mark.parametrize("query", ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4&transport=abc"])
async def test_bad_websocket_handshake_is_refused(server: TestServer, http: Any, query: str) -> None:
    url = base(server).replace("http", "ws") + f"{PATH}?{query}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url)
    assert refused.value.status == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_handshake_with_another_method_is_400(server: TestServer, http: Any, method: str) -> None:
    async with http.request(method, f"{base(server)}{PATH}?EIO=4&transport=polling") as response:
        assert response.status == 400


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_unsupported_method_on_a_session_is_400(server: TestServer, http: Any, method: str) -> None:
    polling = await Polling(http, base(server)).open()
    async with http.request(method, polling.url) as response:
        assert response.status == 400


async def test_unknown_sid_is_400(server: TestServer, http: Any) -> None:
    async with http.get(f"{base(server)}{PATH}?EIO=4&transport=polling&sid=nope") as response:
        assert response.status == 400
        assert await response.json() == {"code": 1, "message": "Session ID unknown"}


# --- Engine.IO: messages ------------------------------------------------------------------------------------


async def test_polling_post_carries_several_packets(server: TestServer, http: Any) -> None:
    polling = await Polling(http, base(server)).open()
    assert await polling.post(f"40/public,{RS}6{RS}41/public,{RS}40/public,") == (200, "ok")
    packets = [p for p in await polling.packets() if p != "2"]
    assert [p[:10] for p in packets] == ["40/public,", "40/public,"]


async def test_polling_post_in_two_slow_pieces_is_read_whole(calm_server: TestServer, http: Any) -> None:
    server = calm_server
    polling = await Polling(http, base(server)).open()
    body = b'40/public,\x1e42/public,1["subscribe",{"room":"nope"}]'
    post = await HandWrittenPost.open(
        polling, f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}", body[:20]
    )
    await asyncio.sleep(0.5)
    await post.send(body[20:])
    head = await post.answer_head()
    assert head.startswith(b"HTTP/1.1 200"), head
    packets = [p for p in await polling.packets() if p != "2"]
    packets += [] if len(packets) == 2 else [p for p in await polling.packets() if p != "2"]
    assert packets[0].startswith("40/public,{")
    assert packets[1].startswith('43/public,1[{"ok":false')


async def test_polling_post_over_the_payload_limit_is_413(server: TestServer, http: Any) -> None:
    polling = await Polling(http, base(server)).open()
    status, _ = await polling.post("4" + "x" * MAX_PAYLOAD)
    assert status == 413
    assert (await polling.get())[0] == 400


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_invalid_packet_closes_the_session(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    if session.polling is not None:
        assert (await session.polling.post("abc"))[0] == 400
        assert (await session.polling.get())[0] == 400
    else:
        await session.send("abc")
        assert await session.is_closed()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stray_upgrade_or_noop_packet_is_ignored_as_the_reference_server_does(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    for packet in ("5", "6", "5probe", "6x"):
        await session.send(packet)
    await session.send("40/public,")
    assert (await session.next()).startswith("40/public,")


async def test_overlapping_polls_close_the_session(server: TestServer, http: Any) -> None:
    polling = await Polling(http, base(server)).open()
    first = asyncio.ensure_future(polling.get())
    await asyncio.sleep(0.05)
    status, _ = await polling.get()
    assert status == 400
    assert await first == (200, "1")
    assert (await polling.get())[0] == 400


async def test_overlapping_posts_close_the_session(calm_server: TestServer, http: Any) -> None:
    """v4 "Sending data": one POST at a time; a second one is answered 400 and the session closes (a POST whose
    body arrives slowly is still pending when the second one comes)."""
    polling = await Polling(http, base(calm_server)).open()
    post = await HandWrittenPost.open(polling, "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 10", b"40/p")
    await asyncio.sleep(0.2)
    assert await polling.post("6") == (400, '{"code":3,"message":"Overlapping post"}')
    await post.send(b"ublic,")
    await post.answer_head()
    assert (await polling.get())[0] == 400


async def test_a_binary_polling_body_closes_the_session(server: TestServer, http: Any) -> None:
    """v4 polling carries binary as base64 text; an ``application/octet-stream`` body is v3's and refused (a body
    sent with no Content-Type at all is read as text, as the reference server reads it)."""
    polling = await Polling(http, base(server)).open()
    post = await HandWrittenPost.open(polling, "Content-Length: 10", b"40/public,")
    assert (await post.answer_head()).startswith(b"HTTP/1.1 200")
    assert any(packet.startswith("40/public,{") for packet in await polling.packets())
    async with http.post(
        polling.url, data=b"40/public,", headers={"Content-Type": "application/octet-stream"}
    ) as response:
        assert response.status == 400
    assert (await polling.get())[0] == 400


@pytest.fixture
async def process_url(sqlite_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A real ``serve`` process: aiohttp's test server cancels a handler whose client goes away, ``serve`` does not
    (as in production), and what a poll does when its client is gone differs between the two."""
    hub = await start_hub(make_settings(sqlite_url), tmp_path / "hub.log")
    try:
        yield hub.url
    finally:
        await stop_hubs([hub])


async def _public_polling(http: Any, url: str) -> Polling:
    polling = await Polling(http, url).open()
    await polling.post("40/public,")
    assert (await polling.packets())[0].startswith("40/public,{")
    return polling


async def test_what_an_abandoned_poll_was_due_waits_for_the_next_poll(process_url: str, http: Any) -> None:
    polling = await _public_polling(http, process_url)
    await abandoned_get(process_url, polling.url.removeprefix(process_url))
    assert await polling.post('42/public,7["subscribe",{"room":"nope"}]') == (200, "ok")
    assert (await polling.packets(timeout=5))[0].startswith('43/public,7[{"ok":false')


async def test_a_poll_after_an_abandoned_one_takes_its_place(process_url: str, http: Any) -> None:
    polling = await _public_polling(http, process_url)
    await abandoned_get(process_url, polling.url.removeprefix(process_url))
    pending = asyncio.ensure_future(polling.get(timeout=5))
    await asyncio.sleep(0.1)
    assert await polling.post('42/public,8["subscribe",{"room":"nope"}]') == (200, "ok")
    status, text = await pending
    assert status == 200 and text.startswith('43/public,8[{"ok":false'), text


# --- Engine.IO: heartbeat -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_pings_at_the_interval_and_a_pong_keeps_the_session(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(3):
        if session.polling is not None:
            assert await session.polling.get() == (200, "2")
            assert await session.polling.post("3") == (200, "ok")
        else:
            assert session.ws is not None
            assert await session.ws.receive() == "2"
            await session.ws.send("3")
    elapsed = loop.time() - started
    assert 3 * PING_INTERVAL * 0.9 <= elapsed < 3 * PING_INTERVAL + 1.0, elapsed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_missing_pong_closes_the_session(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    await session.send("40/public,")  # joined, so only the heartbeat can end it
    await asyncio.sleep(PING_INTERVAL + PING_TIMEOUT + 0.2)
    if session.polling is not None:
        assert (await session.polling.get())[0] == 400
    else:
        assert session.ws is not None
        assert await session.ws.closed(1.0)


# --- Engine.IO: close and upgrade ---------------------------------------------------------------------------


async def test_client_close_ends_the_pending_poll_with_a_noop(server: TestServer, http: Any) -> None:
    polling = await Polling(http, base(server)).open()
    pending = asyncio.ensure_future(polling.get())
    await asyncio.sleep(0.05)
    assert await polling.post("1") == (200, "ok")
    assert await pending == (200, "6")
    assert (await polling.get())[0] == 400


async def test_client_close_ends_a_websocket_session(server: TestServer, http: Any) -> None:
    ws = await WebSocket.open(http, base(server))
    await ws.send("1")
    assert await ws.closed()


async def test_upgrade_ends_the_pending_poll_with_a_noop_then_polling_is_refused(server: TestServer, http: Any) -> None:
    polling = await Polling(http, base(server)).open()
    await polling.post("40/public,")
    assert (await polling.packets())[0].startswith("40/public,{")
    ws = await WebSocket.open(http, base(server), polling.sid)
    await ws.send("2probe")
    assert await ws.receive() == "3probe"
    assert await polling.get() == (200, "6")
    await ws.send("5")
    await asyncio.sleep(0.05)
    assert (await polling.get())[0] == 400
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await WebSocket.open(http, base(server), polling.sid)  # a second websocket for the upgraded session
    await ws.send('42/public,7["subscribe",{"room":"nope"}]')
    assert (await ws.receive_skipping_pings()).startswith('43/public,7[{"ok":false')  # type: ignore[union-attr]
    await ws.close()


# --- Socket.IO ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connect_to_the_public_namespace(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    await session.send("40/public,")
    packet = await session.next()
    assert packet.startswith("40/public,")
    assert set(json.loads(packet[len("40/public,") :])) == {"sid"}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("namespace", ["/random", "/", "/users/", "/users/a b"])
async def test_unknown_namespace_is_an_invalid_namespace_error(
    server: TestServer, http: Any, sessions: list[Session], transport: str, namespace: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    await session.send("40" + (namespace + "," if namespace != "/" else ""))
    prefix = "" if namespace == "/" else namespace + ","
    assert await session.next() == "44" + prefix + '{"message":"Invalid namespace"}'


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_namespace_with_a_query_string_is_one_nobody_serves(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    # v5 namespaces carry no query (v4's did, and python-socketio still strips it)
    session = await open_session(sessions, transport, http, base(server))
    await session.send("40/public?x=1,")
    assert await session.next() == '44/public?x=1,{"message":"Invalid namespace"}'


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_event_named_by_a_number_is_answered_as_unknown(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    # the reference parser allows a number as an event's name
    session = await open_session(sessions, transport, http, base(server))
    await session.join_public()
    assert (await session.call(7, "[1,{}]"))["problem"]["detail"] == "unknown event '1'"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_event_with_ack_and_disconnect(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    await session.join_public()
    answer = await session.call(456, '["subscribe",{"room":"nope"}]')
    assert answer["ok"] is False and answer["problem"]["status"] == 404
    await session.send("41/public,")
    # an event for a namespace the client has left does not fit the session's state: the reference server ends
    # the connection, and so does the hub
    await session.send_breaking('42/public,457["subscribe",{"room":"nope"}]')
    assert await session.is_closed()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "packet",
    [
        "4abc",
        "42/public,{}",
        '42/public,abc["subscribe",{}]',
        "49/public,",
        '40/public,"x"',
        "40/public,[1]",
        "40,123",
        # Socket.IO v5 (the reference parser's isPayloadValid): a CONNECT carries an object or nothing, a DISCONNECT
        # nothing, an event is not named after the server's lifecycle, an ack is an array
        "40/public,null",
        '41/public,{"x":1}',
        '42/public,1["disconnect"]',
        '42/public,["connect",{"token":"x"}]',
        '42/public,["connect_error"]',
        '42/public,["newListener"]',
        '43/public,1{"x":1}',
        # a binary packet announces how many attachments follow
        '45/public,["subscribe",{}]',
        # a CONNECT to a namespace already joined, an ack for one not joined
        "40/public,",
        '43/users/x,1["x"]',
    ],
)
async def test_invalid_socketio_packet_closes_the_connection(
    server: TestServer, http: Any, sessions: list[Session], transport: str, packet: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    await session.join_public()
    await session.send_breaking(packet)
    assert await session.is_closed()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_session_that_joins_no_namespace_is_closed_after_the_connect_timeout(
    server: TestServer, http: Any, sessions: list[Session], transport: str
) -> None:
    session = await open_session(sessions, transport, http, base(server))
    started = asyncio.get_running_loop().time()
    assert await session.is_closed(CONNECT_TIMEOUT + 2)
    assert asyncio.get_running_loop().time() - started >= CONNECT_TIMEOUT * 0.9


async def _public_websocket(server: TestServer, http: Any) -> WebSocket:
    """A websocket session that has joined /public (for packets a Session would not send: raw bytes)."""
    ws = await WebSocket.open(http, base(server))
    await ws.send("40/public,")
    await ws.receive_skipping_pings()
    return ws


async def test_binary_event_with_attachment_is_handled(server: TestServer, http: Any) -> None:
    ws = await _public_websocket(server, http)
    await ws.send('451-/public,9["subscribe",{"_placeholder":true,"num":0}]')
    await ws.send(b"\x01\x02\x03")
    ack = await ws.receive_skipping_pings()
    assert isinstance(ack, str) and ack.startswith('43/public,9[{"ok":false')
    await ws.close()


async def test_a_binary_event_announcing_no_attachment_is_handled_at_once(server: TestServer, http: Any) -> None:
    ws = await _public_websocket(server, http)
    await ws.send('450-/public,9["subscribe",{"room":"nope"}]')
    ack = await ws.receive_skipping_pings()
    assert isinstance(ack, str) and ack.startswith('43/public,9[{"ok":false')
    await ws.close()


async def test_text_where_an_attachment_is_due_closes_the_connection(server: TestServer, http: Any) -> None:
    # python-socketio would take the text for the attachment (and the event in it would be lost)
    ws = await _public_websocket(server, http)
    await ws.send('452-/public,1["subscribe",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    await ws.send(b"\x01")
    await ws.send('42/public,2["subscribe",{"room":"nope"}]')
    assert await ws.closed(2.0)


@pytest.mark.parametrize(
    "frames",
    [
        ['4599999-/public,["x",{"_placeholder":true,"num":0}]'],
        ['4510-/public,["x",{"_placeholder":true,"num":0}]', *([b"y" * 16_000] * 5)],
    ],
    ids=["announces-too-many", "attachments-over-the-payload-limit"],
)
async def test_binary_attachments_are_bounded(server: TestServer, http: Any, frames: list[Any]) -> None:
    ws = await _public_websocket(server, http)
    for frame in frames:
        await ws.send(frame)
    assert await ws.closed(2.0)


def test_the_heartbeat_timer_runs_on_uvloop_with_a_deadline_already_past() -> None:
    """``serve`` runs on uvloop, whose handle for a time already past is not a timer handle: the heartbeat must not
    depend on what the loop's handle can tell (a busy loop made every pong fail and its socket close)."""
    import uvloop

    from hub.realtime.engine import EngineSocket, LeanEngine

    async def main() -> list[str]:
        engine = LeanEngine(ping_interval=0.05, ping_timeout=0.05, connect_timeout=0.05)
        closed: list[str] = []

        async def disconnect(sid: str, reason: str) -> None:
            closed.append(sid)

        engine.on("disconnect", disconnect)
        now = asyncio.get_running_loop().time()
        joined, idle = EngineSocket(engine, "joined", {}, "a"), EngineSocket(engine, "idle", {}, "a")
        joined.joined = True
        engine.sockets.update({"joined": joined, "idle": idle})
        engine._schedule(engine._joins, (now - 1.0, joined))
        engine._schedule(engine._joins, (now - 0.5, idle))  # compared with the first one's handle
        engine._pong(joined)
        await asyncio.sleep(0.1)
        return closed

    assert uvloop.run(main()) == ["idle"]
