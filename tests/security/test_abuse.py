"""Abuse, tried as an attacker would: limits that do not reset on reconnect, connection caps, slow and hostile
clients, floods of bad packets, credentials in logs, NUL characters, the database file's mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
import socketio
from aiohttp.test_utils import TestServer

from hub import keys
from hub.app import MAX_HEADERS, MAX_REQUEST_TARGET, create_app
from hub.settings import Settings
from tests import factories
from tests.cluster import start_hub, stop_hubs
from tests.conftest import make_settings
from tests.eio import WebSocket

Make = Callable[..., Awaitable[TestServer]]


async def _server(aiohttp_server: Make, settings: Settings, **overrides: Any) -> TestServer:
    server: TestServer = await aiohttp_server(create_app(settings.with_overrides(**overrides)))
    return server


async def test_the_inbound_event_limit_survives_reconnects(aiohttp_server: Make, settings: Settings) -> None:
    server = await _server(aiohttp_server, settings, socket_inbound_events_per_second=5.0, socket_inbound_burst=10)
    served = 0
    started = time.monotonic()
    for _ in range(10):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(str(server.make_url("/")), namespaces=["/public"], transports=["websocket"])
        for _ in range(40):
            try:
                # the server cuts a client off once it sends on after its 429s; the call then waits out its timeout
                # (short: the assertion below is an upper bound, which an early timeout cannot break)
                ack = await client.call("unsubscribe", {"room": "inflation"}, namespace="/public", timeout=0.5)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                break  # cut off for sending on after being told to slow down
            served += ack["ok"]
        await client.disconnect()
    elapsed = time.monotonic() - started
    # one budget for the address: the burst, then the rate (a per-connection budget would serve 10 bursts)
    assert served <= 10 + 5 * elapsed + 1, (served, elapsed)


async def test_connect_attempts_are_rate_limited_per_address(aiohttp_server: Make, settings: Settings) -> None:
    server = await _server(aiohttp_server, settings, socket_connects_per_second=2.0, socket_connect_burst=5)
    answers = []
    async with aiohttp.ClientSession() as http:
        ws = await WebSocket.open(http, str(server.make_url("/")))
        for _ in range(12):
            await ws.send("40/public,")
            packet = await ws.receive_skipping_pings()
            answers.append(packet)
            if isinstance(packet, str) and packet.startswith("40/public,"):
                await ws.send("41/public,")
        await ws.close()
    refused = [p for p in answers if isinstance(p, str) and p.startswith("44/public,")]
    assert 5 <= len(answers) - len(refused) <= 7
    assert refused and '"status":429' in refused[0]


async def test_a_user_has_a_connection_cap(aiohttp_server: Make, settings: Settings) -> None:
    server = await _server(aiohttp_server, settings, socket_max_connections_per_user=3)
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    token = await factories.access_token(server.app, user.id)
    namespace = f"/users/{user.id}"
    clients = []
    for _ in range(3):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            str(server.make_url("/")), namespaces=[namespace], auth={"token": token}, transports=["websocket"]
        )
        clients.append(client)
    extra = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    extra.on("connect_error", errors.append, namespace=namespace)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await extra.connect(
            str(server.make_url("/")), namespaces=[namespace], auth={"token": token}, transports=["websocket"]
        )
    assert errors[0]["data"]["status"] == 429
    async with aiohttp.ClientSession() as http:
        stream = await http.get(
            server.make_url("/api/v1/me/events/stream"), headers={"Authorization": f"Bearer {token}"}
        )
        assert stream.status == 429
        assert stream.headers["Content-Type"].startswith("application/problem+json")
    await clients[0].disconnect()
    await asyncio.sleep(0.1)
    again = socketio.AsyncClient(reconnection=False)
    await again.connect(
        str(server.make_url("/")), namespaces=[namespace], auth={"token": token}, transports=["websocket"]
    )
    for client in [*clients[1:], again, extra]:
        await client.disconnect()


async def test_an_address_has_a_session_cap(aiohttp_server: Make, settings: Settings) -> None:
    server = await _server(aiohttp_server, settings, socket_max_connections_per_address=3)
    base = str(server.make_url("/"))
    async with aiohttp.ClientSession() as http:
        sessions = [await WebSocket.open(http, base) for _ in range(3)]
        async with http.get(base + "socket.io/?EIO=4&transport=polling") as refused:
            assert refused.status == 429
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await WebSocket.open(http, base)
        await sessions[0].close()
        await asyncio.sleep(0.1)
        sessions[0] = await WebSocket.open(http, base)
        for ws in sessions:
            await ws.close()


async def test_slow_header_clients_are_cut_off(aiohttp_server: Make, settings: Settings) -> None:
    server = await _server(aiohttp_server, settings, http_header_timeout_seconds=1.0)
    parts = urlsplit(str(server.make_url("/")))

    async def slowloris() -> float:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        started = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(20):
                await asyncio.sleep(0.25)
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                if reader.at_eof():
                    break
            await asyncio.wait_for(reader.read(), 2)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return time.monotonic() - started

    durations = await asyncio.gather(*(slowloris() for _ in range(50)))
    assert max(durations) < 2.5, max(durations)


async def test_bad_event_names_close_the_connection_without_logging_errors(
    aiohttp_server: Make, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _server(aiohttp_server, settings)
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            ws = await WebSocket.open(http, str(server.make_url("/")))
            await ws.send("40/public,")
            await ws.receive_skipping_pings()
            await ws.send('42/public,[{"a":1},"x"]')
            assert await ws.closed(2.0)
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_an_attachment_flood_ends_at_the_payload_limit(aiohttp_server: Make, settings: Settings) -> None:
    server = await _server(aiohttp_server, settings)
    async with aiohttp.ClientSession() as http:
        ws = await WebSocket.open(http, str(server.make_url("/")))
        await ws.send("40/public,")
        await ws.receive_skipping_pings()
        await ws.send('4510-/public,["x",' + ",".join(f'{{"_placeholder":true,"num":{i}}}' for i in range(10)) + "]")
        sent = await _flood(ws, b"\0" * 60_000, 1500)
        # the socket was dropped once the attachments passed the 64 KiB payload limit, not after 1,500 frames
        assert sent < 50


async def _flood(ws: WebSocket, frame: bytes, count: int) -> int:
    """Send ``frame`` up to ``count`` times; how many went out before the server closed the connection."""
    for sent in range(count):
        try:
            await ws.send(frame)
        except (ConnectionError, aiohttp.ClientError):
            return sent
        await asyncio.sleep(0.001)
    return count


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a\u0000@example.com", "password": "longenough1"},
        {"email": "nul@example.com", "password": "longenough1", "display_name": "x\u0000y"},
    ],
)
async def test_nul_characters_are_a_422(client: Any, body: dict[str, Any]) -> None:
    response = await client.post("/auth/register", json=body)
    assert response.status == 422, await response.text()
    assert (await response.json())["errors"][0]["type"] == "string_nul"
    search = await client.get("/api/v1/public/store-comparison", params={"category": "x\u0000"})
    assert search.status == 422


async def test_the_embedded_database_file_is_private(tmp_path: Path) -> None:
    from hub.store.engine import build_engine
    from hub.store.migrate import upgrade

    path = tmp_path / "new" / "hub.db"
    engine = build_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for extra in ("-wal", "-shm"):
        sidecar = Path(str(path) + extra)
        if sidecar.exists():
            assert stat.S_IMODE(os.stat(sidecar).st_mode) & 0o077 == 0


@pytest.mark.slow
async def test_a_real_process_answers_malformed_http_with_problems_and_logs_no_credential(
    sqlite_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "hub.log"
    hub = await start_hub(make_settings(sqlite_url), log, CARTSNITCH_LOG_LEVEL="INFO")
    try:
        token = "SECRETSESSIONTOKEN" * 3
        parts = urlsplit(hub.url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        cookie = f"better-auth.session_token={token}.sig; pad=" + "x" * 20_000
        writer.write(f"GET /auth/me HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        # RFC 6585 §5: a header field over the limit is a 431
        assert response.split(b"\r\n", 1)[0].split(b" ")[1] == b"431", response[:200]
        assert b"Server: cartsnitch-hub" in response
        assert b"application/problem+json" in response
        assert token.encode() not in response
        assert orjson.loads(response.partition(b"\r\n\r\n")[2])["status"] == 431

        async def raw(request: bytes) -> tuple[int, dict[str, Any]]:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            assert status == 200 or b"application/problem+json" in head, head
            return status, orjson.loads(body)

        # RFC 9112 §3: a request target longer than the server parses is a 414; one at the limit is served
        longest = b"/health?" + b"a" * (MAX_REQUEST_TARGET - len(b"/health?"))
        close = b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        status, problem = await raw(b"GET " + longest + b"a" + close)
        assert (status, problem["status"], problem["title"]) == (414, 414, "URI too long")
        assert (await raw(b"GET " + longest + close))[0] == 200
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
        status, problem = await raw(b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert (status, problem["status"], problem["title"]) == (431, 431, "Request header fields too large")
        # RFC 9110 §9.1: a method the server does not implement is 501
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n")
        unknown = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = unknown.partition(b"\r\n\r\n")
        assert head.split(b"\r\n", 1)[0].split(b" ")[1] == b"501", head
        assert b"application/problem+json" in head and orjson.loads(body)["status"] == 501
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                ws = await WebSocket.open(http, hub.url)
                await ws.send("40/public,")
                await ws.send('42/public,[{"a":1}]')
                await ws.closed(2.0)
        await asyncio.sleep(1.5)
    finally:
        await stop_hubs([hub])
    text = log.read_text()
    assert token not in text
    assert "Traceback" not in text
    assert len(text.splitlines()) < 80, text[-3000:]
