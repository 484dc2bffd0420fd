"""(f) REST under load on the large dataset: wrk drives one hub process on PostgreSQL + Redis, one endpoint at a
time, at fixed connection counts; requests/s and the latency distribution come from wrk's ``--latency`` output.

The large dataset (1,000 users, 5,000 products, 1,000,000 price rows, 100,000 purchases) is seeded with the CLI
(about 2 minutes). The demo user signs in with the password given to ``seed``; ids are real rows: the demo user's
newest purchase and the product with the most price rows. The deep keyset page is reached by following
``Link: rel="next"`` for DEEP_PAGES pages as the user with the most purchases (every seeded user has the demo
password; the demo user has only about ten pages).

Product search (``/products?q=``) has no response cache: four needles, each its own row. A common word (milk), a
three-letter prefix (che), a word found in one product name only (picked from the database) and one found nowhere.
With ``--old-gateway URL`` (or CARTSNITCH_OLD_GATEWAY_URL) the same search requests also go to an already-running old
FastAPI gateway (cartsnitch/api, started by you on the same database; this scenario neither installs nor starts it),
right after the hub's, with a Better-Auth session the scenario adds to ``sessions`` for the demo user and removes at
the end. Its CPU is read when ``--old-gateway-pid`` (CARTSNITCH_OLD_GATEWAY_PID) names its process.

"Uncached" requests add ``bust=<run>.<thread>.<n>`` to the query string from a wrk Lua script, a different value on
every request: the handlers ignore the parameter, but the response cache is keyed by path and query string, so every
request misses, computes, and stores its entry (the full cost a client pays on a miss).

Each measurement: a WARMUP_SECONDS run (not counted; it fills the cache and the connection pool), then
DURATION_SECONDS with ``wrk -t<threads> -c<connections> --latency``. CPU is read for the hub process
(/proc/<pid>/stat), for wrk (its rusage when it is reaped) and for the whole machine (/proc/stat).

    python -m loadtest.scenarios.rest_load                       # fresh PostgreSQL + Redis, seeded here
    python -m loadtest.scenarios.rest_load --connections 2 --only purchases_first,product_cached
    python -m loadtest.scenarios.rest_load --database-url postgresql+asyncpg://… --redis-url redis://…  # reuse
    python -m loadtest.scenarios.rest_load --workers 1,2 --connections 32   # serve --workers N, one after the other
    python -m loadtest.scenarios.rest_load --database-url … --redis-url … --demo-password … \
        --only search_common,search_prefix,search_rare,search_none --connections 2,16 --old-gateway http://…
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from loadtest.common import (
    RESULTS,
    Backing,
    backing,
    cpu_seconds,
    hub_cli,
    hub_env,
    machine,
    record,
    start_hub,
    tree_cpu_seconds,
)

DURATION_SECONDS = 15
WARMUP_SECONDS = 3
THREADS = 2
CONNECTIONS = (2, 32)
DEEP_PAGES = 50
PAGE_SIZE = 20
LINK_DEADLINE_SECONDS = 60
WRK_GRACE_SECONDS = 30
SEED_ARGS = ("--users", "1000", "--products", "5000", "--price-rows", "1000000", "--purchases", "100000")
SEED = "42"
DEMO_EMAIL = "demo@cartsnitch.local"
API = "/api/v1"
SEARCH_COMMON = "milk"
SEARCH_PREFIX = "che"
SEARCH_NONE = "xyzzy"
GATEWAY_SESSION_ID = "rest-load-gateway"
HUB = "hub"
OLD_GATEWAY = "old-gateway"

BUST_SCRIPT = """
local made = 0
function setup(thread)
  made = made + 1
  thread:set("tid", made)
end
function init(args)
  n = 0
  sep = string.find(wrk.path, "?", 1, true) and "&" or "?"
end
function request()
  n = n + 1
  return wrk.format(nil, wrk.path .. sep .. "bust=" .. RUN .. "." .. tid .. "." .. n)
end
"""


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    path: str
    auth: str | None  # the e-mail to sign in as, None for a public route
    bust: bool = False
    cacheable: bool = True  # False: the route keeps no response cache (product search)
    gateway: bool = False  # the old gateway answers the same request (product search)


@dataclass(frozen=True, slots=True)
class Target:
    """What wrk drives: the hub this scenario started, or the old gateway someone else started."""

    name: str
    url: str
    pid: int | None  # None: its CPU is not read


@dataclass(frozen=True, slots=True)
class Wrk:
    requests_per_s: float
    requests: int
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Wrk:
    """Requests/s, the latency percentiles and the error counts from ``wrk --latency`` output."""
    percentiles = {int(p): _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.M)}
    latency = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if rate is None or total is None or latency is None or len(percentiles) != 4:
        raise RuntimeError("unexpected wrk output:\n" + output)
    return Wrk(
        requests_per_s=float(rate.group(1)),
        requests=int(total.group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        max_ms=_ms(latency.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Backends:
    """CPU of the PostgreSQL server processes (every pid pg_stat_activity lists) and of Redis."""

    def __init__(self, database: asyncpg.Connection, redis: Redis) -> None:
        self.database = database
        self.redis = redis

    async def database_cpu(self) -> dict[int, float]:
        pids = [row[0] for row in await self.database.fetch("SELECT pid FROM pg_stat_activity")]
        out = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                out[pid] = cpu_seconds(pid)
        return out

    async def redis_cpu(self) -> float:
        info = await self.redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def run_wrk(url: str, *, seconds: int, threads: int, connections: int, token: str | None, script: str | None) -> str:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    if script is not None:
        command += ["-s", script]
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + WRK_GRACE_SECONDS, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


# --- the dataset -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dataset:
    demo_purchase_id: str
    demo_purchase_items: int
    product_id: str
    product_price_rows: int
    heavy_email: str
    heavy_purchases: int
    rare_word: str


async def seed_large(env: dict[str, str], database_url: str, password: str) -> None:
    hub_cli(env, "migrate")
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        users = await connection.fetchval("SELECT count(*) FROM users")
    finally:
        await connection.close()
    if users:
        print(f"reusing the seeded database ({users} users)", flush=True)
        return
    started = time.monotonic()
    hub_cli(env, "seed", *SEED_ARGS, "--seed", SEED, "--demo-password", password)
    print(f"seeded the large dataset in {time.monotonic() - started:.0f} s", flush=True)
    # what autovacuum does within a minute of the load (and would otherwise do during a measurement): the
    # visibility map that lets index-only scans skip the heap
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute("VACUUM (ANALYZE)")
    finally:
        await connection.close()


async def pick_ids(database_url: str) -> Dataset:
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        purchase = await connection.fetchrow(
            "SELECT p.id::text AS id, (SELECT count(*) FROM purchase_items i WHERE i.purchase_id = p.id) AS items "
            "FROM purchases p JOIN users u ON u.id = p.user_id WHERE u.email = $1 "
            "ORDER BY p.purchase_date DESC, p.id DESC LIMIT 1",
            DEMO_EMAIL,
        )
        heavy = await connection.fetchrow(
            "SELECT u.email, count(*) AS purchases FROM purchases p JOIN users u ON u.id = p.user_id "
            "GROUP BY u.email ORDER BY count(*) DESC, u.email LIMIT 1"
        )
        product = await connection.fetchrow(
            "SELECT normalized_product_id::text AS id, count(*) AS price_rows FROM price_history "
            "GROUP BY normalized_product_id ORDER BY count(*) DESC, normalized_product_id LIMIT 1"
        )
        rare_word = await connection.fetchval(
            "SELECT word FROM (SELECT regexp_split_to_table(lower(canonical_name), '[^a-z]+') AS word "
            "FROM normalized_products) AS words WHERE length(word) >= 6 GROUP BY word HAVING count(*) = 1 "
            "ORDER BY word LIMIT 1"
        )
    finally:
        await connection.close()
    if purchase is None or heavy is None or product is None or rare_word is None:
        raise RuntimeError("the database holds no purchases of the demo user, no prices or no products")
    return Dataset(
        purchase["id"],
        purchase["items"],
        product["id"],
        product["price_rows"],
        heavy["email"],
        heavy["purchases"],
        rare_word,
    )


async def gateway_session(database_url: str, token: str | None) -> None:
    """Add (token) or remove (None) the demo user's Better-Auth session, the credential the old gateway checks."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute("DELETE FROM sessions WHERE id = $1", GATEWAY_SESSION_ID)
        if token is not None:
            await connection.execute(
                "INSERT INTO sessions (id, token, user_id, expires_at) SELECT $1, $2, id, now() + interval '1 day' "
                "FROM users WHERE email = $3",
                GATEWAY_SESSION_ID,
                token,
                DEMO_EMAIL,
            )
    finally:
        await connection.close()


async def login(http: aiohttp.ClientSession, base: str, email: str, password: str) -> str:
    async with http.post(f"{base}/auth/login", json={"email": email, "password": password}) as response:
        if response.status != 200:
            raise RuntimeError(f"login as {email} failed: {response.status} {await response.text()}")
        token: str = (await response.json())["access_token"]
        return token


async def deep_page(http: aiohttp.ClientSession, base: str, token: str) -> tuple[str, int]:
    """Follow ``Link: rel="next"`` from the first page for up to DEEP_PAGES pages: (that page's path, its number)."""
    path = f"{API}/purchases?page_size={PAGE_SIZE}"
    pages = 1
    deadline = time.monotonic() + LINK_DEADLINE_SECONDS
    while pages < DEEP_PAGES and time.monotonic() < deadline:
        async with http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status}")
            found = re.match(r'<([^>]+)>;\s*rel="next"', response.headers.get("Link", ""))
        if found is None:
            break
        path = found.group(1)
        pages += 1
    return path, pages


# --- one measurement -------------------------------------------------------------------------------------------


async def check(http: aiohttp.ClientSession, url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {body[:500]!r}")
        return len(body)


async def measure(
    server: Target,
    backends: Backends,
    endpoint: Endpoint,
    token: str | None,
    *,
    threads: int,
    connections: int,
    seconds: int,
    script_dir: Path,
    profile: bool,
) -> dict[str, Any]:
    url = server.url + endpoint.path
    script: str | None = None
    if endpoint.bust:
        script_path = script_dir / f"bust-{secrets.token_hex(4)}.lua"
        script_path.write_text(f'RUN = "{secrets.token_hex(4)}"\n' + BUST_SCRIPT)
        script = str(script_path)
    async with aiohttp.ClientSession() as http:
        body_bytes = await check(http, url, token)
    wrk = functools.partial(run_wrk, url, threads=threads, connections=connections, token=token, script=script)
    await asyncio.to_thread(wrk, seconds=WARMUP_SECONDS)

    sampler = None
    if profile and server.pid is not None:
        sampler = await start_profile(server.pid, endpoint.name, connections, seconds)
    database_before = await backends.database_cpu()
    redis_before = await backends.redis_cpu()
    own_before = own_cpu()
    server_before = tree_cpu_seconds(server.pid) if server.pid is not None else 0.0
    wrk_before = children_cpu()
    busy_before, total_before = machine_busy()
    started = time.monotonic()
    output = await asyncio.to_thread(wrk, seconds=seconds)
    elapsed = time.monotonic() - started
    busy_after, total_after = machine_busy()
    server_cpu = tree_cpu_seconds(server.pid) - server_before if server.pid is not None else 0.0
    wrk_cpu = children_cpu() - wrk_before
    own = own_cpu() - own_before
    database_after = await backends.database_cpu()
    database_cpu = sum(cpu - database_before.get(pid, 0.0) for pid, cpu in database_after.items())
    redis_cpu = await backends.redis_cpu() - redis_before
    if sampler is not None:
        await sampler.wait()
    result = parse_wrk(output)
    cores = os.cpu_count() or 1
    machine_cpu = cores * (busy_after - busy_before) / max(1.0, total_after - total_before)
    others = machine_cpu - (server_cpu + wrk_cpu + database_cpu + redis_cpu + own) / elapsed
    data = {
        "target": server.name,
        "endpoint": endpoint.name,
        "path": endpoint.path if len(endpoint.path) < 120 else endpoint.path[:117] + "...",
        "cached": endpoint.cacheable and not endpoint.bust,
        "threads": threads,
        "connections": connections,
        "seconds": seconds,
        "body_bytes": body_bytes,
        "requests_per_s": result.requests_per_s,
        "requests": result.requests,
        "p50_ms": result.p50_ms,
        "p75_ms": result.p75_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
        "server_cpu_pct": 100 * server_cpu / elapsed if server.pid is not None else None,
        "server_cpu_us_per_request": server_cpu * 1e6 / max(1, result.requests) if server.pid is not None else None,
        "wrk_cpu_pct": 100 * wrk_cpu / elapsed,
        "database_cpu_pct": 100 * database_cpu / elapsed,
        "redis_cpu_pct": 100 * redis_cpu / elapsed,
        "machine_cpu_pct": 100 * machine_cpu,
        "other_cpu_pct": max(0.0, 100 * others),
    }
    print(
        f"  {server.name:<11} {endpoint.name:<22} c={connections:<3} {data['requests_per_s']:>8.0f} req/s"
        f"  p50 {data['p50_ms']:6.2f} ms  p99 {data['p99_ms']:6.2f} ms  max {data['max_ms']:7.2f} ms"
        f"  server {_figure(data['server_cpu_pct'], 3)}% ({_figure(data['server_cpu_us_per_request'], 0)} µs/req)"
        f"  wrk {data['wrk_cpu_pct']:3.0f}%"
        f"  postgres {data['database_cpu_pct']:3.0f}%  redis {data['redis_cpu_pct']:3.0f}%"
        f"  other {data['other_cpu_pct']:3.0f}%  non-2xx {data['non_2xx']}  errors {data['socket_errors']}",
        flush=True,
    )
    return data


async def start_profile(pid: int, name: str, connections: int, seconds: int) -> asyncio.subprocess.Process | None:
    """py-spy samples the hub during the measured run (it costs the shared CPU a few per cent)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("  (py-spy not found: no profile)", flush=True)
        return None
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"rest_load-{name}-c{connections}.speedscope.json"
    return await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "200",
        "--format",
        "speedscope",
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


# --- the run ---------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def where(database_url: str | None, redis_url: str | None) -> AsyncIterator[Backing]:
    if database_url and redis_url:
        yield Backing(database_url, redis_url)
        return
    async with backing() as fresh:
        yield fresh


def _figure(value: float | None, width: int) -> str:
    return f"{value:>{width}.0f}" if value is not None else f"{'-':>{width}}"


def summary(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'target':<11} {'endpoint':<22} {'workers':>7} {'cached':>6} {'conns':>5} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} "
        f"{'max ms':>7} {'server%':>7} {'µs/req':>6} {'wrk%':>5} {'pg%':>4} {'redis%':>6} {'other%':>6} {'errors':>6}"
    )
    for r in rows:
        print(
            f"{r['target']:<11} {r['endpoint']:<22} {r.get('workers') or '-':>7} {'yes' if r['cached'] else 'no':>6} "
            f"{r['connections']:>5} "
            f"{r['requests_per_s']:>8.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.2f} "
            f"{_figure(r['server_cpu_pct'], 7)} {_figure(r['server_cpu_us_per_request'], 6)} "
            f"{r['wrk_cpu_pct']:>5.0f} {r['database_cpu_pct']:>4.0f} {r['redis_cpu_pct']:>6.0f} "
            f"{r['other_cpu_pct']:>6.0f} {r['non_2xx'] + r['socket_errors']:>6}"
        )
    gateway = {(r["endpoint"], r["connections"]): r for r in rows if r["target"] == OLD_GATEWAY}
    for r in rows:
        old = gateway.get((r["endpoint"], r["connections"]))
        if r["target"] == HUB and old is not None and old["requests_per_s"]:
            print(
                f"hub / old gateway, {r['endpoint']} c={r['connections']}: "
                f"{r['requests_per_s'] / old['requests_per_s']:.2f}x req/s, p50 {r['p50_ms']:.2f} vs "
                f"{old['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} vs {old['p99_ms']:.2f} ms"
            )


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    password = args.demo_password or secrets.token_urlsafe(12)
    rows: list[dict[str, Any]] = []
    async with where(args.database_url, args.redis_url) as backing_urls:
        env = hub_env(backing_urls.database_url, backing_urls.redis_url)
        await seed_large(env, backing_urls.database_url, password)
        data = await pick_ids(backing_urls.database_url)
        print(
            f"demo purchase {data.demo_purchase_id} ({data.demo_purchase_items} items), product {data.product_id} "
            f"({data.product_price_rows} price rows), deep pages as {data.heavy_email} "
            f"({data.heavy_purchases} purchases), rare word {data.rare_word!r}",
            flush=True,
        )
        for workers in args.workers:
            hub = await start_hub(env, workers=workers)
            print(f"hub: {workers} worker process(es)", flush=True)
            targets = [Target(HUB, hub.url, hub.pid)]
            gateway_token = secrets.token_urlsafe(24).replace("-", "").replace("_", "")  # no dot: the token is all
            if args.old_gateway:
                await gateway_session(backing_urls.database_url, gateway_token)
                targets.append(Target(OLD_GATEWAY, args.old_gateway.rstrip("/"), args.old_gateway_pid))
            database = await asyncpg.connect(
                backing_urls.database_url.replace("postgresql+asyncpg://", "postgresql://")
            )
            redis = Redis.from_url(backing_urls.redis_url)
            backends = Backends(database, redis)
            try:
                async with aiohttp.ClientSession() as http:
                    heavy_token = await login(http, hub.url, data.heavy_email, password)
                    deep_path, deep_pages = await deep_page(http, hub.url, heavy_token)
                print(f"deep page: page {deep_pages} of {data.heavy_email}'s purchases", flush=True)
                product = f"{API}/products/{data.product_id}"
                trend = f"{API}/public/trends/{data.product_id}?days=90"
                search = f"{API}/products?q="
                endpoints = [
                    Endpoint("purchases_first", f"{API}/purchases?page_size={PAGE_SIZE}", DEMO_EMAIL),
                    Endpoint("purchases_deep", deep_path, data.heavy_email),
                    Endpoint("purchase_detail", f"{API}/purchases/{data.demo_purchase_id}", DEMO_EMAIL),
                    Endpoint("product_cached", product, DEMO_EMAIL),
                    Endpoint("product_uncached", product, DEMO_EMAIL, bust=True),
                    Endpoint("trend_cached", trend, None),
                    Endpoint("trend_uncached", trend, None, bust=True),
                    Endpoint("search_common", search + SEARCH_COMMON, DEMO_EMAIL, cacheable=False, gateway=True),
                    Endpoint("search_prefix", search + SEARCH_PREFIX, DEMO_EMAIL, cacheable=False, gateway=True),
                    Endpoint("search_rare", search + data.rare_word, DEMO_EMAIL, cacheable=False, gateway=True),
                    Endpoint("search_none", search + SEARCH_NONE, DEMO_EMAIL, cacheable=False, gateway=True),
                ]
                chosen = [e for e in endpoints if not args.only or e.name in args.only]
                with tempfile.TemporaryDirectory(prefix="rest-load-") as scripts:
                    for connections in args.connections:
                        print(f"wrk -t{args.threads} -c{connections} -d{args.duration}s --latency", flush=True)
                        for endpoint in chosen:
                            for target in targets:
                                if target.name == OLD_GATEWAY and not endpoint.gateway:
                                    continue
                                token = gateway_token if target.name == OLD_GATEWAY else None
                                if target.name == HUB and endpoint.auth is not None:
                                    # a fresh access token for each run: they live 15 minutes
                                    async with aiohttp.ClientSession() as http:
                                        token = await login(http, hub.url, endpoint.auth, password)
                                result = await measure(
                                    target,
                                    backends,
                                    endpoint,
                                    token,
                                    threads=min(args.threads, connections),
                                    connections=connections,
                                    seconds=args.duration,
                                    script_dir=Path(scripts),
                                    profile=args.profile,
                                )
                                result.update(
                                    {
                                        "label": args.label,
                                        "workers": workers if target.name == HUB else None,
                                        "machine": machine(),
                                        "deep_page": deep_pages if endpoint.name == "purchases_deep" else None,
                                    }
                                )
                                record("rest_load", result)
                                rows.append(result)
            finally:
                await database.close()
                await redis.aclose()
                await hub.stop()
                if args.old_gateway:
                    await gateway_session(backing_urls.database_url, None)
    summary(rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default=",".join(map(str, CONNECTIONS)), help="wrk -c, comma-separated")
    parser.add_argument("--threads", type=int, default=THREADS, help="wrk -t (at most the connection count)")
    parser.add_argument("--duration", type=int, default=DURATION_SECONDS, help="measured seconds per endpoint")
    parser.add_argument("--only", default="", help="endpoint names, comma-separated (default: all)")
    parser.add_argument("--label", default="", help="a tag stored with each JSON record (before, after, …)")
    parser.add_argument("--profile", action="store_true", help="py-spy the hub during each measured run")
    parser.add_argument("--workers", default="1", help="serve --workers N for each N, comma-separated (e.g. 1,2)")
    parser.add_argument("--database-url", help="reuse this seeded (or empty) database instead of a fresh one")
    parser.add_argument("--redis-url", help="with --database-url: the Redis to use")
    parser.add_argument("--demo-password", help="the seeded users' password (needed when reusing a database)")
    parser.add_argument(
        "--old-gateway",
        default=os.environ.get("CARTSNITCH_OLD_GATEWAY_URL"),
        help="base URL of a running old gateway on the same database: the search rows are measured there too",
    )
    parser.add_argument(
        "--old-gateway-pid",
        type=int,
        default=int(os.environ["CARTSNITCH_OLD_GATEWAY_PID"]) if os.environ.get("CARTSNITCH_OLD_GATEWAY_PID") else None,
        help="the old gateway's process id, to read its CPU time",
    )
    args = parser.parse_args()
    args.connections = [int(n) for n in args.connections.split(",")]
    args.workers = [int(n) for n in args.workers.split(",")]
    args.only = {name for name in args.only.split(",") if name}
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (Debian package wrk)")
    if args.database_url and not args.demo_password:
        sys.exit("--demo-password is needed with --database-url (the password the database was seeded with)")
    if args.old_gateway and not args.database_url:
        sys.exit("--old-gateway needs --database-url: the gateway must read the database this scenario uses")
    asyncio.run(main(args))
