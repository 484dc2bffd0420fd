"""The hub's own pub/sub connection to real Redis: a handler that fails on one message costs that message only."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis

from hub.infra.resp import PubSubConnection, open_connection

pytestmark = pytest.mark.redis


async def test_a_handler_that_raises_on_one_message_leaves_the_connection_and_the_next_messages(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Raised into the event loop, the handler's error closed the subscribed connection (uvloop and asyncio close a
    transport whose protocol raises): every later message of every channel was lost until the reconnect."""
    received: list[bytes] = []
    subscribed = asyncio.Event()

    def on_message(channel: bytes, data: bytes) -> None:
        if data == b"poison":
            raise RuntimeError("Cannot call write() after write_eof()")
        received.append(data)

    connection = await open_connection(
        redis_url, lambda: PubSubConnection(on_message, lambda _c, _d: None, lambda _c: subscribed.set())
    )
    assert isinstance(connection, PubSubConnection) and connection.transport is not None
    publisher = Redis.from_url(redis_url)
    try:
        connection.send("SUBSCRIBE", "c")
        await asyncio.wait_for(subscribed.wait(), 5)
        with caplog.at_level(logging.ERROR, logger="hub.redis"):
            async with publisher.pipeline(transaction=False) as pipe:  # one TCP read holds all three, often
                for data in (b"one", b"poison", b"two"):
                    pipe.publish("c", data)
                await pipe.execute()
            async with asyncio.timeout(5):
                while len(received) < 2:
                    await asyncio.sleep(0.01)
        assert received == [b"one", b"two"]
        assert not connection.lost.done() and not connection.transport.is_closing()
        assert "could not be handled" in caplog.text
    finally:
        await publisher.aclose()
        connection.transport.close()
