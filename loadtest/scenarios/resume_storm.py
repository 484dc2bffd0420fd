"""(c) Connect storm, then a reconnect-with-resume storm across a hub restart: nothing lost, nothing duplicated.

Ramp: N sockets (one per user) connect at CONNECT_RATE/s (time until all are connected). Then BEFORE events per user
are published while they are connected; the hub process is stopped (SIGTERM, or SIGKILL with --kill); DURING events
per user are published while no hub runs (through the channels publish helper: recorded in the users' histories);
a new hub process starts on the same port and every client reconnects with its last_event_id. Measure: time until
every client has every event, events lost (must be 0), duplicated (must be 0), out of order (must be 0).

    python -m loadtest.scenarios.resume_storm --sockets 10000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from channels.publish import publish
from loadtest.common import (
    LoadGen,
    backing,
    hub_env,
    machine,
    record,
    seed_users,
    start_hub,
    user_targets,
)

CONNECT_RATE = 2000
BEFORE = 3
DURING = 3
CATCH_UP_TIMEOUT_MS = 120_000


def _payload(user_id: str, n: int) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "store_slug": "kroger",
        "job_id": "storm",
        "status": "running",
        "progress": 0.5,
        "items_synced": n,
        "message": "",
        "ts": time.time_ns(),
    }


async def _publish_round(redis: Redis, users: list[str], n: int) -> None:
    for start in range(0, len(users), 50):
        await asyncio.gather(
            *(
                publish(redis, "cartsnitch.sync.progress", _payload(u, n), service="loadtest")
                for u in users[start : start + 50]
            )
        )


async def main(sockets: int, kill: bool) -> dict[str, Any]:
    async with backing() as where:
        env = hub_env(where.database_url, where.redis_url)
        users = await seed_users(env, where.database_url, sockets)
        ids = [user_id for user_id, _ in users]
        hub = await start_hub(env)
        port = int(hub.url.rsplit(":", 1)[1])
        gen = await LoadGen.start()
        redis = Redis.from_url(where.redis_url)
        try:
            connected = await gen.send(
                {
                    "cmd": "connect",
                    "url": hub.url,
                    "targets": user_targets(users),
                    "rate": CONNECT_RATE,
                    "deflate": True,
                }
            )
            print(
                f"connect storm: {connected['ok']}/{sockets} sockets in {connected['seconds']:.1f} s "
                f"(failed {connected['failed']})",
                flush=True,
            )
            for n in range(BEFORE):
                await _publish_round(redis, ids, n)
            expected = {f"/users/{user_id}": BEFORE for user_id in ids}
            before = await gen.send({"cmd": "caught_up", "expected": expected, "timeoutMs": 60_000})
            await hub.stop("kill" if kill else "term")
            for n in range(BEFORE, BEFORE + DURING):
                await _publish_round(redis, ids, n)
            restarted = time.monotonic()
            hub = await start_hub(env, port)
            reconnected = await gen.send(
                {"cmd": "reconnect", "url": hub.url, "resume": True, "rate": CONNECT_RATE}, timeout=900
            )
            expected = {f"/users/{user_id}": BEFORE + DURING for user_id in ids}
            caught_up = await gen.send(
                {"cmd": "caught_up", "expected": expected, "timeoutMs": CATCH_UP_TIMEOUT_MS}, timeout=300
            )
            seconds = time.monotonic() - restarted
            check = await gen.send({"cmd": "check", "expected": expected})
        finally:
            await redis.aclose()
            await gen.close()
            await hub.stop()
    result = {
        "sockets": sockets,
        "connected": connected["ok"],
        "connect_seconds": connected["seconds"],
        "before_delivered": before["done"],
        "stop": "SIGKILL" if kill else "SIGTERM",
        "reconnected": reconnected["ok"],
        "reconnect_failed": reconnected["failed"],
        "catch_up_seconds": seconds,
        "all_caught_up": caught_up["done"],
        "events_per_user": BEFORE + DURING,
        "lost": check["lost"],
        "duplicated": check["duplicated"] + check["extra"],
        "out_of_order": check["out_of_order"],
        "resyncs": check["resyncs"],
    }
    print(
        f"resume storm ({result['stop']}): {result['reconnected']}/{sockets} reconnected, all caught up in "
        f"{seconds:.1f} s after the restart: lost {result['lost']}, duplicated {result['duplicated']}, "
        f"out of order {result['out_of_order']}, resyncs {result['resyncs']}",
        flush=True,
    )
    record("resume_storm", {"machine": machine(), **result})
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--kill", action="store_true", help="stop the hub with SIGKILL instead of SIGTERM")
    args = parser.parse_args()
    asyncio.run(main(args.sockets, args.kill))
