"""Side by side: the fan-out, broadcast, memory and connect scenarios against the hub and the two reference servers
(../shared/peers), in alternation, repeated; medians and hub/peer ratios from the same run regenerate the
performance table in README.md (between the performance markers).

    python -m loadtest.compare            # 3 repetitions, about an hour on 2 cores
    python -m loadtest.compare --repeat 1 --targets hub,node-socketio
    python -m loadtest.compare --rest --old-gateway http://127.0.0.1:58001   # and the REST side (see rest_load)

Every figure is measured with the same load generator (loadtest/client/loadgen.js) and the same traffic: the
platform's plain PUBLISH of the cartsnitch.* envelope, one event per message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from loadtest.common import (
    RESULTS,
    ROOT,
    TARGETS,
    Backing,
    LoadGen,
    Publisher,
    backing,
    hub_env,
    machine,
    peer_version,
    priced_product,
    record,
    rss_bytes,
    seed_users,
    start_target,
    user_targets,
)
from loadtest.scenarios import fanout, room_fanout

BEGIN = "<!-- performance:begin -->"
END = "<!-- performance:end -->"

# (key, label, unit, better) for each row of the table, in the order
ROWS = (
    ("fanout_10000_rate", "per-user events/s with p99 publish→receive < 100 ms, 10,000 sockets", "/s", "higher"),
    ("fanout_5000_rate", "same, 5,000 sockets", "/s", "higher"),
    ("fanout_1000_rate", "same, 1,000 sockets", "/s", "higher"),
    ("fanout_5000_cpu", "server CPU per delivered per-user event, 5,000 sockets (at the best rate)", "µs", "lower"),
    ("room_10000_rate", "trend room of 10,000 members, 10 publishes/s offered: deliveries/s", "/s", "higher"),
    ("room_10000_cpu", "server CPU per broadcast delivery, 10,000 members", "µs", "lower"),
    ("room_1000_p99", "trend room of 1,000 members, 10 publishes/s: p99 (after its first 2 s)", "ms", "lower"),
    ("memory_10000", "idle memory per socket, 10,000 sockets (client offers permessage-deflate)", "KiB", "lower"),
    ("memory_5000", "same, 5,000 sockets", "KiB", "lower"),
    ("connect_10000", "time to connect 10,000 sockets (client capped at 2,000/s)", "s", "lower"),
)


async def fanout_run(target: str, sockets: int, where: Backing, users: list[tuple[str, str]]) -> dict[str, Any]:
    server = await start_target(target, where)
    gen = await LoadGen.start()
    publisher = await Publisher.connect(where.publish_url)
    try:
        before = rss_bytes(server.pid)
        connected = await gen.send(
            {
                "cmd": "connect",
                "url": server.url,
                "targets": user_targets(users[:sockets]),
                "rate": fanout.CONNECT_RATE,
                "deflate": True,
            }
        )
        await asyncio.sleep(3)
        memory = (rss_bytes(server.pid) - before) / 1024 / max(1, connected["ok"])
        best = await fanout.search(gen, server, publisher, where, [user_id for user_id, _ in users[:sockets]])
    finally:
        await publisher.close()
        await gen.close()
        await server.stop()
    return {
        "rate": best.get("deliveries_per_s", 0.0),
        "cpu": best.get("server_cpu_us_per_delivery"),
        "memory": memory,
        "connect": connected["seconds"],
        "connected": connected["ok"],
    }


async def one_round(
    target: str, where: Backing, users: list[tuple[str, str]], product: tuple[str, str]
) -> dict[str, float | None]:
    print(f"== {target}", flush=True)
    big = await fanout_run(target, 10000, where, users)
    small = await fanout_run(target, 1000, where, users)
    middle = await fanout_run(target, 5000, where, users)
    room_big = await room_fanout.run(target, 10000, where, product)
    room_small = await room_fanout.run(target, 1000, where, product)
    figures = {
        "fanout_10000_rate": big["rate"],
        "fanout_5000_rate": middle["rate"],
        "fanout_1000_rate": small["rate"],
        "fanout_5000_cpu": middle["cpu"],
        "room_10000_rate": room_big["deliveries_per_s"],
        "room_10000_cpu": room_big["server_cpu_us_per_delivery"],
        "room_1000_p99": room_small["p99_ms"],
        "memory_10000": big["memory"],
        "memory_5000": middle["memory"],
        "connect_10000": big["connect"],
    }
    record("compare", {"machine": machine(), "target": target, **figures})
    return figures


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "/s":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.1f} s"
    if unit == "KiB":
        return f"{value:.1f} KiB"
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _ratio(hub: float | None, peer: float | None) -> str:
    if not hub or not peer:
        return "n/a"
    return f"{hub / peer:.2f}x"


def table(medians: dict[str, dict[str, float | None]], repeats: int, targets: list[str]) -> str:
    peers = [t for t in ("python-socketio", "node-socketio") if t in targets]
    head = ["per process (medians of " + str(repeats) + ")", *peers, "hub" if "hub" in targets else ""]
    head += [f"hub / {p.split('-')[0]}" for p in peers if "hub" in targets]
    lines = ["| " + " | ".join(h for h in head if h) + " |", "|" + "---|" * len([h for h in head if h])]
    for key, label, unit, _better in ROWS:
        cells = [label] + [_fmt(medians[p].get(key), unit) for p in peers]
        if "hub" in targets:
            cells.append("**" + _fmt(medians["hub"].get(key), unit) + "**")
            cells += [_ratio(medians["hub"].get(key), medians[p].get(key)) for p in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = ROOT / "README.md"
    content = readme.read_text()
    if BEGIN not in content or END not in content:
        raise SystemExit(f"README.md has no {BEGIN} … {END} section")
    before, rest = content.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    readme.write_text(before + BEGIN + "\n" + text + "\n" + END + after)


REST_ENDPOINTS = ("purchases_first", "purchase_detail", "product_cached", "product_uncached", "trend_uncached")
SEARCH_ENDPOINTS = ("search_common", "search_prefix", "search_rare", "search_none")


async def rest_side(options: argparse.Namespace) -> str:
    """One hub process (and the old gateway, when one runs at ``old_gateway`` on the same data) under wrk, on the
    large seeded dataset: req/s per endpoint at 2 and 16 connections."""
    from loadtest.scenarios import rest_load

    args = argparse.Namespace(
        connections=[2, 16],
        threads=2,
        duration=rest_load.DURATION_SECONDS,
        only=set(REST_ENDPOINTS + SEARCH_ENDPOINTS),
        label="compare",
        profile=False,
        database_url=options.database_url,
        redis_url=options.redis_url,
        demo_password=options.demo_password,
        old_gateway=options.old_gateway,
        old_gateway_pid=options.old_gateway_pid,
        workers=[1],
    )
    rows = await rest_load.main(args)
    by = {(r["target"], r["endpoint"], r["connections"]): r for r in rows}
    lines = [
        "| REST, one process, wrk (medians not taken: one run) | conns | hub req/s | hub p50 ms | old gateway req/s "
        "| hub / old gateway |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for endpoint in REST_ENDPOINTS + SEARCH_ENDPOINTS:
        for connections in args.connections:
            hub = by.get((rest_load.HUB, endpoint, connections))
            old = by.get((rest_load.OLD_GATEWAY, endpoint, connections))
            if hub is None:
                continue
            old_rate = old["requests_per_s"] if old else None
            lines.append(
                f"| {endpoint} | {connections} | {hub['requests_per_s']:,.0f} | {hub['p50_ms']:.1f} | "
                f"{f'{old_rate:,.0f}' if old_rate else 'n/a'} | {_ratio(hub['requests_per_s'], old_rate)} |"
            )
    return "\n".join(lines)


async def main(
    repeats: int,
    targets: list[str],
    update_readme: bool,
    rest: argparse.Namespace | None = None,
) -> None:
    runs: dict[str, list[dict[str, float | None]]] = {t: [] for t in targets}
    async with backing() as where:
        users = await seed_users(hub_env(where.database_url, where.redis_url), where.database_url, 10000)
        product = await priced_product(where.database_url)
        for repeat in range(repeats):
            order = targets[repeat % len(targets) :] + targets[: repeat % len(targets)]  # alternate who goes first
            for target in order:
                runs[target].append(await one_round(target, where, users, product))
    medians: dict[str, dict[str, float | None]] = {}
    for target, results in runs.items():
        medians[target] = {}
        for key, *_ in ROWS:
            values = [r[key] for r in results if r.get(key) is not None]
            medians[target][key] = statistics.median(values) if values else None  # type: ignore[type-var]
    versions = ", ".join(peer_version(t) for t in targets if t != "hub")
    body = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; load generator, publisher, Redis "
        f"(and PostgreSQL for the hub) on the same machine, loopback. Reference servers: {versions}. "
        f"Regenerate with `python -m loadtest.compare` (see loadtest/README.md).\n\n" + table(medians, repeats, targets)
    )
    if rest is not None:
        body += "\n\n" + await rest_side(rest)
    print(body)
    RESULTS.mkdir(exist_ok=True)
    Path(RESULTS / "compare-medians.json").write_text(json.dumps(medians, indent=2))
    if update_readme:
        write_readme(body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--no-readme", action="store_true", help="print the table without rewriting README.md")
    parser.add_argument("--rest", action="store_true", help="also the REST side (rest_load on the large dataset)")
    parser.add_argument("--old-gateway", help="a running old gateway on the REST database, for the REST side")
    parser.add_argument("--old-gateway-pid", type=int, help="its process id, to read its CPU")
    parser.add_argument("--database-url", help="REST side: a seeded database to reuse (the old gateway's)")
    parser.add_argument("--redis-url", help="REST side: the Redis to use with --database-url")
    parser.add_argument("--demo-password", help="REST side: the seeded users' password")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    asyncio.run(main(args.repeat, targets, not args.no_readme, args if args.rest else None))
