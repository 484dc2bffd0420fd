"""The REST fallback of the socket: long-poll and Server-Sent Events over the same history, ids and envelopes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from channels import bus, rooms
from channels.bus import EventId, parse_event_id
from channels.errors import ProblemType
from channels.events import ControlEvent
from hub import keys
from hub.errors import AppError, validation_error
from hub.realtime.control import control_envelope
from hub.realtime.engine import is_open
from hub.realtime.hub import Hub
from hub.realtime.identity import unauthorized
from hub.realtime.subscribers import SHUTDOWN, StreamSubscriber
from rest import responses
from rest.api import API
from rest.auth import require_user
from rest.middleware import client_ip
from rest.openapi import RouteTable
from rest.responses import dumps
from rest.validation import parse_query

routes = RouteTable("events")
KEEPALIVE_SECONDS = 15.0
STREAM_QUEUE_BYTES = 4 << 20
GONE_CHECK_SECONDS = 1.0
"""How often a waiting stream or long-poll looks whether its client is still connected: aiohttp does not cancel a
handler whose client went away, and an abandoned one would hold its channel slot until its next write."""
STALL_SECONDS = 30.0
"""A stream whose client reads nothing for this long (a write that cannot finish) is dropped; it resumes from its
last id when it reconnects."""


class Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = Field(None, description="position in the history; absent on control events")
    event_type: str
    timestamp: str
    service: str
    payload: dict[str, Any]


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    after: str | None = Field(None, max_length=80, description="the last event id the client has")
    limit: int = Field(100, ge=1, le=500)
    wait: float = Field(0, ge=0, le=30, description="seconds to wait for an event when there is none")


class EventsPage(BaseModel):
    events: list[Envelope]
    next: str | None = Field(
        description="pass it as `after` for the following events; null after `history_lost` (or a "
        "`history_trimmed` of a history that holds nothing yet): read the history from its start (no `after`)"
    )
    resync: str | None = Field(
        None,
        description="set when `after` cannot be served: `history_trimmed` (older than the retained history, or "
        "never issued by it): reload through the REST API, then continue from `next` (the newest id); "
        "`history_lost` (the history it belonged to is gone): reload, then read the new history from its start",
    )


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    last_event_id: str | None = Field(None, max_length=80, description="resume after this id (or Last-Event-ID)")


LAST_EVENT_ID = "the last event id received; the stream resumes after it (EventSource sends it on reconnect)"


class MyStreamQuery(StreamQuery):
    ticket: str | None = Field(
        None,
        max_length=100,
        description="a stream ticket from POST /api/v1/me/events/ticket (for EventSource, which cannot send "
        "headers); without it, a bearer token or the session cookie",
    )


class PublicStreamQuery(StreamQuery):
    room: str = Field(max_length=200, description="trend:<product_id>, inflation or store-comparison")


class TicketOut(BaseModel):
    ticket: str = Field(description="single use; pass it as `ticket` to GET /api/v1/me/events/stream")
    expires_in: int = Field(description="seconds until the ticket expires unused")


def _parse_after(raw: str | None, field: str) -> EventId | None:
    if raw is None or raw == "":
        return None
    event_id = parse_event_id(raw)
    if event_id is None:
        raise validation_error(
            [{"field": field, "message": "is not an event id this hub issued", "type": "value_error"}]
        )
    return event_id


@routes.get(
    f"{API}/me/events",
    summary="Events after an id (long-polls up to `wait` seconds when there are none)",
    query=EventsQuery,
    response=EventsPage,
)
async def list_my_events(request: web.Request) -> web.Response:
    principal = await require_user(request)
    query = parse_query(request, EventsQuery)
    after = _parse_after(query.after, "after")
    audience = bus.user_audience(principal.user_id)
    event_bus = request.app[keys.bus]
    history = await event_bus.read(audience, after, query.limit)
    if not history.events and history.resync is None and query.wait > 0:
        hub = request.app[keys.hub]
        waiter = StreamSubscriber(audience, after, STREAM_QUEUE_BYTES, principal=principal)
        _open(hub, waiter)
        try:
            await hub.add(waiter)
            waiter.replaying = False
            history = await event_bus.read(audience, after, query.limit)  # what arrived while subscribing
            if not history.events and history.resync is None and waiter.ended is None:
                if not await _wait(request, waiter.wake, query.wait):
                    return _json({"events": [], "next": query.after, "resync": None})  # nobody is there to read it
                if waiter.ended is not None and waiter.ended != SHUTDOWN:
                    raise unauthorized(f"this session ended ({waiter.ended})")
                history = await event_bus.read(audience, after, query.limit)
        finally:
            hub.remove(waiter)
            hub.close_channel(waiter)
    if history.resync is not None:
        head = str(history.head) if history.head is not None else None
        return _json({"events": [], "next": head, "resync": history.resync})
    events = [orjson.Fragment(envelope) for _event_id, envelope in history.events]
    next_id = str(history.events[-1][0]) if history.events else query.after
    return _json({"events": events, "next": next_id, "resync": None})


def _json(data: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _sse(event: str, data: str, event_id: str | None = None) -> bytes:
    """One frame; an ``event_id`` of "" clears the EventSource's last event id (it then sends no Last-Event-ID)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


async def _wait(request: web.Request, wake: asyncio.Event, seconds: float) -> bool:
    """Wait until ``wake`` is set or ``seconds`` pass; False as soon as the client is found gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not wake.is_set():
        if not is_open(request.transport):
            return False
        left = deadline - loop.time()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), min(left, GONE_CHECK_SECONDS))
    return True


async def _write(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    try:
        async with asyncio.timeout(STALL_SECONDS):
            await response.write(data)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client stopped reading") from None


def _open(hub: Hub, subscriber: StreamSubscriber) -> None:
    if hub.draining:
        raise AppError(
            ProblemType.SERVICE_UNAVAILABLE, "this hub process is shutting down", headers={"Retry-After": "1"}
        )
    if not hub.open_channel(subscriber):
        who = "user" if subscriber.principal is not None else "client address"
        raise AppError(ProblemType.RATE_LIMITED, f"too many open streams for this {who}", headers={"Retry-After": "5"})


async def _stream(
    request: web.Request,
    subscriber: StreamSubscriber,
    first: list[bytes],
    prelude: Callable[[], Awaitable[bytes]] | None = None,
    admitted: Callable[[], Awaitable[None]] | None = None,
) -> web.StreamResponse:
    """Stream ``subscriber``'s events: ``first``, then what ``prelude()`` gives once the stream is subscribed (a
    snapshot taken after subscribing misses no change: a later one arrives as an event), then events.
    ``admitted()`` runs once the stream has its slot (it may still refuse it by raising). A subscriber that resumes
    gets its replay before the prelude: a snapshot is never followed by events older than itself."""
    hub = request.app[keys.hub]
    _open(hub, subscriber)
    # a user's events are kept out of every cache (as the user's REST reads are); a public room's may be revalidated
    cache = "no-store" if subscriber.principal is not None else "no-cache"
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": cache, "X-Accel-Buffering": "no"}
    )
    try:
        if admitted is not None:
            await admitted()
        # subscribed before the first byte: an event published once the browser sees the stream open (as a socket
        # sees its connect) is delivered, however long subscribing took
        try:
            await hub.add(subscriber)
        except Exception:
            raise AppError(
                ProblemType.SERVICE_UNAVAILABLE, "the event bus is unavailable; retry", headers={"Retry-After": "1"}
            ) from None
        if prelude is not None and subscriber.last_id is not None:
            await hub.catch_up(subscriber)
            replayed = subscriber.take()
            first = [*first, *(_sse(kind, data, event_id) for kind, data, event_id in replayed), await prelude()]
        else:
            if prelude is not None:
                first = [*first, await prelude()]
            hub.spawn(hub.catch_up(subscriber))
        await response.prepare(request)
        await _write(request, response, b"retry: 3000\n\n" + b"".join(first))
        while True:
            if not await _wait(request, subscriber.wake, KEEPALIVE_SECONDS):
                break  # the client went away: its slot is free for its reconnect at once
            if subscriber.overflowed:
                break  # the client reconnects with Last-Event-ID and resumes from the history
            items = subscriber.take()
            if items:
                await _write(request, response, b"".join(_sse(kind, data, event_id) for kind, data, event_id in items))
            elif subscriber.ended is None:
                await _write(request, response, b": keep-alive\n\n")
            if subscriber.ended is not None:
                break  # its credentials ended (session.ended), or the process drains (reconnect): the last word sent
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away or stopped reading (aiohttp's "Connection lost" is a bare ConnectionError)
    finally:
        hub.remove(subscriber)
        hub.close_channel(subscriber)
    return response


@routes.post(
    f"{API}/me/events/ticket",
    summary="A short-lived, single-use ticket that opens the user's event stream (for EventSource)",
    response=TicketOut,
)
async def create_stream_ticket(request: web.Request) -> web.Response:
    principal = await require_user(request)
    tickets = request.app[keys.tickets]
    ticket = await tickets.issue(principal)
    expires_in = max(1, min(tickets.ttl_seconds, int(principal.expires_at - time.time())))
    return responses.json(TicketOut(ticket=ticket, expires_in=expires_in))


@routes.get(
    f"{API}/me/events/stream",
    summary="Server-Sent Events of the user's events (resumes from Last-Event-ID or last_event_id)",
    query=MyStreamQuery,
    header_params={"Last-Event-ID": LAST_EVENT_ID},
    content_type="text/event-stream",
)
async def stream_my_events(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, MyStreamQuery)
    admitted = None
    if query.ticket is not None:
        tickets, ticket = request.app[keys.tickets], query.ticket
        principal = await tickets.peek(ticket)
        if principal is None:
            raise unauthorized("this stream ticket is unknown, spent or expired; ask for a new one")
        if principal.credential_id not in await request.app[keys.authenticator].still_live([principal]):
            raise unauthorized("the session this ticket stands for has ended")

        async def spend() -> None:
            # spent only once the stream has its slot: a 429 leaves the ticket usable for the retry it invites
            if not await tickets.spend(ticket):
                raise unauthorized("this stream ticket is unknown, spent or expired; ask for a new one")

        admitted = spend
    else:
        principal = await require_user(request)
    raw = request.headers.get("Last-Event-ID") or query.last_event_id
    after = parse_event_id(raw) if raw else None
    subscriber = StreamSubscriber(bus.user_audience(principal.user_id), after, STREAM_QUEUE_BYTES, principal=principal)
    return await _stream(request, subscriber, _invalid_id(raw, after), admitted=admitted)


def _invalid_id(raw: str | None, after: EventId | None) -> list[bytes]:
    """The resync a stream opens with when its Last-Event-ID is not an event id at all: none otherwise."""
    if not raw or after is not None:
        return []
    resync = control_envelope(ControlEvent.RESYNC, {"reason": "invalid_last_event_id"})
    return [_sse(ControlEvent.RESYNC.value, dumps(resync).decode(), "")]


@routes.get(
    f"{API}/public/stream",
    summary="Server-Sent Events of a public room (a snapshot first)",
    auth="none",
    query=PublicStreamQuery,
    header_params={"Last-Event-ID": LAST_EVENT_ID},
    content_type="text/event-stream",
    errors=(404,),
)
async def stream_public_room(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, PublicStreamQuery)
    room = rooms.parse_public_room(query.room)
    if room is None:
        raise validation_error(
            [
                {
                    "field": "room",
                    "message": "must be trend:<product_id>, inflation or store-comparison",
                    "type": "value_error",
                }
            ]
        )
    hub = request.app[keys.hub]
    snapshotter = hub.snapshot
    if snapshotter is None or await snapshotter(room) is None:
        raise AppError(ProblemType.NOT_FOUND, f"no data for room {room!r}")
    raw = request.headers.get("Last-Event-ID") or query.last_event_id
    after = parse_event_id(raw) if raw else None
    subscriber = StreamSubscriber(bus.room_audience(room), after, STREAM_QUEUE_BYTES, address=client_ip(request))

    async def snapshot() -> bytes:
        # taken again once subscribed (normally from the cache): a change in between arrives as an event too
        return _sse("snapshot", dumps({"room": room, "snapshot": await snapshotter(room)}).decode())

    return await _stream(request, subscriber, _invalid_id(raw, after), snapshot)
