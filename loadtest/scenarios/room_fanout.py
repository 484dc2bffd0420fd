"""(b) Trend-room broadcast: M sockets on /public subscribed to one product's trend room; the platform PUBLISHes
cartsnitch.prices.updated for that product at RATE per second for SECONDS; every event goes to every member.

Ramp: sockets connect at 2,000/s, then subscribe, then 2 s of the same traffic whose figures are printed apart (the
first events after start-up). Measure: deliveries/s, p50/p99 publish->receive latency, server CPU
per delivery. The hub does more per event than the reference servers: it records the event in the room's history and
attaches a fresh trend snapshot (the REST body of /public/trends/<id>) computed from the database.

    python -m loadtest.scenarios.room_fanout --target hub --members 1000,10000
    python -m loadtest.scenarios.room_fanout --target hub --members 2000 --redis single,cluster

Redis CPU is that of every Redis process (the cluster's six nodes) net of what they spend idle, per delivery and
per published event.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from loadtest.common import (
    REDIS_KINDS,
    TARGETS,
    Backing,
    LoadGen,
    Publisher,
    backing,
    cpu_seconds,
    hub_env,
    machine,
    price_event_maker,
    priced_product,
    publish_at,
    record,
    seed_users,
    start_target,
)

CONNECT_RATE = 2000
RATE = 10.0
SECONDS = 10.0
DRAIN_SECONDS = 5.0
WARMUP_SECONDS = 2.0
"""Every target first gets WARMUP_SECONDS of the same traffic, measured apart (``cold_p99_ms``): a server's first
events after start-up pay for first use (connections, statements, code paths) and say nothing of its steady state."""


async def run(target: str, members: int, where: Backing, product: tuple[str, str]) -> dict[str, Any]:
    server = await start_target(target, where)
    gen = await LoadGen.start()
    publisher = await Publisher.connect(where.publish_url)
    try:
        connected = await gen.send(
            {
                "cmd": "connect",
                "url": server.url,
                "rate": CONNECT_RATE,
                "deflate": True,
                "targets": [{"ns": "/public"} for _ in range(members)],
            }
        )
        subscribed = await gen.send({"cmd": "subscribe", "room": f"trend:{product[0]}"})
        await asyncio.sleep(1)
        make = price_event_maker(*product)
        await gen.send({"cmd": "window"})
        cold = await publish_at(publisher, RATE, WARMUP_SECONDS, make, channel="cartsnitch.prices.updated")
        cold_windows = await _drain(gen, cold * subscribed["ok"])
        await asyncio.sleep(0.5)
        await where.measure_redis_idle()
        await gen.send({"cmd": "window"})
        cpu_before = cpu_seconds(server.pid)
        redis_before = await where.redis_cpu()
        started = time.monotonic()
        sent = await publish_at(publisher, RATE, SECONDS, make, channel="cartsnitch.prices.updated")
        windows = await _drain(gen, sent * subscribed["ok"])
        received = sum(window["received"] for window in windows)
        cpu = cpu_seconds(server.pid) - cpu_before
        redis_after = await where.redis_cpu()
        measured = time.monotonic() - started
    finally:
        await publisher.close()
        await gen.close()
        await server.stop()
    p99s = [w["p99"] for w in windows if w["p99"] is not None]
    cold_p99s = [w["p99"] for w in cold_windows if w["p99"] is not None]
    p50s = [w["p50"] for w in windows if w["p50"] is not None]
    redis_busy = sum(redis_after[node] - redis_before[node] for node in redis_after)
    redis_busy -= sum(where.redis_idle.values()) * measured  # net of what Redis spends idle
    result = {
        "target": target,
        "redis": "cluster" if where.clustered else "single",
        "members": members,
        "connected": connected["ok"],
        "subscribed": subscribed["ok"],
        "published": sent,
        "expected": sent * subscribed["ok"],
        "received": received,
        "deliveries_per_s": received / SECONDS,
        "p50_ms": max(p50s) if p50s else None,
        "p99_ms": max(p99s) if p99s else None,
        "cold_p99_ms": max(cold_p99s) if cold_p99s else None,
        "cold_received": sum(w["received"] for w in cold_windows),
        "cold_expected": cold * subscribed["ok"],
        "server_cpu_us_per_delivery": cpu * 1e6 / max(1, received),
        "redis_cpu_us_per_delivery": redis_busy * 1e6 / max(1, received),
        "redis_cpu_us_per_event": redis_busy * 1e6 / max(1, sent),
    }
    print(
        f"{target}: {members} members, {sent} events -> {received}/{result['expected']} deliveries, "
        f"{result['deliveries_per_s']:.0f}/s, p50 {result['p50_ms'] or 0:.1f} ms, p99 {result['p99_ms'] or 0:.1f} ms, "
        f"{result['server_cpu_us_per_delivery']:.1f} µs CPU per delivery "
        f"(first {WARMUP_SECONDS:.0f} s after start-up: {result['cold_received']}/{result['cold_expected']}, "
        f"p99 {result['cold_p99_ms'] or 0:.1f} ms), "
        f"Redis {result['redis_cpu_us_per_delivery']:.2f} µs per delivery "
        f"({result['redis_cpu_us_per_event']:.0f} µs per published event)",
        flush=True,
    )
    return result


async def _drain(gen: LoadGen, expected: int) -> list[dict[str, Any]]:
    """The generator's 250 ms windows until ``expected`` deliveries arrived, DRAIN_SECONDS after the last publish
    at most (the windows carry those that arrived during the publishing too)."""
    received = 0
    windows = []
    for _ in range(int(DRAIN_SECONDS * 4)):
        await asyncio.sleep(0.25)
        window = await gen.send({"cmd": "window"})
        received += window["received"]
        windows.append(window)
        if received >= expected:
            break
    return windows


async def main(targets: list[str], member_counts: list[int], redis_kinds: list[str]) -> list[dict[str, Any]]:
    results = []
    for redis in redis_kinds:
        async with backing(redis) as where:
            await seed_users(hub_env(where.database_url, where.redis_url), where.database_url, 10)
            product = await priced_product(where.database_url)
            for members in member_counts:
                for target in targets:
                    if where.clustered and target != "hub":
                        continue  # the reference servers' adapters speak to one Redis
                    result = await run(target, members, where, product)
                    record("room_fanout", {"machine": machine(), **result})
                    results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=",".join(TARGETS))
    parser.add_argument("--members", default="1000,10000")
    parser.add_argument("--redis", default="single", help=f"comma-separated: {', '.join(REDIS_KINDS)} (hub only)")
    args = parser.parse_args()
    asyncio.run(main(args.target.split(","), [int(n) for n in args.members.split(",")], args.redis.split(",")))
