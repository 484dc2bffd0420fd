"""(e) Two hub processes on one PostgreSQL and one Redis: throughput with one process against two, and proof of
interest routing (a process receives from Redis only the live events of users connected to it).

Ramp: N sockets, one per user, connect at 2,000/s (all to one process, then half to each of two). The same rate
search as the fan-out scenario (fanout.py) runs in both layouts. Routing: after a fixed burst of PROOF_EVENTS events
to the users of process A only, each process's hub_live_messages_received_total{audience="user"} is read.

    python -m loadtest.scenarios.cluster --sockets 2000
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

import aiohttp

from loadtest.common import (
    Backing,
    LoadGen,
    Publisher,
    Server,
    backing,
    hub_env,
    machine,
    publish_at,
    record,
    seed_users,
    start_hub,
    sync_event_maker,
    user_targets,
)
from loadtest.scenarios.fanout import search

CONNECT_RATE = 2000
PROOF_EVENTS = 2000


async def live_received(server: Server) -> float:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        text = await response.text()
    match = re.search(r'^hub_live_messages_received_total\{audience="user"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def layout(processes: int, env: dict[str, str], where: Backing, users: list[tuple[str, str]]) -> dict[str, Any]:
    servers = [await start_hub(env) for _ in range(processes)]
    gen = await LoadGen.start()
    publisher = await Publisher.connect(where.publish_url)
    share = len(users) // processes
    try:
        for index, server in enumerate(servers):
            await gen.send(
                {
                    "cmd": "connect",
                    "url": server.url,
                    "rate": CONNECT_RATE,
                    "deflate": True,
                    "targets": user_targets(users[index * share : (index + 1) * share]),
                }
            )
        await asyncio.sleep(1)
        best = await search(gen, servers[0], publisher, where, [user_id for user_id, _ in users[: share * processes]])
        routing: dict[str, Any] = {}
        if processes == 2:
            before = [await live_received(server) for server in servers]
            await publish_at(
                publisher,
                2000,
                PROOF_EVENTS / 2000,
                sync_event_maker([u for u, _ in users[:share]]),
                channel="cartsnitch.sync.progress",
            )
            await asyncio.sleep(2)
            after = [await live_received(server) for server in servers]
            routing = {
                "proof_events_to_a": PROOF_EVENTS,
                "a_received": after[0] - before[0],
                "b_received": after[1] - before[1],
            }
            print(
                f"  interest routing: {PROOF_EVENTS} events for A's users -> A received {routing['a_received']:.0f}, "
                f"B received {routing['b_received']:.0f}",
                flush=True,
            )
    finally:
        await publisher.close()
        await gen.close()
        for server in servers:
            await server.stop()
    return {
        "processes": processes,
        "deliveries_per_s": best.get("deliveries_per_s", 0),
        "p99_ms": best.get("p99_ms"),
        **routing,
    }


async def main(sockets: int) -> list[dict[str, Any]]:
    results = []
    async with backing() as where:
        env = hub_env(where.database_url, where.redis_url)
        users = await seed_users(env, where.database_url, sockets)
        for processes in (1, 2):
            print(f"{processes} hub process(es), {sockets} sockets", flush=True)
            result = await layout(processes, env, where, users)
            record("cluster", {"machine": machine(), "sockets": sockets, **result})
            results.append(result)
    print(
        f"throughput: 1 process {results[0]['deliveries_per_s']:.0f}/s, 2 processes "
        f"{results[1]['deliveries_per_s']:.0f}/s (one 2-core machine shared with the load generator and Redis)"
    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.sockets))
