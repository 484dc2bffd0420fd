"""The ``cartsnitch-hub`` command: serve, migrate, seed, publish, token."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from hub.settings import Settings, SettingsError

log = logging.getLogger("hub")

DEMO_EMAIL = "demo@cartsnitch.local"
GC_PAUSE_LOGGED = 0.05
SHUTDOWN_TIMEOUT_SECONDS = 10
"""How long ``serve`` waits for open requests and connections after SIGTERM (the Kubernetes grace period covers it)."""


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _configure_logging(level: str, lines_per_second: int = 20) -> None:
    from hub.infra import logs

    logs.install(level, lines_per_second)


def _tune_gc() -> None:
    """Collections that stay short: the delivery path allocates short-lived objects at a high rate, and a young
    generation of 50,000 objects took 50-130 ms to collect at 4,000 events/s (every delivery waited); 7,000 keeps
    each under ~10 ms. Objects alive at start-up are frozen out of every collection. A collection long enough to
    delay deliveries is logged."""
    gc.set_threshold(7_000, 20, 100)
    started: list[float] = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif (pause := time.perf_counter() - started[0]) > GC_PAUSE_LOGGED:
            log.warning("garbage collection (generation %d) paused for %.0f ms", info["generation"], pause * 1000)

    gc.callbacks.append(timed)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _prepare(settings: Settings, demo_password: str | None) -> tuple[bool, int]:
    """Migrate, and seed demo data into an empty database when asked; (seeded now, users in the database)."""
    from hub.store import seed
    from hub.store.engine import build_engine
    from hub.store.migrate import upgrade

    engine = build_engine(settings.database_url)
    try:
        await upgrade(engine)
        seeded = False
        if settings.seed_demo_data and await seed.is_empty(engine):
            await seed.seed(engine, seed.SeedSize.demo(), demo_email=DEMO_EMAIL, demo_password=demo_password)
            seeded = True
        return seeded, await seed.count_users(engine)
    finally:
        await engine.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    from hub.infra import devsecrets

    settings = _settings()
    _configure_logging(settings.log_level, settings.log_lines_per_second)
    if args.workers > 1 and not settings.redis_url:
        print(
            f"--workers {args.workers} needs Redis (CARTSNITCH_REDIS_URL): without it every process has its own "
            "in-process event broker, and events published through one would never reach sockets on another",
            file=sys.stderr,
        )
        return 2
    stored: dict[str, str] = {}
    if settings.dev_mode:
        settings, stored = devsecrets.load_or_create(settings)
        log.warning(
            "dev mode: secrets come from %s (never use dev mode in production)", devsecrets.secrets_path(settings)
        )
    host = args.host or settings.host
    port = args.port or settings.port
    settings = settings.with_overrides(host=host, port=port)
    if args.workers > 1:
        from hub import workers

        try:
            workers.check_port_free(host, port)
        except OSError as exc:
            print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    _install_uvloop()
    seeded, _ = asyncio.run(_prepare(settings, stored.get("demo_password")))
    if settings.demo_sync:
        log.warning("demo sync mode: no ReceiptWitness is configured, store syncs are simulated with demo data")
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    lines = [f"CartSnitch Hub listening on http://{shown_host}:{port}  (docs: http://{shown_host}:{port}/docs)"]
    if settings.seed_demo_data and stored.get("demo_password"):
        lines.append(
            f"demo login: {DEMO_EMAIL} / {stored['demo_password']}" + ("  (demo data loaded)" if seeded else "")
        )
    live = (
        f"  (a simulated price change every {settings.demo_ticker_seconds:g} s)" if settings.demo_ticker_seconds else ""
    )
    lines.append(f"dashboard: http://{shown_host}:{port}/{live}")
    if args.workers == 1:
        _serve(settings, lines)
        return 0
    from hub import workers

    for line in lines:
        print(line, flush=True)
    return workers.supervise(settings, args.workers, _serve_worker, SHUTDOWN_TIMEOUT_SECONDS)


def _serve(settings: Settings, lines: Sequence[str] = (), *, worker: bool = False) -> None:
    """Run one hub process until SIGTERM or SIGINT (a worker of ``--workers`` shares the port with the others)."""
    from hub import server
    from hub.app import create_app

    app = create_app(settings)
    _tune_gc()

    async def freeze(_: Any) -> None:
        gc.freeze()

    app.on_startup.append(freeze)
    if worker:
        from hub import workers

        app.on_startup.append(workers.stop_with_parent)
    for line in lines:
        print(line, flush=True)
    asyncio.run(
        server.serve(
            app,
            host=settings.host,
            port=settings.port,
            reuse_port=worker,
            shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        )
    )


def _serve_worker(settings: Settings) -> None:
    """The entry point of one ``--workers`` process (spawned: a fresh interpreter with its own event loop)."""
    from hub import workers

    workers.detach_from_terminal()
    _configure_logging(settings.log_level, settings.log_lines_per_second)
    _install_uvloop()
    _serve(settings, worker=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    from hub.store.engine import build_engine
    from hub.store.migrate import current_revision, upgrade

    settings = _settings()
    _configure_logging(settings.log_level)

    async def run() -> str | None:
        engine = build_engine(settings.database_url)
        try:
            await upgrade(engine, args.revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    print(f"database at revision {asyncio.run(run())}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from hub.store import seed
    from hub.store.engine import build_engine
    from hub.store.migrate import upgrade

    settings = _settings()
    _configure_logging(settings.log_level)
    size = seed.SeedSize(
        users=args.users, products=args.products, price_rows=args.price_rows, purchases=args.purchases, seed=args.seed
    )

    async def run() -> Any:
        engine = build_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await seed.seed(engine, size, demo_email=DEMO_EMAIL, demo_password=args.demo_password)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except (seed.SeedError, ValueError) as exc:
        print(f"cannot seed: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from channels.payloads import InvalidPayload, validate_payload

    settings = _settings()
    try:
        payload = orjson.loads(args.payload)
    except orjson.JSONDecodeError as exc:
        print(f"--payload is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        validate_payload(args.event_type, payload)
    except InvalidPayload as exc:
        for error in exc.errors:
            print(f"invalid payload: {error['field']}: {error['message']}", file=sys.stderr)
        return 2
    if settings.redis_url:
        return asyncio.run(_publish_redis(settings, args, payload))
    return asyncio.run(_publish_http(settings, args, payload))


async def _publish_redis(settings: Settings, args: argparse.Namespace, payload: Any) -> int:
    from channels.publish import IdempotencyConflict, publish
    from hub.realtime.fanout import redis_client

    assert settings.redis_url is not None
    client = redis_client(settings.redis_url, timeout=10)  # a cluster client for a redis+cluster:// URL
    try:
        event_id = await publish(
            client,
            args.event_type,
            payload,
            service=args.service,
            max_events=settings.history_max_events,
            max_age_seconds=settings.history_max_age_seconds,
            idempotency_key=args.idempotency_key,
            idempotency_seconds=settings.idempotency_seconds,
        )
    except IdempotencyConflict as exc:
        print(f"the idempotency key recorded a different event ({exc.first_id})", file=sys.stderr)
        return 2
    finally:
        await client.aclose()
    print(event_id)
    return 0


async def _publish_http(settings: Settings, args: argparse.Namespace, payload: Any) -> int:
    """Without Redis the running hub's broker is in its own process: hand the event to its internal API."""
    import aiohttp

    from hub.infra import devsecrets

    if settings.dev_mode:
        settings, _ = devsecrets.load_or_create(settings)
    if not settings.service_key:
        print("CARTSNITCH_SERVICE_KEY is needed to publish through the hub's internal API", file=sys.stderr)
        return 2
    url = args.url.rstrip("/") + "/internal/events"
    body = {"event_type": args.event_type, "payload": payload, "service": args.service}
    headers = {"X-Service-Key": settings.service_key}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(url, json=body, headers=headers) as response,
        ):
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"cannot reach the hub at {args.url}: {exc}", file=sys.stderr)
        return 1
    if response.status != 202:
        print(f"refused ({response.status}): {data.get('detail') or data}", file=sys.stderr)
        for error in data.get("errors", []):
            print(f"  {error.get('field')}: {error.get('message')}", file=sys.stderr)
        return 2
    print(data["id"])
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from hub.infra import devsecrets
    from hub.infra.security import TokenCodec, random_id
    from hub.store import tokens, users
    from hub.store.engine import build_engine, build_sessionmaker

    settings = _settings()
    if settings.dev_mode:
        settings, _ = devsecrets.load_or_create(settings)

    async def run() -> list[str] | set[str]:
        engine = build_engine(settings.database_url)
        try:
            maker = build_sessionmaker(engine)
            async with maker.begin() as session:
                found = await users.existing_user_ids(session, user_ids=list(args.user_ids))
                missing = {uid for uid in args.user_ids if uid not in found}
                if missing:
                    return missing
                codec = TokenCodec(
                    settings.jwt_secret_key,
                    settings.jwt_algorithm,
                    settings.jwt_access_token_expire_minutes * 60,
                    86400,
                )
                out = []
                for user_id in args.user_ids:
                    family_id = random_id(16)
                    await tokens.insert_family(session, family_id=family_id, user_id=user_id)
                    out.append(codec.issue("access", user_id=user_id, family_id=family_id, ttl_seconds=args.ttl).token)
                return out
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    if isinstance(result, set):
        print("unknown user id(s): " + ", ".join(sorted(result)), file=sys.stderr)
        return 2
    sys.stdout.write("".join(token + "\n" for token in result))
    return 0


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _at_least_one(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cartsnitch-hub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the REST API and Socket.IO hub")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1, or CARTSNITCH_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, or CARTSNITCH_PORT)")
    serve.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        help="processes sharing the port (SO_REUSEPORT), each with its own event loop; more than 1 needs Redis "
        "(default 1: one process)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=cmd_migrate)

    from hub.store.seed import SeedSize

    default = SeedSize.demo()
    seed = sub.add_parser("seed", help="fill the database with deterministic demo data")
    seed.add_argument("--users", type=_positive, default=default.users)
    seed.add_argument("--products", type=_positive, default=default.products)
    seed.add_argument("--price-rows", type=_positive, default=default.price_rows)
    seed.add_argument("--purchases", type=_positive, default=default.purchases)
    seed.add_argument("--seed", type=int, default=default.seed, help="random seed (same seed, same data)")
    seed.add_argument("--demo-password", help="password of the demo user (default: random, printed)")
    seed.set_defaults(func=cmd_seed)

    publish = sub.add_parser("publish", help="publish one catalog event")
    publish.add_argument("event_type")
    publish.add_argument("--payload", required=True, help="the payload as JSON")
    publish.add_argument("--service", default="cli", help="the envelope's service name")
    publish.add_argument(
        "--idempotency-key",
        help="a key of this publish: run again with the same key (within 24 h), it records nothing and prints the "
        "first event's id",
    )
    publish.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the hub to hand the event to when no Redis is configured"
    )
    publish.set_defaults(func=cmd_publish)

    token = sub.add_parser(
        "token",
        help="print an access token per user id (operators, load tests); put the ids "
        "after -- when one starts with a dash",
    )
    token.add_argument("user_ids", nargs="+", metavar="USER_ID")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(func=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
