"""(g) Where Redis saturates: the hub's record script (append to a user's history, route the event live) driven as
fast as pipelined raw connections allow, with no hub in the way, on one Redis and on a Redis Cluster. Every event
reaches a subscriber, as in production: one connection per master subscribed to every user's live channel (the
hub process that holds them), classic SUBSCRIBE on one Redis, SSUBSCRIBE on a cluster.

Ramp: none. USERS users spread over the masters by their slot; PIPELINES connections per master each keep BATCH
calls in flight, for WARMUP_SECONDS (not counted) then SECONDS. Prints records/s, the Redis CPU per record (every
node, and the busiest node's share) and what that CPU allows: one core's worth of the busiest node, in records/s.

    python -m loadtest.scenarios.redis_ceiling --redis single,cluster
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from typing import Any

import hiredis
import redis as redis_sync
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as SyncCluster

from channels import bus
from channels.events import EventType
from channels.payloads import build_envelope
from channels.publish import encode_envelope
from loadtest.common import REDIS_KINDS, Backing, backing, cpu_seconds, machine, record

USERS = 10_000
PIPELINES = 4
BATCH = 500
WARMUP_SECONDS = 1.0
SECONDS = 5.0
MAX_EVENTS = 1000
MAX_AGE_MS = 7 * 24 * 3600 * 1000


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def record_command(sha: bytes, user_id: str, mode: bytes) -> bytes:
    """The call the hub makes for one event of ``user_id`` (no dedupe key: a direct publish)."""
    audience = bus.user_audience(user_id)
    envelope = build_envelope(
        EventType.SYNC_PROGRESS,
        {"user_id": user_id, "store_slug": "kroger", "job_id": "load", "status": "running", "progress": 0.5},
        service="loadtest",
        timestamp="2026-11-30T12:00:00+00:00",
    )
    return _command(
        b"EVALSHA",
        sha,
        b"2",
        bus.epoch_key(audience).encode(),
        bus.history_key(audience).encode(),
        encode_envelope(envelope).encode(),
        str(MAX_EVENTS).encode(),
        str(MAX_AGE_MS).encode(),
        b"0123456789ab",
        mode,
        bus.live_channel(audience).encode(),
    )


class Pipeline:
    """One connection sending batches of calls and counting the replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader()
        self.errors = 0

    async def run(self, calls: list[bytes], until: float, counter: list[int]) -> None:
        index = 0
        while time.monotonic() < until:
            batch = [calls[(index + i) % len(calls)] for i in range(BATCH)]
            index += BATCH
            self.writer.write(b"".join(batch))
            got = 0
            while got < BATCH:
                async with asyncio.timeout(10):
                    data = await self.reader.read(1 << 16)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                self.parser.feed(data)
                while (reply := self.parser.gets()) is not False:
                    got += 1
                    if isinstance(reply, hiredis.ReplyError):
                        self.errors += 1
            counter[0] += BATCH


async def drain(reader: asyncio.StreamReader, until: float) -> None:
    """A subscriber that reads and drops what it receives (the hub process holding the users)."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while time.monotonic() < until + 2:
            async with asyncio.timeout(until + 2 - time.monotonic()):
                if not await reader.read(1 << 18):
                    return


async def run(where: Backing) -> dict[str, Any]:
    users = [f"ceiling-{n:05d}" for n in range(USERS)]
    mode = b"SPUBLISH" if where.clustered else b"PUBLISH"
    if where.clustered:
        client: Any = SyncCluster(startup_nodes=[ClusterNode(host, port) for host, port in where.redis_nodes])
        masters = [(node.host, int(node.port)) for node in client.get_primaries()]
        owner = {u: client.get_node_from_key(bus.history_key(bus.user_audience(u))).name for u in users}
        client.close()
    else:
        masters = [where.redis_nodes[0]]
        owner = {u: f"{masters[0][0]}:{masters[0][1]}" for u in users}
    sha = b""
    for host, port in masters:
        with redis_sync.Redis(host=host, port=port) as node:
            sha = node.script_load(bus.RECORD_SCRIPT).encode()
    until = time.monotonic() + WARMUP_SECONDS + SECONDS + 1
    subscribers = []
    for host, port in masters:
        reader, writer = await asyncio.open_connection(host, port)
        mine = [u for u in users if owner[u] == f"{host}:{port}"]
        for start in range(0, len(mine), 500):
            channels = [bus.live_channel(bus.user_audience(u)).encode() for u in mine[start : start + 500]]
            if where.clustered:  # one slot per SSUBSCRIBE
                writer.write(b"".join(_command(b"SSUBSCRIBE", channel) for channel in channels))
            else:
                writer.write(_command(b"SUBSCRIBE", *channels))
        subscribers.append((writer, asyncio.ensure_future(drain(reader, until))))
    await asyncio.sleep(1)
    pipelines: list[tuple[Pipeline, list[bytes]]] = []
    for host, port in masters:
        calls = [record_command(sha, u, mode) for u in users if owner[u] == f"{host}:{port}"]
        for _ in range(PIPELINES):
            pipelines.append((Pipeline(*(await asyncio.open_connection(host, port))), calls))
    counter = [0]
    started = time.monotonic()
    running = [asyncio.ensure_future(p.run(calls, until - 1, counter)) for p, calls in pipelines]
    await asyncio.sleep(WARMUP_SECONDS)
    before, counted, own = await where.redis_cpu(), counter[0], cpu_seconds(os.getpid())
    measured = time.monotonic()
    await asyncio.sleep(SECONDS)
    after, records = await where.redis_cpu(), counter[0] - counted
    elapsed = time.monotonic() - measured
    driver = cpu_seconds(os.getpid()) - own
    await asyncio.gather(*running)
    for writer, task in subscribers:
        writer.close()
        task.cancel()
    for pipeline, _calls in pipelines:
        pipeline.writer.close()
    busy = {node: after[node] - before[node] for node in after}
    busiest = max(busy.values())
    result = {
        "redis": "cluster" if where.clustered else "single",
        "masters": len(masters),
        "records_per_s": records / elapsed,
        "errors": sum(p.errors for p, _ in pipelines),
        "redis_cpu_us_per_record": sum(busy.values()) * 1e6 / max(1, records),
        "busiest_node_cpu_pct": 100 * busiest / elapsed,
        "busiest_node_us_per_record": busiest * 1e6 / max(1, records),
        "cpu_pct_by_node": {node: round(100 * cpu / elapsed) for node, cpu in busy.items()},
        "driver_cpu_pct": 100 * driver / elapsed,
        "seconds": time.monotonic() - started,
    }
    print(
        f"{result['redis']}: {result['records_per_s']:.0f} records/s, Redis {result['redis_cpu_us_per_record']:.1f} "
        f"µs CPU per record on all nodes, busiest node {result['busiest_node_cpu_pct']:.0f}% "
        f"({result['busiest_node_us_per_record']:.1f} µs per record of the whole cluster), "
        f"by node {result['cpu_pct_by_node']}, driver {result['driver_cpu_pct']:.0f}%, errors {result['errors']}",
        flush=True,
    )
    return result


async def main(redis_kinds: list[str]) -> list[dict[str, Any]]:
    results = []
    for kind in redis_kinds:
        async with backing(kind, postgres=False) as where:
            result = await run(where)
        record("redis_ceiling", {"machine": machine(), **result})
        results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default=",".join(REDIS_KINDS), help=f"comma-separated: {', '.join(REDIS_KINDS)}")
    args = parser.parse_args()
    asyncio.run(main(args.redis.split(",")))
