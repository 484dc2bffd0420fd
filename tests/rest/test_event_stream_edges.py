"""The REST fallbacks of the live channel at their edges: clients that go away or stop reading, tickets refused
for a reason the client may retry, ids the history cannot serve, and ids shaped to break the parser."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from channels import bus as channels_bus
from channels.events import EventType
from channels.payloads import build_envelope
from channels.publish import encode_envelope
from hub import keys
from hub.app import create_app
from hub.realtime.fanout import RedisBus
from hub.realtime.subscribers import StreamSubscriber
from hub.settings import Settings
from hub.store.engine import build_engine, build_sessionmaker
from rest import events as events_module
from tests import factories
from tests.cluster import abandoned_get, start_hub, stop_hubs, sync_payload
from tests.conftest import make_settings
from tests.sse import SseStream, stream_ticket

STREAM = "/api/v1/me/events/stream"
EVENTS = "/api/v1/me/events"


async def _publish(server: TestServer, user_id: str, n: int, first: int = 0) -> list[str]:
    """``n`` distinct events (numbered from ``first``: a repeat of one is deduplicated, not recorded)."""
    ingest = server.app[keys.ingest]
    return [
        await ingest.publish("cartsnitch.sync.progress", sync_payload(user_id, i), service="test", source="test")
        for i in range(first, first + n)
    ]


async def _serve(aiohttp_server: Any, settings: Settings) -> tuple[TestServer, Any, dict[str, str]]:
    """A test server on ``settings``, a user of it and that user's headers."""
    server = await aiohttp_server(create_app(settings))
    async with server.app[keys.sessionmaker].begin() as session:
        user = await factories.create_user(session)
    return server, user, await factories.auth_headers(server.app, user.id)


async def _first_frame(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """The resync frame a stream opens with ({id?, event, data})."""
    stream = await SseStream.open(http, url, headers)
    try:
        first = await stream.next(5)
    finally:
        stream.close()
    assert first is not None and first["event"] == "cartsnitch.resync", first
    return first


async def _first_resync(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> str:
    """The reason of the resync a stream opens with."""
    reason: str = (await _first_frame(http, url, headers))["data"]["payload"]["reason"]
    return reason


@pytest.mark.parametrize("raw", ["\u00b2-0-x", "1-\u0663-abc", "1-0-\u00e9"])
async def test_an_id_in_foreign_digits_is_refused_like_any_bad_id(server: TestServer, user: Any, raw: str) -> None:
    headers = await factories.auth_headers(server.app, user.id)
    async with aiohttp.ClientSession() as http:
        page = await http.get(server.make_url(EVENTS), params={"after": raw}, headers=headers)
        assert page.status == 422
        assert (await page.json())["errors"][0]["field"] == "after"
        # Last-Event-ID travels as UTF-8 bytes; the stream says the id is not one it can resume from
        latin = raw.encode().decode("latin-1")
        reason = await _first_resync(http, str(server.make_url(STREAM)), {**headers, "Last-Event-ID": latin})
        assert reason == "invalid_last_event_id"


async def test_a_trimmed_position_resyncs_and_goes_on_from_the_newest_id(
    aiohttp_server: Any, settings: Settings
) -> None:
    server, user, headers = await _serve(aiohttp_server, settings.with_overrides(history_max_events=5))
    ids = await _publish(server, user.id, 300)  # Redis trims whole stream nodes (100 entries) at a time
    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(0.2)  # the embedded bus trims after recording
        page = await (await http.get(server.make_url(EVENTS), params={"after": ids[0]}, headers=headers)).json()
        assert page == {"events": [], "next": ids[-1], "resync": "history_trimmed"}
        later = await _publish(server, user.id, 1)
        following = await (
            await http.get(server.make_url(EVENTS), params={"after": page["next"]}, headers=headers)
        ).json()
        assert [event["id"] for event in following["events"]] == later


async def test_an_id_the_history_never_issued_resyncs(aiohttp_server: Any, settings: Settings) -> None:
    """On the stream too the resync says where to go on from, and is the frame's id: an EventSource that
    reconnects before the next event sends that back, not the id that needed the resync."""
    server, user, headers = await _serve(aiohttp_server, settings)
    ids = await _publish(server, user.id, 2)
    newest = channels_bus.parse_event_id(ids[-1])
    assert newest is not None
    beyond = f"{newest.ms + 3_600_000}-0-{newest.epoch}"
    async with aiohttp.ClientSession() as http:
        page = await (await http.get(server.make_url(EVENTS), params={"after": beyond}, headers=headers)).json()
        assert page == {"events": [], "next": ids[-1], "resync": "history_trimmed"}
        frame = await _first_frame(http, str(server.make_url(STREAM)), {**headers, "Last-Event-ID": beyond})
        assert frame["data"]["payload"] == {"reason": "history_trimmed", "next": ids[-1]}
        assert frame["id"] == ids[-1]
        stream = await SseStream.open(http, str(server.make_url(STREAM)), {**headers, "Last-Event-ID": frame["id"]})
        try:
            later = await _publish(server, user.id, 1, first=2)
            assert [(await stream.next(5) or {}).get("id")] == later
        finally:
            stream.close()


async def test_another_users_id_resyncs_rather_than_skipping_events(aiohttp_server: Any, settings: Settings) -> None:
    """A PWA that kept the last id of whoever used the device before: in the embedded history every audience shares
    one sequence, so bob's id falls between ann's. Resuming from it would silently skip ann's events before it."""
    server, ann, ann_headers = await _serve(aiohttp_server, settings)
    async with server.app[keys.sessionmaker].begin() as session:
        bob = await factories.create_user(session)
    unseen = await _publish(server, ann.id, 1)
    [bobs] = await _publish(server, bob.id, 1)
    later = await _publish(server, ann.id, 1, first=1)
    async with aiohttp.ClientSession() as http:
        page = await (await http.get(server.make_url(EVENTS), params={"after": bobs}, headers=ann_headers)).json()
        assert page["events"] == [] and page["resync"] in ("history_trimmed", "history_lost"), (page, unseen)
        frame = await _first_frame(http, str(server.make_url(STREAM)), {**ann_headers, "Last-Event-ID": bobs})
        assert frame["data"]["payload"]["reason"] == page["resync"]
        whole = await (await http.get(server.make_url(EVENTS), headers=ann_headers)).json()
        assert [event["id"] for event in whole["events"]] == unseen + later


async def test_a_subscriber_that_replaces_the_last_one_in_the_same_loop_turn_still_gets_live_events(
    aiohttp_server: Any, settings: Settings
) -> None:
    """A channel closing and another of the same user opening in one turn of the event loop (a page reload, an
    EventSource reconnecting): the audience emptied and filled again before the unsubscribe it scheduled ran. That
    unsubscribe, sent after the new subscription, left the new channel deaf to every live event."""
    server, user, _headers = await _serve(aiohttp_server, settings)
    hub = server.app[keys.hub]
    audience = channels_bus.user_audience(user.id)
    leaving = StreamSubscriber(audience, None, 1 << 20)
    await hub.add(leaving)
    leaving.replaying = False
    hub.remove(leaving)
    arriving = StreamSubscriber(audience, None, 1 << 20)
    await hub.add(arriving)
    arriving.replaying = False
    await asyncio.sleep(0.1)  # the scheduled unsubscribe has run
    try:
        published = await _publish(server, user.id, 1)
        async with asyncio.timeout(5):
            while not arriving.queue:
                await arriving.wake.wait()
        assert [event_id for _kind, _data, event_id in arriving.take()] == published
    finally:
        hub.remove(arriving)


async def test_an_id_given_to_a_user_who_has_no_history_resyncs_rather_than_hiding_later_events(
    aiohttp_server: Any, settings: Settings
) -> None:
    """Another user's id (one sequence for every user in the embedded default), or a forged one, from a user the
    history never gave a position: a resync with nowhere to go on from, then the events that follow."""
    server, user, headers = await _serve(aiohttp_server, settings)
    async with server.app[keys.sessionmaker].begin() as session:
        other = await factories.create_user(session)
    position = (await _publish(server, other.id, 1))[0]
    async with aiohttp.ClientSession() as http:
        page = await (await http.get(server.make_url(EVENTS), params={"after": position}, headers=headers)).json()
        assert page["events"] == [] and page["next"] is None
        assert page["resync"] in ("history_trimmed", "history_lost")  # Redis: the user's history has no epoch yet
        stream = await SseStream.open(http, str(server.make_url(STREAM)), {**headers, "Last-Event-ID": position})
        try:
            first = await stream.next(5)
            assert first is not None and first["data"]["payload"] == {"reason": page["resync"]}
            assert first["id"] == ""  # the EventSource forgets the id: a reconnect reads the history from its start
            later = await _publish(server, user.id, 3)
            assert [(await stream.next(5) or {}).get("id") for _ in later] == later
        finally:
            stream.close()


@pytest.mark.parametrize(
    "raw",
    [
        f"{1 << 63}-0-x",
        f"1-{1 << 63}-x",
        f"{1 << 64}-0-x",
        f"{(1 << 63) - 1}-{1 << 64}-x",
    ],
)
async def test_an_id_past_what_any_history_issues_is_refused_not_a_500(
    aiohttp_server: Any, settings: Settings, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's integers end at 2^63 - 1 and a Redis stream id's parts at 2^64 - 1: a larger id is a bad id (422,
    and on the stream the resync for one), not a 500 or a "history unavailable" with a traceback."""
    server, user, headers = await _serve(aiohttp_server, settings)
    ids = await _publish(server, user.id, 1)
    epoch = ids[0].rsplit("-", 1)[1]
    raw = raw.replace("-x", f"-{epoch}")
    async with aiohttp.ClientSession() as http:
        page = await http.get(server.make_url(EVENTS), params={"after": raw}, headers=headers)
        assert page.status == 422
        assert (await page.json())["errors"][0]["field"] == "after"
        reason = await _first_resync(http, str(server.make_url(STREAM)), {**headers, "Last-Event-ID": raw})
        assert reason == "invalid_last_event_id"
    assert "Traceback" not in caplog.text


async def test_a_users_stream_is_kept_out_of_caches_and_a_public_one_may_be_revalidated(
    server: TestServer, user: Any
) -> None:
    headers = await factories.auth_headers(server.app, user.id)
    async with aiohttp.ClientSession() as http:
        own = await http.get(server.make_url(STREAM), headers=headers)
        assert own.status == 200 and own.headers["Cache-Control"] == "no-store"
        own.close()
        public = await http.get(server.make_url("/api/v1/public/stream"), params={"room": "inflation"})
        assert public.status == 200 and public.headers["Cache-Control"] == "no-cache"
        public.close()


async def test_a_stream_refused_at_the_cap_leaves_its_ticket_for_the_retry(
    aiohttp_server: Any, settings: Settings
) -> None:
    server, _, headers = await _serve(aiohttp_server, settings.with_overrides(socket_max_connections_per_user=1))
    async with aiohttp.ClientSession() as http:
        holding = await SseStream.open(http, str(server.make_url(STREAM)), headers)
        url = str(server.make_url(STREAM).with_query(ticket=await stream_ticket(http, server, headers)))
        refused = await http.get(url)
        assert refused.status == 429 and refused.headers["Retry-After"]
        holding.close()
        await asyncio.sleep(0.3)
        retried = await SseStream.open(http, url)
        retried.close()
        assert (await http.get(url)).status == 401  # now it is spent


async def test_a_stream_whose_client_stops_reading_is_dropped(
    server: TestServer, user: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that keeps its connection and reads nothing: the stream ends once a write has waited
    STALL_SECONDS, and the client's leaving is not taken for a database outage."""
    monkeypatch.setattr(events_module, "STALL_SECONDS", 1.0, raising=False)
    caplog.set_level(logging.INFO)
    token = await factories.access_token(server.app, user.id)
    parts = urlsplit(str(server.make_url("/")))
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=1024)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(f"GET {STREAM} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    reader._transport.pause_reading()  # type: ignore[attr-defined]  # read nothing more
    ingest = server.app[keys.ingest]
    big = {**sync_payload(user.id, 0), "blob": "x" * 200_000}
    hub = server.app[keys.hub]
    started = time.monotonic()
    for _ in range(20):
        await ingest.publish("cartsnitch.sync.progress", big, service="test", source="test")
    while hub._channels.get(user.id) and time.monotonic() - started < 15:
        await asyncio.sleep(0.2)
    assert not hub._channels.get(user.id), "the stalled stream still holds its slot"
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    assert "unavailable" not in caplog.text


@pytest.fixture
async def process(sqlite_url: str, tmp_path: Path) -> Any:
    """A real ``serve`` process (aiohttp's test server cancels a handler whose client goes away; ``serve``, as in
    production, does not) with room for two live channels per user, and a signed-in user's headers."""
    settings = make_settings(sqlite_url)
    engine = build_engine(sqlite_url)
    async with build_sessionmaker(engine).begin() as session:
        user = await factories.create_user(session)
    await engine.dispose()
    hub = await start_hub(settings, tmp_path / "hub.log", CARTSNITCH_SOCKET_MAX_CONNECTIONS_PER_USER="2")
    try:
        async with aiohttp.ClientSession() as http:
            login = await http.post(hub.url + "/auth/login", json={"email": user.email, "password": factories.PASSWORD})
            token = (await login.json())["access_token"]
        yield hub, {"Authorization": f"Bearer {token}"}
    finally:
        await stop_hubs([hub])


@pytest.mark.parametrize("path", [STREAM, EVENTS + "?wait=30"])
async def test_an_abandoned_stream_or_long_poll_frees_its_slot_at_once(process: Any, path: str) -> None:
    hub, headers = process
    for _ in range(2):
        await abandoned_get(hub.url, path, headers)
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        while True:
            response = await http.get(hub.url + STREAM, headers=headers)
            if response.status == 200:
                response.close()
                break
            assert response.status == 429
            response.close()
            assert time.monotonic() - started < 5, "the abandoned channels still hold the user's slots"
            await asyncio.sleep(0.25)


async def test_an_embedded_history_emptied_by_age_never_gives_an_id_twice(aiohttp_server: Any, sqlite_url: str) -> None:
    """After a quiet stretch longer than the max age, trimming empties the embedded history: the next events must
    not take ids from 1 again (a client caught up to the old newest id would get none of them)."""
    server, user, headers = await _serve(aiohttp_server, make_settings(sqlite_url))
    before = await _publish(server, user.id, 3)
    history = server.app[keys.bus]
    history.max_age_seconds = -1  # type: ignore[attr-defined]
    await history.trim_by_age()  # type: ignore[attr-defined]
    after = await _publish(server, user.id, 2, first=3)
    assert not set(before) & set(after)
    async with aiohttp.ClientSession() as http:
        page = await (await http.get(server.make_url(EVENTS), params={"after": before[-1]}, headers=headers)).json()
        assert [event["id"] for event in page["events"]] == after and page["resync"] is None


async def test_ids_of_another_history_in_one_batch_or_forged_between_ones_own_resync(
    aiohttp_server: Any, settings: Settings
) -> None:
    """Histories created by one batch (a fan-out to a product's buyers, a batch of the platform's PUBLISHes) each
    get an epoch of their own: with one shared, bob's ids passed for ann's and resuming from one skipped her events
    before it. And an id with ann's epoch that falls between her ids without being one resyncs too (Redis)."""
    server, ann, ann_headers = await _serve(aiohttp_server, settings)
    async with server.app[keys.sessionmaker].begin() as session:
        bob = await factories.create_user(session)
    history = server.app[keys.bus]

    def envelope(user_id: str, n: int) -> str:
        payload = sync_payload(user_id, n)
        return encode_envelope(build_envelope(EventType.SYNC_PROGRESS, payload, service="test"))

    ann_audience, bob_audience = channels_bus.user_audience(ann.id), channels_bus.user_audience(bob.id)
    await history.record_many([(ann_audience, envelope(ann.id, 0)), (bob_audience, envelope(bob.id, 1))])
    await asyncio.sleep(0.01)
    await history.record_many([(ann_audience, envelope(ann.id, 2))])
    [(bobs, _)] = (await history.read(bob_audience, None, 10)).events
    anns = [event_id for event_id, _ in (await history.read(ann_audience, None, 10)).events]
    forged = channels_bus.EventId(anns[0].ms, anns[0].seq + 1, anns[0].epoch)
    positions = [bobs, forged] if isinstance(history, RedisBus) else [bobs]
    async with aiohttp.ClientSession() as http:
        for position in positions:
            page = await (
                await http.get(server.make_url(EVENTS), params={"after": str(position)}, headers=ann_headers)
            ).json()
            assert page["events"] == [] and page["resync"] in ("history_trimmed", "history_lost"), (position, page)
