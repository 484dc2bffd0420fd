"""(a) Per-user event fan-out: N sockets, one per user; events PUBLISHed the platform's way, round-robin over the
users; a rate search for the highest rate whose p99 publish->receive latency stays under 100 ms with no loss.

Ramp: sockets connect at 2,000/s. Each rate step publishes for STEP_SECONDS, then waits up to DRAIN_SECONDS.
A warm-up step at WARMUP_RATE is not counted. Rates: from START_RATE doubling until a step fails, then
BISECT_STEPS bisections between the last pass and the first failure. Also reports server CPU per delivered event
at the best rate.

    python -m loadtest.scenarios.fanout --target hub --sockets 1000,10000
    python -m loadtest.scenarios.fanout --target hub --sockets 2000 --workers 1,2   # serve --workers N
    python -m loadtest.scenarios.fanout --target hub --sockets 2000 --redis single,cluster   # one Redis, a cluster

Redis CPU is that of every Redis process (the cluster's six nodes), per delivered event net of what they spend
idle (measured for 3 s before the steps), and the busiest one's share.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from loadtest.common import (
    REDIS_KINDS,
    TARGETS,
    Backing,
    LoadGen,
    Publisher,
    Server,
    backing,
    cpu_seconds,
    hub_env,
    machine,
    publish_at,
    record,
    seed_users,
    start_target,
    sync_event_maker,
    tree_cpu_seconds,
    tree_rss_bytes,
    user_targets,
)

CONNECT_RATE = 2000
STEP_SECONDS = 5.0
DRAIN_SECONDS = 3.0
START_RATE = 2000
WARMUP_RATE = 500
MAX_RATE = 64000
BISECT_STEPS = 3
P99_LIMIT_MS = 100.0


async def hub_socket_metrics(server: Server) -> str:
    """What the hub counted: sockets open now, and sockets it dropped as slow consumers (a lost event is a socket's
    drop unless these say otherwise)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        text = await response.text()
    wanted = ("hub_socket_connections{", "hub_slow_consumer_disconnects_total ")
    return ", ".join(line for line in text.splitlines() if line.startswith(wanted))


async def step(
    gen: LoadGen, server: Server, publisher: Publisher, where: Backing, users: list[str], rate: float
) -> dict[str, Any]:
    await gen.send({"cmd": "window"})
    cpu_before = tree_cpu_seconds(server.pid)
    gen_cpu_before = cpu_seconds(gen.pid)
    publisher_cpu_before = cpu_seconds(os.getpid())
    redis_cpu_before = await where.redis_cpu()
    sent = await publish_at(publisher, rate, STEP_SECONDS, sync_event_maker(users), channel="cartsnitch.sync.progress")
    waited = 0.0
    received = 0
    window: dict[str, Any] = {}
    latencies: list[dict[str, Any]] = []
    while waited < DRAIN_SECONDS:
        await asyncio.sleep(0.5)
        waited += 0.5
        window = await gen.send({"cmd": "window"})
        received += window["received"]
        latencies.append(window)
        if received >= sent:
            break
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    publisher_cpu = cpu_seconds(os.getpid()) - publisher_cpu_before
    redis_cpu_after = await where.redis_cpu()
    elapsed = STEP_SECONDS + waited
    redis_by_node = {node: redis_cpu_after[node] - redis_cpu_before[node] for node in redis_cpu_after}
    redis_busy = sum(redis_by_node.values())
    redis_work = redis_busy - sum(where.redis_idle.values()) * elapsed  # net of what Redis spends idle
    gen_cpu = cpu_seconds(gen.pid) - gen_cpu_before
    p99s = [w["p99"] for w in latencies if w["p99"] is not None]
    p50s = [w["p50"] for w in latencies if w["p50"] is not None]
    result = {
        "rate": rate,
        "published": sent,
        "received": received,
        "lost": max(0, sent - received),
        "deliveries_per_s": received / STEP_SECONDS,
        "p50_ms": max(p50s) if p50s else None,
        "p99_ms": max(p99s) if p99s else None,
        "server_cpu_us_per_delivery": cpu * 1e6 / max(1, received),
        "loadgen_cpu_pct": 100 * gen_cpu / (STEP_SECONDS + waited),
        "server_cpu_pct": 100 * cpu / (STEP_SECONDS + waited),
        "publisher_cpu_pct": 100 * publisher_cpu / (STEP_SECONDS + waited),
        "redis_cpu_pct": 100 * redis_busy / (STEP_SECONDS + waited),
        "redis_busiest_node_cpu_pct": 100 * max(redis_by_node.values()) / (STEP_SECONDS + waited),
        "redis_cpu_us_per_delivery": redis_work * 1e6 / max(1, received),
        "redis_idle_pct": 100 * sum(where.redis_idle.values()),
    }
    result["ok"] = (
        result["lost"] == 0
        and result["p99_ms"] is not None
        and result["p99_ms"] < P99_LIMIT_MS
        and sent >= rate * STEP_SECONDS * 0.98
    )
    print(
        f"  {server.name} rate {rate:>7.0f}/s: delivered {result['deliveries_per_s']:>8.0f}/s "
        f"p50 {result['p50_ms'] or 0:6.1f} ms p99 {result['p99_ms'] or 0:7.1f} ms lost {result['lost']} "
        f"cpu/delivery {result['server_cpu_us_per_delivery']:.0f} µs server {result['server_cpu_pct']:.0f}% "
        f"loadgen {result['loadgen_cpu_pct']:.0f}% publisher {result['publisher_cpu_pct']:.0f}% "
        f"redis {result['redis_cpu_pct']:.0f}% (busiest node {result['redis_busiest_node_cpu_pct']:.0f}%, "
        f"{result['redis_cpu_us_per_delivery']:.1f} µs/delivery net of {result['redis_idle_pct']:.0f}% idle) "
        f"{'ok' if result['ok'] else 'FAIL'}",
        flush=True,
    )
    return result


async def search(
    gen: LoadGen, server: Server, publisher: Publisher, where: Backing, users: list[str]
) -> dict[str, Any]:
    print(f"  {server.name} warm-up (not counted)", flush=True)
    await step(gen, server, publisher, where, users, WARMUP_RATE)
    best: dict[str, Any] | None = None
    rate = float(START_RATE)
    failed_at: float | None = None
    while rate <= MAX_RATE:
        result = await step(gen, server, publisher, where, users, rate)
        if not result["ok"]:
            failed_at = rate
            break
        best = result
        rate *= 2
    if failed_at is not None:
        low = best["rate"] if best else 0.0
        high = failed_at
        for _ in range(BISECT_STEPS):
            middle = (low + high) / 2
            if middle < 100:
                break
            result = await step(gen, server, publisher, where, users, middle)
            if result["ok"]:
                best, low = result, middle
            else:
                high = middle
            await asyncio.sleep(1)
    return best or {"rate": 0, "deliveries_per_s": 0, "ok": False}


async def run(
    target: str, sockets: int, where: Backing, users: list[tuple[str, str]], workers: int = 1
) -> dict[str, Any]:
    server = await start_target(target, where, workers)
    gen = await LoadGen.start()
    publisher = await Publisher.connect(where.publish_url)
    try:
        rss_before = tree_rss_bytes(server.pid)
        connected = await gen.send(
            {
                "cmd": "connect",
                "url": server.url,
                "targets": user_targets(users[:sockets]),
                "rate": CONNECT_RATE,
                "deflate": True,
            }
        )
        await asyncio.sleep(2)
        idle_per_socket = (tree_rss_bytes(server.pid) - rss_before) / max(1, connected["ok"])
        await where.measure_redis_idle()
        print(
            f"{server.name}: {connected['ok']} sockets in {connected['seconds']:.1f} s "
            f"({idle_per_socket / 1024:.1f} KiB/socket idle)",
            flush=True,
        )
        best = await search(gen, server, publisher, where, [user_id for user_id, _ in users[:sockets]])
        if target == "hub":
            print(f"  {server.name} after the search: {await hub_socket_metrics(server)}", flush=True)
        return {
            "target": target,
            "redis": "cluster" if where.clustered else "single",
            "workers": workers,
            "sockets": sockets,
            "connected": connected["ok"],
            "connect_seconds": connected["seconds"],
            "idle_kib_per_socket": idle_per_socket / 1024,
            **best,
        }
    finally:
        await publisher.close()
        await gen.close()
        await server.stop()


async def main(
    targets: list[str], socket_counts: list[int], workers: list[int], redis_kinds: list[str]
) -> list[dict[str, Any]]:
    results = []
    for redis in redis_kinds:
        async with backing(redis) as where:
            env = hub_env(where.database_url, where.redis_url)
            users = await seed_users(env, where.database_url, max(socket_counts))
            for sockets in socket_counts:
                for target in targets:
                    if where.clustered and target != "hub":
                        continue  # the reference servers' adapters speak to one Redis
                    for count in workers if target == "hub" else [1]:
                        result = await run(target, sockets, where, users, count)
                        record("fanout", {"machine": machine(), **result})
                        results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=",".join(TARGETS))
    parser.add_argument("--sockets", default="1000,10000")
    parser.add_argument("--workers", default="1", help="hub worker processes (serve --workers), comma-separated")
    parser.add_argument("--redis", default="single", help=f"comma-separated: {', '.join(REDIS_KINDS)} (hub only)")
    args = parser.parse_args()
    asyncio.run(
        main(
            args.target.split(","),
            [int(n) for n in args.sockets.split(",")],
            [int(n) for n in args.workers.split(",")],
            args.redis.split(","),
        )
    )
