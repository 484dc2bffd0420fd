"""Raw RESP2 connections parsed by hiredis, for the two hot paths of the event bus: pipelined script calls and
pub/sub. redis-py spends more time encoding and decoding each command than Redis spends running it."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("hub.redis")
CONNECT_TIMEOUT = 5.0


def command(*parts: bytes | str | int) -> bytes:
    """One command in RESP (hiredis encodes it in C: half the time of doing it here, on every event)."""
    return cast(bytes, hiredis.pack_command(cast(Any, parts)))  # its stub types a one-element tuple


class ReplyError(Exception):
    """An error reply from Redis."""


async def open_connection(
    url: str, factory: Callable[[], asyncio.Protocol], connect_seconds: float = CONNECT_TIMEOUT
) -> asyncio.Protocol:
    """Connect ``factory()`` to the Redis at ``url`` (tcp, tls or unix socket) within ``connect_seconds``."""
    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    loop = asyncio.get_running_loop()
    try:
        if "path" in options:
            _, protocol = await asyncio.wait_for(loop.create_unix_connection(factory, options["path"]), connect_seconds)
        else:
            tls = ssl.create_default_context() if url.startswith("rediss://") else None
            _, protocol = await asyncio.wait_for(
                loop.create_connection(factory, options.get("host", "localhost"), options.get("port", 6379), ssl=tls),
                connect_seconds,
            )
    except (OSError, TimeoutError) as exc:
        raise RedisConnectionError(f"cannot connect to Redis: {type(exc).__name__}") from exc
    return protocol


def auth_command(url: str) -> bytes | None:
    options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    if not options.get("password"):
        return None
    if options.get("username"):
        return command("AUTH", options["username"], options["password"])
    return command("AUTH", options["password"])


class CommandConnection(asyncio.Protocol):
    """Pipelined commands on one connection: replies come back in order and resolve the batches that asked."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.transport: asyncio.Transport | None = None
        self._batches: deque[tuple[asyncio.Future[list[Any]], list[Any], int]] = deque()
        self.closed = False

    @classmethod
    async def connect(cls, url: str, connect_seconds: float = CONNECT_TIMEOUT) -> CommandConnection:
        connection = cast(CommandConnection, await open_connection(url, cls, connect_seconds))
        auth = auth_command(url)
        if auth is not None:
            [reply] = await connection.execute([auth], connect_seconds)
            if isinstance(reply, ReplyError):
                connection.close()
                raise RedisConnectionError(f"Redis refused the credentials: {reply}")
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        batches = self._batches
        while (reply := reader.gets()) is not False:
            future, replies, expected = batches[0]
            replies.append(reply)
            if len(replies) == expected:
                batches.popleft()
                if not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self._batches:
            future, _, _ = self._batches.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError("Redis connection lost"))

    async def execute(self, commands: list[bytes], within: float | None = None) -> list[Any]:
        """Send encoded commands in one write; their replies, in order (errors as ReplyError values). Past
        ``within`` seconds the connection is closed (its later replies would answer the wrong batch) and the call raises
        a Redis TimeoutError: the commands may or may not have run."""
        if not commands:
            return []
        if self.closed or self.transport is None or self.transport.is_closing():
            raise RedisConnectionError("Redis connection closed")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._batches.append((future, [], len(commands)))
        self.transport.write(b"".join(commands))
        try:
            return await asyncio.wait_for(asyncio.shield(future), within)
        except TimeoutError:
            future.cancel()  # nobody awaits it any more: the lost connection must not set an unretrieved exception
            self.close()
            raise RedisTimeoutError(f"Redis did not answer within {within} s") from None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class PubSubConnection(asyncio.Protocol):
    """A subscribed connection: every message is handed to a callback as soon as hiredis has parsed it. Messages
    of classic and of sharded channels (``SSUBSCRIBE``) both go to ``on_message``; ``on_unsubscribed`` hears of
    every sharded channel the server dropped (a slot that moved away, or the reply to our own SUNSUBSCRIBE);
    ``on_error`` of an error reply (without it, an error reply closes the connection)."""

    def __init__(
        self,
        on_message: Callable[[bytes, bytes], None],
        on_pmessage: Callable[[bytes, bytes], None],
        on_subscribed: Callable[[bytes], None],
        on_unsubscribed: Callable[[bytes], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_pmessage = on_pmessage
        self.on_subscribed = on_subscribed
        self.on_unsubscribed = on_unsubscribed
        self.on_error = on_error
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        on_message = self.on_message
        while (reply := reader.gets()) is not False:
            if type(reply) is list:
                kind = reply[0]
                try:
                    if kind == b"message" or kind == b"smessage":
                        on_message(reply[1], reply[2])
                    elif kind == b"pmessage":
                        self.on_pmessage(reply[2], reply[3])
                    elif kind in (b"subscribe", b"psubscribe", b"ssubscribe"):
                        self.on_subscribed(reply[1])
                    elif kind == b"sunsubscribe" and self.on_unsubscribed is not None:
                        self.on_unsubscribed(reply[1])
                except Exception:
                    # a handler's bug is the handler's: raised here, it would close the connection (the event loop
                    # closes a transport whose protocol raises) and every later message of every channel with it
                    log.exception("a pub/sub message on %r could not be handled", reply[1])
            elif isinstance(reply, hiredis.ReplyError):
                if self.on_error is None:
                    raise RedisConnectionError(f"pub/sub error: {reply}")
                self.on_error(str(reply))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def send(self, *parts: bytes | str | int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(command(*parts))
