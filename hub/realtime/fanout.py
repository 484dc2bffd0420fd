"""The event bus: per-audience history, live routing by interest, and the ingest queue.

``RedisBus`` keeps each audience's history in a Redis stream and routes live events through one channel per
audience; this process subscribes to a channel only while it holds a subscriber for that audience, so it never
receives events it cannot deliver. On a Redis Cluster (``redis+cluster://``) the live channels are sharded
(``hub.realtime.shards``) and script calls go to the master of their slot (``hub.infra.cluster``); the platform's
plain ``PUBLISH`` on ``cartsnitch.*`` reaches every node of a cluster, so one classic subscription on any node
still hears it. ``LocalBus`` is the embedded default's equivalent: history in the database, live routing in
memory, for a single process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import delete, func, insert, select

from channels import bus
from channels.bus import EventId, Recorded, parse_event_id
from channels.publish import is_noscript, new_epoch
from hub.errors import unavailable_dependency
from hub.infra.cluster import ClusterCommands, KeyedCall, cluster_client, is_cluster_url, parse_cluster_url
from hub.infra.resp import CommandConnection, PubSubConnection, ReplyError, auth_command, command, open_connection
from hub.realtime.shards import ShardedSubscriptions
from hub.store.engine import Sessionmaker
from hub.store.models import HubEvent, HubEventMark, HubIdempotencyKey, HubMeta

log = logging.getLogger("hub.fanout")

RECONNECT_FIRST = 0.05
RECONNECT_CAP = 1.0
"""Pub/sub reconnect back-off: from 50 ms, doubling, never over a second (jittered)."""
INGEST_BLOCK_SECONDS = 2.0
LEGACY_BATCH = 500
LEGACY_IN_FLIGHT = 4
"""Legacy messages per pipelined batch, and batches awaiting Redis at once (single Redis; see ``_legacy_loop``)."""
BACKGROUND_TIMEOUT = 30.0
"""How long the hub's own Redis work (legacy ingest, expansions) waits for a reply before it gives up."""

LiveHandler = Callable[[str, str], None]
"""(audience, envelope JSON with id) for every live event of a subscribed audience."""
IngestHandler = Callable[[str, str], Awaitable[None]]
"""(queue entry id, envelope JSON without id) for every queued event; one process handles each entry. An entry
whose handler fails because a dependency did not answer (``hub.errors.unavailable_dependency``) is kept and handled
again every ``HELD_RETRY_SECONDS`` until it answers, for ``HELD_MAX_SECONDS`` at most (one that fails that long is
not waiting for an outage to end: it would hold up the entries kept behind it); any other failure is logged and the
entry dropped."""
HELD_RETRY_SECONDS = 2.0
LEASE_SECONDS = 5.0
LEASE_RENEW_SECONDS = 1.0
"""The ingest queue has one reader at a time: the process holding a lease in Redis, renewed every second. One
reader keeps the queue's order: with every process reading, entries handed out in turns were expanded side by side
and a room recorded a product's price updates out of order (75 of 300 sequential publishes inverted across two
processes). A process that stops renewing (killed, frozen, cut off from Redis) loses the lease after this long, and
the next holder first handles what it left unfinished; a process that shuts down hands the lease over at once."""
_LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
HELD_MAX_SECONDS = 3600.0
INGEST_CONCURRENCY = 8
"""Queued entries the reader handles at once, of different ordering keys (``RedisBus.ingest_key``). One at a time,
a burst of 400 price updates over 20 products went out at 85-91 a second, the reader waiting on the database and
Redis half the time."""
EXPANSION_DEDUPE_SECONDS = int(HELD_MAX_SECONDS) + 600
"""How long what an entry's expansion recorded is remembered (``record_many(..., once=)``): longer than the entry
is handed over again, so a retry records nothing twice."""
LegacyHandler = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
"""A batch of (channel, raw message), the plain PUBLISHes on ``cartsnitch.*`` received since the last batch."""


class Dedupe(NamedTuple):
    """A key that gives one publish one place in the history: a retry (or another hub process receiving the same
    legacy PUBLISH) within ``seconds`` records nothing and gets the first id back."""

    key: str
    seconds: int
    fingerprint: str = ""


UNKNOWN_EPOCH = ""
"""The epoch of a position in time only (ids from Redis always carry one; parse_event_id refuses an empty one)."""


@dataclass(slots=True)
class History:
    """A slice of an audience's history; ``resync`` says why the requested position can no longer be served."""

    events: list[tuple[EventId, str]] = field(default_factory=list)
    resync: str | None = None
    head: EventId | None = None
    """With ``history_trimmed``: the newest id of the history, where a client that reloaded through REST goes on."""


class EventBus(Protocol):
    on_live: LiveHandler
    on_ingest: IngestHandler
    on_reconnect: Callable[[], None]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def record(
        self, audience: str, envelope_json: str, *, dedupe: Dedupe | None = None, background: bool = False
    ) -> Recorded: ...

    async def record_many(self, items: Sequence[tuple[str, str]], *, once: str | None = None) -> None:
        """Record (audience, envelope) items in one round trip (the hub's own expansions). With ``once`` (the id of
        the queue entry being expanded), what an earlier call with the same ``once`` recorded is not recorded
        again."""
        ...

    async def enqueue(self, envelope_json: str, *, dedupe: Dedupe | None = None) -> Recorded: ...

    async def read(self, audience: str, after: EventId | None, limit: int) -> History:
        """Up to ``limit`` events after ``after``, or why they cannot be served. An ``after`` of UNKNOWN_EPOCH is a
        position in time only (the Redis bus, after a reconnect, for a subscriber that had received nothing): the
        current history's events after it, whatever its epoch."""
        ...

    async def forget(self, audience: str) -> None:
        """Delete the audience's history (a deleted account's): what it held is nobody's to read any more."""
        ...

    async def subscribe(self, audience: str) -> None: ...

    async def unsubscribe(self, audience: str) -> None: ...

    def subscription_count(self) -> int: ...


AnyRedis = Redis | RedisCluster


def redis_client(
    url: str, *, timeout: float, max_connections: int = 64, read_timeout: float | None = None, retries: int = 3
) -> AnyRedis:
    """A redis-py client for request paths: every command (and the wait for a pooled connection, which makes a
    reconnect storm queue rather than fail) gives up after ``timeout``; a command that finds its pooled connection
    dead (Redis restarted) is sent once more on a fresh one. For a cluster URL, redis-py's cluster client, which
    also follows redirections and waits out a failover (``retries`` attempts, see ``cluster_client``)."""
    if is_cluster_url(url):
        return cluster_client(
            url, timeout=timeout, max_connections=max_connections, read_timeout=read_timeout, retries=retries
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=read_timeout or timeout,
        # a timeout is not retried: the command may be running, and a second wait would double the bound
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def id_of(envelope_json: str) -> EventId | None:
    """The id of an envelope whose first member is ``"id"`` (as the bus writes them), without parsing JSON."""
    end = envelope_json.find('"', 7)
    return parse_event_id(envelope_json[7:end]) if envelope_json.startswith('{"id":"') and end > 7 else None


class Held:
    """The queue's rule for a failed entry (see ``IngestHandler``), and since when each kept entry has been failing
    (a retry of it is not a new failure)."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def keep(self, entry_id: str, exc: Exception) -> bool:
        """True when ``entry_id``, whose handler raised ``exc``, is to be handled again; else it is dropped (and
        that is logged)."""
        if unavailable_dependency(exc) is None:
            log.exception("ingest of %s failed; it is dropped", entry_id)
        elif (failing := time.monotonic() - self._since.setdefault(entry_id, time.monotonic())) < HELD_MAX_SECONDS:
            return True
        else:
            log.error("ingest of %s still failed after %.0f s (%r); it is dropped", entry_id, failing, exc)
        self.release(entry_id)
        return False

    def release(self, entry_id: str) -> None:
        self._since.pop(entry_id, None)


def _noop_live(audience: str, envelope_json: str) -> None:
    return None


async def _noop_ingest(entry_id: str, envelope_json: str) -> None:
    return None


def _one_key(envelope_json: bytes) -> str:
    return ""


# --- Redis -----------------------------------------------------------------------------------------------


def _stream_id(raw: bytes | str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    ms, _, seq = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition("-")
    return int(ms), int(seq or 0)


def _first(info: dict[str, Any]) -> tuple[int, int] | None:
    """The oldest id a stream holds (``XINFO STREAM``'s ``first-entry``)."""
    first = info.get("first-entry")
    return _stream_id(first[0]) if first else None


def _newest(info: dict[str, Any]) -> tuple[int, int] | None:
    """The newest id a stream has issued (``XINFO STREAM``'s ``last-generated-id``), trimmed or not."""
    return _stream_id(info.get("last-generated-id"))


class RedisBus:
    """History in Redis streams, live routing on per-audience channels, the ingest queue read by one process at a
    time (``LEASE_SECONDS``); on a single Redis or on a Redis Cluster."""

    def __init__(
        self,
        url: str,
        *,
        max_events: int,
        max_age_seconds: int,
        consumer: str,
        timeout: float = 2.0,
        claim_seconds: float = 60.0,
    ) -> None:
        self.url = url
        self.max_events = max_events
        self.max_age_seconds = max_age_seconds
        self.consumer = consumer
        self.timeout = timeout
        self.claim_seconds = claim_seconds
        self.clustered = is_cluster_url(url)
        # on a cluster the bus's own commands ride out a failover (about 6 s of retries) rather than fail at once
        self.redis: AnyRedis = redis_client(url, timeout=timeout, retries=8)
        self._blocking = redis_client(
            url, timeout=timeout, max_connections=2, read_timeout=INGEST_BLOCK_SECONDS + timeout, retries=8
        )
        self._publish_mode = b"SPUBLISH" if self.clustered else b"PUBLISH"
        self.on_live: LiveHandler = _noop_live
        self.on_ingest: IngestHandler = _noop_ingest
        self.ingest_key: Callable[[bytes], str] = _one_key
        """The ordering key of a queued envelope: entries of one key are handled in queue order."""
        self.on_legacy: LegacyHandler | None = None
        self.on_reconnect: Callable[[], None] = lambda: None
        self._protocol: PubSubConnection | None = None
        self._commands: dict[bool, CommandConnection] = {}
        """Two pipelines: request paths (bounded by ``timeout``) and the hub's own background work (legacy
        ingest, expansions), which waits longer rather than drop events when the process is busy."""
        self._commands_lock = asyncio.Lock()
        self._cluster_commands: ClusterCommands | None = None
        self._shards: ShardedSubscriptions | None = None
        if isinstance(self.redis, RedisCluster):
            address = parse_cluster_url(url)
            self._cluster_commands = ClusterCommands(
                self.redis, address, (bus.RECORD_SCRIPT, bus.INGEST_SCRIPT), timeout=timeout
            )
            self._shards = ShardedSubscriptions(
                self.redis, address, self.dispatch_live, lambda: self.on_reconnect(), timeout=timeout
            )
        self._channels: set[str] = set()
        self._confirmations: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._connected = asyncio.Event()
        self._legacy: list[tuple[bytes, bytes]] = []
        self._legacy_ready = asyncio.Event()
        self._held = Held()
        self._lease_until = 0.0
        """While ``time.monotonic()`` is under it this process holds the ingest lease (measured from before the
        renewal was sent: it lapses here no later than in Redis)."""
        self._leading = asyncio.Event()
        self._take_over = False
        """The lease was just taken: what earlier holders left unfinished is handled before anything new."""
        self._lease_script = self.redis.register_script(_LEASE_SCRIPT)
        self._release_script = self.redis.register_script(_RELEASE_SCRIPT)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # live ---------------------------------------------------------------------------------------------

    def dispatch_live(self, channel: bytes, data: bytes) -> None:
        self.on_live(bus.audience_of_live_channel(channel.decode()), data.decode())

    def dispatch_legacy(self, channel: bytes, data: bytes) -> None:
        self._legacy.append((channel, data))
        self._legacy_ready.set()

    async def _legacy_loop(self) -> None:
        """Legacy messages are handled in batches (one pipelined Redis round trip per batch), in arrival order.

        On a single Redis up to LEGACY_IN_FLIGHT batches are in flight at once: waiting for one batch's reply before
        sending the next left the process and Redis taking turns (measured: a quarter of the hub idle while events
        queued). Order still holds: a batch writes its commands to the one background connection before its first
        wait, batches start in arrival order, and each is one transaction that cannot fail part-way for want of
        the scripts (see ``_run_single``). On a cluster a batch may be retried per slot (redirections, failover),
        so one batch is in flight at a time."""
        in_flight: set[asyncio.Task[None]] = set()
        limit = 1 if self.clustered else LEGACY_IN_FLIGHT
        while True:
            await self._legacy_ready.wait()
            self._legacy_ready.clear()
            while self._legacy:
                batch = self._legacy[:LEGACY_BATCH]
                del self._legacy[:LEGACY_BATCH]
                if self.on_legacy is None:
                    continue
                while len(in_flight) >= limit:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                if not self.clustered:
                    # connected here, in order: batches waiting for a connection of their own could send out of turn
                    with contextlib.suppress(Exception):  # the batch itself then fails and says why
                        await self._connection(background=True)
                task = asyncio.ensure_future(self._handle_legacy(self.on_legacy, batch))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                await asyncio.sleep(0)  # the batch sends its commands before the next one is taken

    @staticmethod
    async def _handle_legacy(handler: LegacyHandler, batch: list[tuple[bytes, bytes]]) -> None:
        try:
            await handler(batch)
        except Exception:
            log.exception("handling %d legacy events failed", len(batch))

    def confirmed(self, channel: bytes) -> None:
        waiters = self._confirmations.get(channel)
        if waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
            if not waiters:
                del self._confirmations[channel]

    async def subscribe(self, audience: str) -> None:
        """Subscribe to an audience's live channel and wait until Redis confirms it (so no event falls between
        the subscription and a history read that follows it)."""
        channel = bus.live_channel(audience)
        if self._shards is not None:
            await self._shards.subscribe(channel)
            return
        self._channels.add(channel)
        try:
            async with asyncio.timeout(self.timeout):
                await self._connected.wait()
                waiter = asyncio.get_running_loop().create_future()
                self._confirmations.setdefault(channel.encode(), deque()).append(waiter)
                assert self._protocol is not None
                self._protocol.send("SUBSCRIBE", channel)
                await waiter
        except TimeoutError:
            raise RedisTimeoutError("Redis did not confirm the subscription in time") from None

    async def unsubscribe(self, audience: str) -> None:
        channel = bus.live_channel(audience)
        if self._shards is not None:
            self._shards.unsubscribe(channel)
            return
        self._channels.discard(channel)
        if self._protocol is not None:
            self._protocol.send("UNSUBSCRIBE", channel)

    def subscription_count(self) -> int:
        return self._shards.count() if self._shards is not None else len(self._channels)

    async def listeners(self, audience: str) -> int:
        """How many connections (of any hub process) are subscribed to an audience's live channel."""
        channel = bus.live_channel(audience)
        if isinstance(self.redis, RedisCluster):
            node = self.redis.get_node_from_key(channel)
            counts = await self.redis.pubsub_shardnumsub(channel, target_nodes=node)
        else:
            counts = await self.redis.pubsub_numsub(channel)
        return sum(int(count) for _channel, count in counts)

    async def _pubsub_loop(self) -> None:
        """The classic pub/sub connection: the platform's ``cartsnitch.*`` (and, on a single Redis, the live
        channels and the channels of hubs before hash tags). On a cluster it is a connection to any node (a
        ``PUBLISH`` reaches them all), chosen anew at every reconnect."""
        delay = RECONNECT_FIRST
        first = True
        failing = False
        while not self._closing:
            try:
                protocol = await self._connect_pubsub()
            except (OSError, TimeoutError, ConnectionError, RedisConnectionError) as exc:
                if not failing:
                    log.warning("pub/sub connection to Redis failed (%s); retrying", type(exc).__name__)
                failing = True
                # short and jittered: every hub process retries, and none should wait long once Redis is back
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RECONNECT_CAP)
                continue
            delay = RECONNECT_FIRST
            failing = False
            self._protocol = protocol
            if self.on_legacy is not None:
                protocol.send("PSUBSCRIBE", bus.LEGACY_PATTERN)
                if not self.clustered:
                    protocol.send("PSUBSCRIBE", bus.V1_LIVE_PATTERN)
            if self._channels:
                protocol.send("SUBSCRIBE", *sorted(self._channels))
                # confirmations of this re-subscription are not awaited by anyone
            self._connected.set()
            if not first and not self.clustered:
                log.warning("pub/sub reconnected to Redis: every subscriber catches up from the history")
                self.on_reconnect()
            first = False
            await protocol.lost
            self._connected.clear()
            self._protocol = None
            for waiters in self._confirmations.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(ConnectionError("pub/sub connection lost"))
            self._confirmations.clear()

    async def _connect_pubsub(self) -> PubSubConnection:
        url = self.url
        if isinstance(self.redis, RedisCluster):
            await self.redis.initialize()
            node = random.choice(self.redis.get_nodes())
            url = parse_cluster_url(self.url).node_url(node.host, int(node.port))
        protocol = cast(
            PubSubConnection,
            await open_connection(
                url, lambda: PubSubConnection(self.dispatch_live, self.dispatch_legacy, self.confirmed)
            ),
        )
        auth = auth_command(url)
        if auth is not None and protocol.transport is not None:
            protocol.transport.write(auth)
        return protocol

    # history ------------------------------------------------------------------------------------------

    async def record(
        self, audience: str, envelope_json: str, *, dedupe: Dedupe | None = None, background: bool = False
    ) -> Recorded:
        return (await self.pipeline_scripts([(audience, envelope_json, dedupe)], [], background=background))[0]

    async def record_many(self, items: Sequence[tuple[str, str]], *, once: str | None = None) -> None:
        records: list[tuple[str, str, Dedupe | None]] = [
            (audience, envelope, expansion_dedupe(once, audience) if once is not None else None)
            for audience, envelope in items
        ]
        await self.pipeline_scripts(records, [], background=True)

    async def pipeline_scripts(
        self,
        records: Sequence[tuple[str, str, Dedupe | None]],
        queued: Sequence[tuple[str, Dedupe | None]],
        *,
        background: bool = False,
    ) -> list[Recorded]:
        """Record (audience, envelope, dedupe) and queue (envelope, dedupe) items in one round trip (one per master
        on a cluster); one result per item (records first), ``repeated`` where a dedupe key had recorded it
        already. A dedupe key must carry the audience's tag (or the queue's)."""
        calls: list[tuple[bytes, tuple[bytes, ...], bool]] = []  # (slot key, command parts, idempotent)
        # the epoch a history takes if this call creates it: one of its own (histories made in one batch sharing
        # one would have ids that pass for each other's), consecutive from a random start (cheaper than a draw)
        first_epoch = int(new_epoch(), 16)
        max_events = str(self.max_events).encode()
        max_age = str(self.max_age_seconds * 1000).encode()
        mode = self._publish_mode
        for n, (audience, envelope_json, dedupe) in enumerate(records):
            epoch = b"%012x" % ((first_epoch + n) & 0xFFFF_FFFF_FFFF)
            tag = b"{" + audience.encode() + b"}"
            history = HISTORY_PREFIX_B + tag
            keys: tuple[bytes, ...] = (EPOCH_PREFIX_B + tag, history)
            args: tuple[bytes, ...] = (envelope_json.encode(), max_events, max_age, epoch, mode, LIVE_PREFIX_B + tag)
            if dedupe is not None:
                keys += (dedupe.key.encode(),)
                args += (b"%d" % dedupe.seconds, dedupe.fingerprint.encode())
            calls.append((history, (b"EVALSHA", RECORD_SHA, b"%d" % len(keys), *keys, *args), dedupe is not None))
        for envelope_json, dedupe in queued:
            keys = (INGEST_STREAM_B,)
            args = (envelope_json.encode(), INGEST_MAXLEN_B)
            if dedupe is not None:
                keys += (dedupe.key.encode(),)
                args += (b"%d" % dedupe.seconds, dedupe.fingerprint.encode())
            parts = (b"EVALSHA", INGEST_SHA, b"%d" % len(keys), *keys, *args)
            calls.append((INGEST_STREAM_B, parts, dedupe is not None))
        if self._cluster_commands is not None:
            results = await self._cluster_commands.execute([KeyedCall(*call) for call in calls])
        else:
            results = await self._run_single([command(*parts) for _key, parts, _idempotent in calls], background)
        out: list[Recorded] = []
        for index, result in enumerate(results):
            if isinstance(result, Exception):
                raise result
            out.append(bus.parse_recorded(result, "" if index < len(records) else "ingest-"))
        return out

    async def _run_single(self, calls: list[bytes], background: bool) -> list[Any]:
        if background:
            # The hub's own batches run pipelined, several in flight, so none may be run again after a later one
            # ran (order): each is one transaction that loads the scripts first (a lookup when they are there), and
            # nothing (a restart, a SCRIPT FLUSH) can come between the load and the calls. Measured: 1-3 µs of
            # Redis time per event more than bare calls; sending the scripts' text (EVAL) cost 8-17 µs.
            replies = await self._execute([MULTI, *SCRIPT_LOADS, *calls, EXEC], background)
            executed = replies[-1]
            if isinstance(executed, ReplyError):  # EXECABORT: a call was refused when queued (say, out of memory)
                raise next((r for r in replies if isinstance(r, ReplyError) and r is not executed), executed)
            return list(executed[len(SCRIPT_LOADS) :])
        results = await self._execute(calls, background)
        missing = [i for i, result in enumerate(results) if isinstance(result, ReplyError) and is_noscript(result)]
        if missing:
            # the scripts are gone (Redis restarted): load them and run again only what did not run
            await self._execute(list(SCRIPT_LOADS), background)
            again = await self._execute([calls[i] for i in missing], background)
            for index, result in zip(missing, again, strict=True):
                results[index] = result
        return results

    async def _execute(self, calls: list[bytes], background: bool = False) -> list[Any]:
        connection = self._commands.get(background)
        if connection is None or connection.closed:
            connection = await self._connection(background)
        return await connection.execute(calls, BACKGROUND_TIMEOUT if background else self.timeout)

    async def _connection(self, background: bool) -> CommandConnection:
        async with self._commands_lock:
            connection = self._commands.get(background)
            if connection is None or connection.closed:
                connection = self._commands[background] = await CommandConnection.connect(self.url, self.timeout)
            return connection

    async def enqueue(self, envelope_json: str, *, dedupe: Dedupe | None = None) -> Recorded:
        return (await self.pipeline_scripts([], [(envelope_json, dedupe)]))[0]

    async def forget(self, audience: str) -> None:
        await self.redis.delete(bus.history_key(audience), bus.epoch_key(audience))

    async def read(self, audience: str, after: EventId | None, limit: int) -> History:
        key = bus.history_key(audience)
        pipe = self.redis.pipeline(transaction=False)
        # the epoch is checked on the node that serves the history: a stream last written by another node (a
        # failover or a slot migration since) gets a new epoch, and every id of the old one resyncs
        pipe.execute_command("EVAL", bus.EPOCH_SCRIPT, 2, bus.epoch_key(audience), key, new_epoch(), self._publish_mode)
        pipe.xinfo_stream(key)
        start = f"({after.ms}-{after.seq}" if after is not None else "-"
        pipe.xrange(key, min=start, max="+", count=limit)
        positioned = after is not None and after.epoch != UNKNOWN_EPOCH
        if after is not None and positioned:
            # the entry itself: every history draws its own epoch, but one id shared by two (a chance, or a history
            # written before epochs were drawn per history) would let another audience's id pass between its ids
            pipe.xrange(key, min=f"{after.ms}-{after.seq}", max=f"{after.ms}-{after.seq}", count=1)
        epoch_raw, info, entries, *itself = await pipe.execute(raise_on_error=False)
        if isinstance(epoch_raw, Exception):
            raise epoch_raw
        if isinstance(entries, Exception):
            raise entries
        state = epoch_raw.decode() if isinstance(epoch_raw, bytes) else str(epoch_raw or "")
        renewed = state.startswith("!")
        epoch = state.removeprefix("!")
        if after is not None and positioned:
            if not epoch or renewed or after.epoch != epoch:
                return History(resync="history_lost")
            if not isinstance(info, Exception) and info:
                head = _newest(info)
                # past the newest id this history issued: not one of its ids (forged, or its events lost with a
                # host that had not written them to disk); older than what trimming left; or, within the ids it
                # holds, not one of them (another audience's, with the same epoch)
                trimmed = self._trimmed_past(after, info)
                never = (head is not None and (after.ms, after.seq) > head) or (
                    not trimmed and self._among_kept(after, info) and itself == [[]]
                )
                if never or trimmed:
                    return History(resync="history_trimmed", head=EventId(*head, epoch) if head else None)
        if not epoch:
            return History()
        out: list[tuple[EventId, str]] = []
        for stream_id, fields in entries:
            sid = stream_id.decode()
            ms, _, seq = sid.partition("-")
            event_id = EventId(int(ms), int(seq), epoch)
            out.append((event_id, bus.with_id(str(event_id), fields[b"e"].decode())))
        return History(out)

    @staticmethod
    def _among_kept(after: EventId, info: dict[str, Any]) -> bool:
        """Whether ``after`` falls among the ids the stream holds (from its first entry on)."""
        first = _first(info)
        return first is not None and (after.ms, after.seq) >= first

    @staticmethod
    def _trimmed_past(after: EventId, info: dict[str, Any]) -> bool:
        """True when events after ``after`` may have been trimmed away. Trimming removes the oldest entries, so
        that is the case when ``after`` is older than the oldest entry left and entries were removed (Redis does
        not record trimmed ids: ``max-deleted-entry-id`` only follows XDEL)."""
        first = _first(info)
        if first is None or (after.ms, after.seq) >= first:
            return False
        added = info.get("entries-added")
        return added is None or int(added) > int(info.get("length", 0))

    # ingest -------------------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Take the ingest lease when nobody holds it and renew it while this process does (``LEASE_SECONDS``)."""
        failing = False
        while not self._closing:
            asked = time.monotonic()
            try:
                held = await asyncio.wait_for(
                    self._lease_script(keys=[bus.INGEST_LEASE], args=[self.consumer, int(LEASE_SECONDS * 1000)]),
                    self.timeout,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:  # once per outage; the lease lapses here as it does in Redis
                    log.warning("renewing the ingest lease failed (%s); retrying every second", exc)
                failing = True
            else:
                failing = False
                if held:
                    if not self._leads():
                        log.info("this process reads the ingest queue")
                    # taken anew, or held again after it lapsed here (a renewal failed): what is pending first
                    self._take_over = self._take_over or held == 2 or not self._leads()
                    self._lease_until = asked + LEASE_SECONDS
                    self._leading.set()
                elif self._leads():
                    log.warning("another process took the ingest lease")
                    self._lease_until = 0.0
            await asyncio.sleep(LEASE_RENEW_SECONDS)

    def _leads(self) -> bool:
        return time.monotonic() < self._lease_until

    async def _release_lease(self) -> None:
        if self._lease_until:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._release_script(keys=[bus.INGEST_LEASE], args=[self.consumer]), min(self.timeout, 1.0)
                )

    async def _ingest_loop(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.xgroup_create(bus.INGEST_STREAM, bus.INGEST_GROUP, id="$", mkstream=True)
        last_claim = last_retry = 0.0
        failing = False
        held = False  # entries read but kept (a dependency did not answer): they wait in this consumer's pending list
        while not self._closing:
            if not self._leads():
                self._leading.clear()
                await self._leading.wait()
                continue
            try:
                if self._take_over:
                    last_claim = time.monotonic()
                    held = await self._claim(0) or held
                    self._take_over = False
                elif time.monotonic() - last_claim > min(30.0, self.claim_seconds / 2):
                    last_claim = time.monotonic()
                    held = await self._claim(int(self.claim_seconds * 1000)) or held
                if held and time.monotonic() - last_retry >= HELD_RETRY_SECONDS:
                    last_retry = time.monotonic()
                    held = await self._retry_held()
                block = min(HELD_RETRY_SECONDS if held else INGEST_BLOCK_SECONDS, self._lease_until - time.monotonic())
                if block < 0.001:  # (0 would block for ever)
                    continue
                reply = await self._blocking.xreadgroup(
                    bus.INGEST_GROUP, self.consumer, {bus.INGEST_STREAM: ">"}, count=100, block=int(block * 1000)
                )
                failing = False
                for _stream, entries in cast(list[tuple[bytes, list[Any]]], reply or []):
                    if await self._handle_entries(entries):
                        held, last_retry = True, time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if "NOGROUP" in str(exc):
                    with contextlib.suppress(Exception):
                        await self.redis.xgroup_create(bus.INGEST_STREAM, bus.INGEST_GROUP, id="0", mkstream=True)
                    continue
                if not failing:  # once per outage, not once a second
                    log.warning("ingest queue read failed (%s); retrying every second", exc)
                failing = held = True  # what was read and not acknowledged is retried from the pending list
                await asyncio.sleep(1)

    async def _claim(self, min_idle_ms: int) -> bool:
        """Take over and handle, oldest first, the entries another reader took and left unfinished ``min_idle_ms``
        ago: all of them when the lease was just taken (their reader no longer holds it), those a minute old
        otherwise (``claim_seconds``: a process of an older version, which read without the lease); True when some
        of them are kept."""
        held = False
        start: Any = "0-0"
        while True:
            reply = await self.redis.xautoclaim(
                bus.INGEST_STREAM,
                bus.INGEST_GROUP,
                self.consumer,
                min_idle_time=min_idle_ms,
                start_id=start,
                count=100,
            )
            if not reply:
                return held
            if reply[1]:
                held = await self._handle_entries(reply[1]) or held
            start = reply[0]
            if start in (b"0-0", "0-0"):
                return held

    async def _retry_held(self) -> bool:
        """Handle this consumer's pending entries again, oldest first; True while some are still kept."""
        after = "0"
        while True:
            reply = await self.redis.xreadgroup(bus.INGEST_GROUP, self.consumer, {bus.INGEST_STREAM: after}, count=100)
            entries = cast(list[tuple[bytes, list[Any]]], reply or [(b"", [])])[0][1]
            if not entries:
                return False
            if await self._handle_entries(entries, stop_when_held=True):
                return True
            after = entries[-1][0].decode()

    async def _handle_entries(self, entries: list[Any], *, stop_when_held: bool = False) -> bool:
        """Handle and acknowledge each entry; True when some were kept for later because a dependency did not
        answer (the others still go out: a trend room's event does not need the database, a buyers' one does).

        Entries of one ordering key (``ingest_key``: a product, a user) are handled one after the other, in queue
        order; up to ``INGEST_CONCURRENCY`` of different keys side by side. With ``stop_when_held`` (a retry of the
        kept entries, oldest first) one at a time, up to the first still kept. When the lease lapses, no further
        entry is begun: its next holder takes them over."""
        if stop_when_held:
            for entry_id, fields in entries:
                if not self._leads():
                    return False  # the next holder retries them
                if await self._handle_entry(entry_id, fields):
                    return True
            return False
        slots = asyncio.Semaphore(INGEST_CONCURRENCY)
        lapsed = asyncio.Event()
        last_of_key: dict[str, asyncio.Task[bool]] = {}

        async def handle(before: asyncio.Task[bool] | None, entry_id: bytes, fields: Any) -> bool:
            if before is not None:
                await asyncio.wait([before])  # its outcome is its own
            async with slots:
                if lapsed.is_set() or not self._leads():
                    lapsed.set()  # nothing after it begins either (the next holder takes them in order)
                    return False
                return await self._handle_entry(entry_id, fields)

        tasks = []
        for entry_id, fields in entries:
            key = self.ingest_key(fields[b"e"]) if fields and b"e" in fields else ""
            task = asyncio.ensure_future(handle(last_of_key.get(key), entry_id, fields))
            last_of_key[key] = task
            tasks.append(task)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)  # (cancelled with it)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return any(outcomes)

    async def _handle_entry(self, entry_id: bytes, fields: Any) -> bool:
        """Handle one entry and acknowledge it; True when it is kept for later."""
        raw_id = entry_id.decode()
        if fields and b"e" in fields:
            try:
                await self.on_ingest(raw_id, fields[b"e"].decode())
            except Exception as exc:
                if self._held.keep(raw_id, exc):
                    return True
        await self.redis.xack(bus.INGEST_STREAM, bus.INGEST_GROUP, raw_id)
        self._held.release(raw_id)
        return False

    # lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(self._lease_loop()),
            asyncio.ensure_future(self._ingest_loop()),
            asyncio.ensure_future(self._legacy_loop()),
        ]
        if self._shards is not None:
            self._shards.start()
        if self._shards is None or self.on_legacy is not None:
            self._tasks.append(asyncio.ensure_future(self._pubsub_loop()))

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._release_lease()  # another process reads the queue at once (an entry cut short here: from its start)
        if self._shards is not None:
            await self._shards.close()
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        for connection in self._commands.values():
            connection.close()
        if self._cluster_commands is not None:
            self._cluster_commands.close()
        await self.redis.aclose()
        await self._blocking.aclose()


def _sha(script: str) -> bytes:
    return hashlib.sha1(script.encode()).hexdigest().encode()  # noqa: S324 (Redis names scripts by SHA-1)


RECORD_SHA = _sha(bus.RECORD_SCRIPT)
INGEST_SHA = _sha(bus.INGEST_SCRIPT)
SCRIPT_LOADS = (command(b"SCRIPT", b"LOAD", bus.RECORD_SCRIPT), command(b"SCRIPT", b"LOAD", bus.INGEST_SCRIPT))
MULTI, EXEC = command(b"MULTI"), command(b"EXEC")
INGEST_STREAM_B = bus.INGEST_STREAM.encode()
INGEST_MAXLEN_B = str(bus.INGEST_MAXLEN).encode()
HISTORY_PREFIX_B = (bus.PREFIX + "history:").encode()
EPOCH_PREFIX_B = (bus.PREFIX + "epoch:").encode()
LIVE_PREFIX_B = (bus.PREFIX + "live:").encode()


# --- in-process (embedded default) -------------------------------------------------------------------------

EPOCH_META = "history_epoch"
TRIM_EVERY = 50


def expansion_dedupe(entry_id: str, audience: str) -> Dedupe:
    return Dedupe(bus.expansion_key(entry_id, audience), EXPANSION_DEDUPE_SECONDS)


def _row_key(dedupe: Dedupe) -> str:
    """A dedupe key as the database keeps it: hashed to a fixed length (an audience's tag makes a key longer than
    the column; a publisher's key is hashed already)."""
    return hashlib.sha256(dedupe.key.encode()).hexdigest()


class LocalBus:
    """History in the database (``hub_events``), live routing in this process: one process, nothing lost on
    restart."""

    def __init__(self, sessionmaker: Sessionmaker, *, max_events: int, max_age_seconds: int) -> None:
        self.sessionmaker = sessionmaker
        self.max_events = max_events
        self.max_age_seconds = max_age_seconds
        self.on_live: LiveHandler = _noop_live
        self.on_ingest: IngestHandler = _noop_ingest
        self.on_reconnect: Callable[[], None] = lambda: None
        self._audiences: set[str] = set()
        self._lock = asyncio.Lock()
        self._once_lock = asyncio.Lock()
        self._epoch = ""
        self._epoch_lock = asyncio.Lock()
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._seq = 0
        self._run = new_epoch()
        """Part of every queue entry id: ids stay unique across restarts (an expansion's dedupe keys carry them)."""
        self._writes: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # the epoch is read on first use, so the process starts (and reports not ready) while the database is down
        self._tasks = [asyncio.ensure_future(self._ingest_loop()), asyncio.ensure_future(self._age_loop())]

    async def _current_epoch(self) -> str:
        if not self._epoch:
            async with self._epoch_lock:
                if not self._epoch:
                    async with self.sessionmaker.begin() as session:
                        meta = await session.get(HubMeta, EPOCH_META)
                        if meta is None:
                            meta = HubMeta(key=EPOCH_META, value=new_epoch())
                            session.add(meta)
                        self._epoch = meta.value
        return self._epoch

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def subscribe(self, audience: str) -> None:
        self._audiences.add(audience)

    async def unsubscribe(self, audience: str) -> None:
        self._audiences.discard(audience)

    def subscription_count(self) -> int:
        return len(self._audiences)

    async def record(
        self, audience: str, envelope_json: str, *, dedupe: Dedupe | None = None, background: bool = False
    ) -> Recorded:
        if dedupe is None:
            return Recorded((await self._record([(audience, envelope_json)]))[0])
        return await self._once(dedupe, lambda: self._record([(audience, envelope_json)], dedupe=dedupe))

    async def _once(self, dedupe: Dedupe, run: Callable[[], Awaitable[list[str]]]) -> Recorded:
        """What ``dedupe`` recorded before (within its window), or ``run()``, remembered under it."""
        async with self.sessionmaker() as session:
            seen = await session.get(HubIdempotencyKey, _row_key(dedupe))
        if seen is not None and seen.expires_at > datetime.now(UTC):
            return Recorded(seen.event_id, True, seen.fingerprint)
        async with self._once_lock:  # one run per key even when its retries race each other
            async with self.sessionmaker() as session:
                seen = await session.get(HubIdempotencyKey, _row_key(dedupe))
            if seen is not None and seen.expires_at > datetime.now(UTC):
                return Recorded(seen.event_id, True, seen.fingerprint)
            return Recorded((await run())[0])

    async def record_many(self, items: Sequence[tuple[str, str]], *, once: str | None = None) -> None:
        if once is None:
            await self._record(items)
        elif items:  # one transaction: one key for the whole batch
            dedupe = expansion_dedupe(once, "*")
            await self._once(dedupe, lambda: self._record(items, dedupe=dedupe))

    async def _record(self, items: Sequence[tuple[str, str]], *, dedupe: Dedupe | None = None) -> list[str]:
        # Serialised: ids are assigned and events dispatched in one order, so no subscriber sees them swapped.
        async with self._lock:
            epoch = await self._current_epoch()
            now = datetime.now(UTC)
            async with self.sessionmaker.begin() as session:
                ids = []
                for audience, envelope_json in items:
                    result = await session.execute(
                        insert(HubEvent)
                        .values(audience=audience, envelope=envelope_json, created_at=now)
                        .returning(HubEvent.id)
                    )
                    ids.append(result.scalar_one())
                if dedupe is not None:
                    await self._remember(session, dedupe, str(EventId(ids[0], 0, epoch)), now)
            out = []
            for (audience, envelope_json), row_id in zip(items, ids, strict=True):
                event_id = str(EventId(row_id, 0, epoch))
                out.append(event_id)
                if audience in self._audiences:
                    self.on_live(audience, bus.with_id(event_id, envelope_json))
                self._writes[audience] = self._writes.get(audience, 0) + 1
                if self._writes[audience] >= TRIM_EVERY:
                    self._writes[audience] = 0
                    await self._trim_count(audience)
            return out

    @staticmethod
    async def _remember(session: Any, dedupe: Dedupe, event_id: str, now: datetime) -> None:
        key = _row_key(dedupe)
        await session.execute(delete(HubIdempotencyKey).where(HubIdempotencyKey.key == key))
        session.add(
            HubIdempotencyKey(
                key=key,
                fingerprint=dedupe.fingerprint,
                event_id=event_id,
                expires_at=now + timedelta(seconds=dedupe.seconds),
            )
        )

    async def enqueue(self, envelope_json: str, *, dedupe: Dedupe | None = None) -> Recorded:
        async def put() -> list[str]:
            self._seq += 1
            entry_id = f"ingest-local-{self._run}-{self._seq}"
            if dedupe is not None:
                async with self.sessionmaker.begin() as session:
                    await self._remember(session, dedupe, entry_id, datetime.now(UTC))
            await self._queue.put((entry_id, envelope_json))
            return [entry_id]

        if dedupe is None:
            return Recorded((await put())[0])
        return await self._once(dedupe, put)

    async def forget(self, audience: str) -> None:
        async with self.sessionmaker.begin() as session:
            await session.execute(delete(HubEvent).where(HubEvent.audience == audience))
            await session.execute(delete(HubEventMark).where(HubEventMark.audience == audience))

    async def read(self, audience: str, after: EventId | None, limit: int) -> History:
        epoch = await self._current_epoch()
        async with self.sessionmaker() as session:
            if after is not None:
                if after.epoch != epoch:
                    return History(resync="history_lost")
                mark = await session.get(HubEventMark, audience)
                deleted = mark.max_deleted_id if mark is not None else 0
                newest = await session.scalar(select(func.max(HubEvent.id)).where(HubEvent.audience == audience))
                issued = max(newest or 0, deleted)
                # older than what trimming left, or not an id this audience was given (the ids are one sequence
                # for every audience: another audience's id, or a forged one, would skip events; an audience that
                # was given none has no position to resume from)
                never_issued = issued < after.ms or (
                    # between what trimming left and the newest: one of this audience's ids, or another's
                    after.ms > deleted
                    and await session.scalar(
                        select(HubEvent.id).where(HubEvent.audience == audience, HubEvent.id == after.ms)
                    )
                    is None
                )
                if after.ms < deleted or never_issued:
                    head = EventId(newest or deleted, 0, epoch) if issued else None
                    return History(resync="history_trimmed", head=head)
            stmt = select(HubEvent.id, HubEvent.envelope).where(HubEvent.audience == audience)
            if after is not None:
                stmt = stmt.where(HubEvent.id > after.ms)
            rows = (await session.execute(stmt.order_by(HubEvent.id).limit(limit))).all()
        out = []
        for row_id, envelope_json in rows:
            event_id = EventId(row_id, 0, epoch)
            out.append((event_id, bus.with_id(str(event_id), envelope_json)))
        return History(out)

    async def _trim_count(self, audience: str) -> None:
        async with self.sessionmaker.begin() as session:
            cutoff = (
                await session.execute(
                    select(HubEvent.id)
                    .where(HubEvent.audience == audience)
                    .order_by(HubEvent.id.desc())
                    .offset(self.max_events)
                    .limit(1)
                )
            ).scalar_one_or_none()
            if cutoff is not None:
                await self._delete_through(session, audience, cutoff)

    async def _delete_through(self, session: Any, audience: str, last_id: int) -> None:
        await session.execute(delete(HubEvent).where(HubEvent.audience == audience, HubEvent.id <= last_id))
        mark = await session.get(HubEventMark, audience)
        if mark is None:
            session.add(HubEventMark(audience=audience, max_deleted_id=last_id))
        elif last_id > mark.max_deleted_id:
            mark.max_deleted_id = last_id

    async def trim_by_age(self) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.max_age_seconds)
        async with self.sessionmaker.begin() as session:
            rows = (
                await session.execute(
                    select(HubEvent.audience, func.max(HubEvent.id))
                    .where(HubEvent.created_at < cutoff)
                    .group_by(HubEvent.audience)
                )
            ).all()
            for audience, last_id in rows:
                await self._delete_through(session, audience, last_id)
            await session.execute(delete(HubIdempotencyKey).where(HubIdempotencyKey.expires_at < datetime.now(UTC)))

    async def _age_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await self.trim_by_age()
            except Exception:
                log.exception("trimming the event history failed")

    async def _ingest_loop(self) -> None:
        while True:
            entry_id, envelope_json = await self._queue.get()
            held = Held()
            while True:  # in order: the history it is recorded into is the database that did not answer
                try:
                    await self.on_ingest(entry_id, envelope_json)
                except Exception as exc:
                    if held.keep(entry_id, exc):
                        await asyncio.sleep(HELD_RETRY_SECONDS)
                        continue
                break
