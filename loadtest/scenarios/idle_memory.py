"""(d) Idle memory per socket, and the time to connect them: N sockets connect (one per user, offering
permessage-deflate as browsers do) at CONNECT_RATE/s; after SETTLE_SECONDS the server's resident memory growth is
divided by the sockets connected.

    python -m loadtest.scenarios.idle_memory --target hub,node-socketio,python-socketio --sockets 10000
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from loadtest.common import (
    TARGETS,
    Backing,
    LoadGen,
    backing,
    hub_env,
    machine,
    record,
    rss_bytes,
    seed_users,
    start_target,
    user_targets,
)

CONNECT_RATE = 2000
SETTLE_SECONDS = 3.0


async def run(target: str, sockets: int, where: Backing, users: list[tuple[str, str]]) -> dict[str, Any]:
    server = await start_target(target, where)
    gen = await LoadGen.start()
    try:
        await asyncio.sleep(1)
        before = rss_bytes(server.pid)
        connected = await gen.send(
            {
                "cmd": "connect",
                "url": server.url,
                "targets": user_targets(users[:sockets]),
                "rate": CONNECT_RATE,
                "deflate": True,
            }
        )
        await asyncio.sleep(SETTLE_SECONDS)
        after = rss_bytes(server.pid)
    finally:
        await gen.close()
        await server.stop()
    result = {
        "target": target,
        "sockets": sockets,
        "connected": connected["ok"],
        "connect_seconds": connected["seconds"],
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "kib_per_socket": (after - before) / 1024 / max(1, connected["ok"]),
    }
    print(
        f"{target}: {connected['ok']} sockets in {connected['seconds']:.1f} s, "
        f"{result['kib_per_socket']:.1f} KiB per idle socket ({result['rss_before_mib']:.0f} -> "
        f"{result['rss_after_mib']:.0f} MiB)",
        flush=True,
    )
    return result


async def main(targets: list[str], sockets: int) -> list[dict[str, Any]]:
    results = []
    async with backing() as where:
        users = await seed_users(hub_env(where.database_url, where.redis_url), where.database_url, sockets)
        for target in targets:
            result = await run(target, sockets, where, users)
            record("idle_memory", {"machine": machine(), **result})
            results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=",".join(TARGETS))
    parser.add_argument("--sockets", type=int, default=10000)
    args = parser.parse_args()
    asyncio.run(main(args.target.split(","), args.sockets))
