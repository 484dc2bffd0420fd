"""Sharded subscriptions against a real Redis Cluster at the edge of their bookkeeping: an unsubscribe that comes
while the subscribe before it is still opening the master's connection (a subscriber that leaves at once, right
after a start or a failover)."""

from __future__ import annotations

import asyncio

import pytest

from channels import bus
from hub.infra.cluster import cluster_client, parse_cluster_url
from hub.realtime.shards import ShardedSubscriptions

pytestmark = [pytest.mark.redis]


async def test_an_unsubscribe_while_the_masters_connection_opens_leaves_nothing_and_strands_nothing(
    redis_cluster_url: str,
) -> None:
    """Before: the subscription was sent once the connection opened although nobody wanted it (a channel left
    subscribed on the master for good), the subscribe waited out its timeout, and every later subscribe of the
    channel found it marked as carried, never got a confirmation and timed out too."""
    cluster = cluster_client(redis_cluster_url, timeout=5)
    await cluster.initialize()
    received: list[bytes] = []
    shards = ShardedSubscriptions(
        cluster,
        parse_cluster_url(redis_cluster_url),
        lambda _channel, data: received.append(data),
        lambda: None,
        timeout=2,
    )
    shards.start()
    channel = bus.live_channel(bus.user_audience("leaves-at-once"))
    node = cluster.get_node_from_key(channel)
    try:
        leaving = asyncio.ensure_future(shards.subscribe(channel))
        await asyncio.sleep(0)  # the subscribe is opening the connection to the channel's master
        shards.unsubscribe(channel)
        await asyncio.wait_for(leaving, 1)
        await asyncio.sleep(0.2)
        assert await cluster.pubsub_shardnumsub(channel, target_nodes=node) == [(channel.encode(), 0)]
        await asyncio.wait_for(shards.subscribe(channel), 2)
        assert await cluster.pubsub_shardnumsub(channel, target_nodes=node) == [(channel.encode(), 1)]
        await cluster.execute_command("SPUBLISH", channel, "live", target_nodes=node)
        async with asyncio.timeout(2):
            while not received:
                await asyncio.sleep(0.01)
        assert received == [b"live"]
    finally:
        await shards.close()
        await cluster.aclose()
