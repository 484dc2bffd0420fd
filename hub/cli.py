"""The ``cartsnitch-hub`` command: serve, migrate, seed, publish, token.

A command that cannot go on for a reason outside the code (a setting, a file, a service that is down) says why in
one line on stderr and exits non-zero without a traceback: 2 for what the command line or the settings ask, 1 for
what it found (a port taken, a database that does not answer), 130 after Ctrl-C (a ``serve`` that already listens
takes Ctrl-C as it takes SIGTERM: it drains and exits 0)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import orjson

from hub.settings import SECRETS, Settings, SettingsError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("hub")
T = TypeVar("T")

DESCRIPTION = (
    "CartSnitch Hub: serve the REST API and real-time hub, migrate or seed its database, publish an event, "
    "print access tokens."
)
DEMO_EMAIL = "demo@cartsnitch.local"
GC_PAUSE_LOGGED = 0.05
SHUTDOWN_TIMEOUT_SECONDS = 10
"""How long ``serve`` waits for open requests and connections after SIGTERM (the Kubernetes grace period covers it)."""
TOKEN_TABLES = ("users", "refresh_token_families")
SEED_SIZES = ("users", "products", "price_rows", "purchases", "seed")
"""The ``seed`` options, named as ``SeedSize``'s fields."""


class Failure(Exception):
    """A command cannot go on: ``main`` prints the message (one line, no credentials) and exits with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _settings(needs: Sequence[str] = tuple(SECRETS)) -> Settings:
    """The settings, or exit 2 listing every problem; ``needs``: the secrets the command uses (publishing through
    Redis must not ask for a JWT key it never uses)."""
    try:
        return Settings.from_env(needs=needs)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _without_password(url: str) -> str:
    """``url`` fit to print: the password of its user part (and any ``password=`` in its query) masked."""
    from hub.infra.logs import redact

    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        url = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}").geturl()
    return redact(url)


def _local_url(host: str, port: int) -> str:
    """The URL that reaches, from this machine, a hub listening on host:port (a wildcard address through loopback:
    the listener on ``::`` is IPv6 only)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _dev_secrets(settings: Settings, *, create: bool) -> tuple[Settings, dict[str, str]]:
    """The settings with dev mode's generated secrets filled in; ``create`` only for ``serve`` and ``seed`` (whose
    demo password ``serve`` shows): the commands that talk to a hub someone started must not make up keys that hub
    would not know."""
    from hub.infra import devsecrets

    try:
        if create:
            return devsecrets.load_or_create(settings)
        return devsecrets.load_existing(settings), {}
    except devsecrets.DevSecretsError as exc:
        raise Failure(str(exc)) from None


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


def _on_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` on an engine of the settings' database, in an event loop of its own.

    Connecting waits CARTSNITCH_DATABASE_TIMEOUT_SECONDS (a server that accepts and never answers would otherwise
    hold the command for 30 s). A database that cannot be reached or opened, refuses the login or does not exist
    ends the command with one line naming it, its password masked."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from hub.store.engine import build_engine

    async def run() -> T:
        engine = build_engine(settings.database_url, wait_seconds=settings.database_timeout_seconds)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (OSError, DBAPIError, PoolTimeout) as exc:
        reason = _database_reason(exc, settings.database_timeout_seconds)
        raise Failure(f"cannot use the database {_without_password(settings.database_url)}: {reason}") from None


def _database_reason(exc: Exception, timeout: float) -> str:
    from sqlalchemy.exc import DBAPIError

    from hub.infra.logs import redact

    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s (CARTSNITCH_DATABASE_TIMEOUT_SECONDS)"
    if isinstance(exc, ConnectionError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own text repeats the address
    if isinstance(exc, OSError):
        text = exc.strerror or str(exc)
        return f"{text}: {exc.filename}" if exc.filename else text
    if isinstance(exc, DBAPIError):
        # the driver's error alone: SQLAlchemy's message would add the statement and its parameters
        return redact(str(exc.orig).splitlines()[0] if str(exc.orig) else type(exc.orig).__name__)
    return redact(str(exc)) or type(exc).__name__


async def _upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    from alembic.util.exc import CommandError

    from hub.store.migrate import upgrade

    try:
        await upgrade(engine, revision)
    except CommandError as exc:
        raise Failure(f"cannot migrate to {revision}: {exc}", 2) from None


async def _prepare(engine: AsyncEngine, settings: Settings, demo_password: str | None) -> tuple[bool, bool]:
    """Migrate, and seed demo data into an empty database when asked: whether it was seeded now, and whether
    ``demo_password`` signs the demo user in (a database seeded by hand may have another password)."""
    from hub.store import seed

    await _upgrade(engine)
    if settings.seed_demo_data and await seed.is_empty(engine):
        await seed.seed(engine, seed.SeedSize.demo(), demo_email=DEMO_EMAIL, demo_password=demo_password)
        return True, demo_password is not None
    return False, demo_password is not None and await _signs_in(engine, DEMO_EMAIL, demo_password)


async def _signs_in(engine: AsyncEngine, email: str, password: str) -> bool:
    from sqlalchemy.ext.asyncio import AsyncSession

    from hub.infra.security import verify_password
    from hub.store import users

    async with AsyncSession(engine) as session:
        user = await users.get_user_by_email(session, email=email)
        hashed = await users.get_credential_hash(session, user_id=user.id) if user is not None else None
    return hashed is not None and await verify_password(password, hashed)


def _check_can_listen(host: str, port: int) -> None:
    """Fail before migrating when the port is taken or the address is not this host's (the bind itself is checked
    again when serving)."""
    from hub import workers

    try:
        workers.check_port_free(host, port)
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


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
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    _check_can_listen(host, port)
    stored: dict[str, str] = {}
    if settings.dev_mode:
        settings, stored = _dev_secrets(settings, create=True)
        log.warning(
            "dev mode: secrets come from %s (never use dev mode in production)", devsecrets.secrets_path(settings)
        )
    settings = settings.with_overrides(host=host, port=port)
    _install_uvloop()
    seeded, demo_signs_in = _on_database(
        settings, lambda engine: _prepare(engine, settings, stored.get("demo_password"))
    )
    if settings.demo_sync:
        log.warning("demo sync mode: no ReceiptWitness is configured, store syncs are simulated with demo data")
    url = _local_url(host, port)
    lines = [f"CartSnitch Hub listening on {url}  (docs: {url}/docs)"]
    if settings.seed_demo_data and demo_signs_in:
        lines.append(
            f"demo login: {DEMO_EMAIL} / {stored['demo_password']}" + ("  (demo data loaded)" if seeded else "")
        )
    live = (
        f"  (a simulated price change every {settings.demo_ticker_seconds:g} s)" if settings.demo_ticker_seconds else ""
    )
    lines.append(f"dashboard: {url}/{live}")
    if args.workers == 1:
        _serve(settings, lines)
        return 0
    from hub import workers

    for line in lines:
        print(line, flush=True)
    return workers.supervise(settings, args.workers, _serve_worker, SHUTDOWN_TIMEOUT_SECONDS)


def _serve(settings: Settings, lines: Sequence[str] = (), *, worker: bool = False) -> None:
    """Run one hub process until SIGTERM or SIGINT (a worker of ``--workers`` shares the port with the others);
    ``lines`` are printed once the port is bound."""
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

    def announce() -> None:
        for line in lines:
            print(line, flush=True)

    try:
        asyncio.run(
            server.serve(
                app,
                host=settings.host,
                port=settings.port,
                reuse_port=worker,
                shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
                listening=announce,
            )
        )
    except server.CannotListen as exc:
        raise Failure(str(exc)) from None


def _serve_worker(settings: Settings) -> None:
    """The entry point of one ``--workers`` process (spawned: a fresh interpreter with its own event loop)."""
    from hub import workers

    workers.detach_from_terminal()
    _configure_logging(settings.log_level, settings.log_lines_per_second)
    _install_uvloop()
    try:
        _serve(settings, worker=True)
    except Failure as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(exc.code) from None


def cmd_migrate(args: argparse.Namespace) -> int:
    from hub.store.migrate import current_revision

    settings = _settings()
    _configure_logging(settings.log_level)

    async def run(engine: AsyncEngine) -> str | None:
        await _upgrade(engine, args.revision)
        return await current_revision(engine)

    print(f"database at revision {_on_database(settings, run)}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from hub.store import seed

    settings = _settings()
    _configure_logging(settings.log_level)
    demo = seed.SeedSize.demo()
    size = seed.SeedSize(
        **{name: getattr(demo, name) if getattr(args, name) is None else getattr(args, name) for name in SEED_SIZES}
    )

    password = args.demo_password
    if password is None and settings.dev_mode:
        # the embedded default: the password ``serve`` shows, from the secrets file beside the database
        settings, stored = _dev_secrets(settings, create=True)
        password = stored["demo_password"]

    async def run(engine: AsyncEngine) -> Any:
        await _upgrade(engine)
        return await seed.seed(engine, size, demo_email=DEMO_EMAIL, demo_password=password)

    try:
        report = _on_database(settings, run)
    except (seed.SeedError, ValueError) as exc:
        print(f"cannot seed: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if password is not None and args.demo_password is None:
        print(f"demo login: {DEMO_EMAIL} / {password}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from channels.payloads import InvalidPayload, validate_payload

    settings = _settings(needs=())
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
    from redis.exceptions import RedisClusterException, RedisError

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
    except (RedisError, RedisClusterException, OSError) as exc:
        raise Failure(f"cannot publish through Redis at {_without_password(settings.redis_url)}: {exc}") from None
    finally:
        await client.aclose()
    print(event_id)
    return 0


async def _publish_http(settings: Settings, args: argparse.Namespace, payload: Any) -> int:
    """Without Redis the running hub's broker is in its own process: hand the event to its internal API."""
    import aiohttp

    from hub.infra import devsecrets

    if settings.dev_mode:
        settings, _ = _dev_secrets(settings, create=False)
    if not settings.service_key:
        where = f" (or the dev-mode secrets {devsecrets.secrets_path(settings)} of a hub started here)"
        raise Failure(
            "no service key to publish through the hub's internal API: set CARTSNITCH_SERVICE_KEY"
            + (where if settings.dev_mode else ""),
            2,
        )
    base = (args.url or _local_url(settings.host, settings.port)).rstrip("/")
    body = {"event_type": args.event_type, "payload": payload, "service": args.service}
    headers = {"X-Service-Key": settings.service_key}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(base + "/internal/events", json=body, headers=headers) as response,
        ):
            raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"cannot reach the hub at {base}: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 1
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise Failure(f"the server at {base} answered {response.status} without a JSON object: is it the hub?")
    if response.status != 202:
        print(f"refused ({response.status}): {data.get('detail') or data}", file=sys.stderr)
        for error in data.get("errors", []):
            print(f"  {error.get('field')}: {error.get('message')}", file=sys.stderr)
        return 2
    print(data["id"])
    return 0


def _existing_database(settings: Settings) -> None:
    """Refuse a SQLite file that does not exist: opening it would create an empty one."""
    if not settings.is_sqlite:
        return
    path = settings.database_url.split("///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:" and not Path(path).exists():
        raise Failure(
            f"no database at {Path(path).absolute()}: run `cartsnitch-hub migrate` first "
            "(or start `cartsnitch-hub serve`)"
        )


async def _has_tables(engine: AsyncEngine, names: Sequence[str]) -> bool:
    from sqlalchemy import inspect

    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: all(inspect(sync).has_table(name) for name in names))


def cmd_token(args: argparse.Namespace) -> int:
    from hub.infra import devsecrets
    from hub.infra.security import TokenCodec, random_id
    from hub.store import tokens, users
    from hub.store.engine import build_sessionmaker

    settings = _settings(needs=("jwt_secret_key",))
    _existing_database(settings)
    if settings.dev_mode:
        settings, _ = _dev_secrets(settings, create=False)
    if not settings.jwt_secret_key:
        raise Failure(
            "no JWT secret to sign with: set CARTSNITCH_JWT_SECRET_KEY, or start `cartsnitch-hub serve` here once "
            f"(dev mode keeps it in {devsecrets.secrets_path(settings)})",
            2,
        )

    async def run(engine: AsyncEngine) -> list[str] | set[str]:
        if not await _has_tables(engine, TOKEN_TABLES):
            raise Failure("the database has no CartSnitch Hub schema: run `cartsnitch-hub migrate` first")
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

    result = _on_database(settings, run)
    if isinstance(result, set):
        print("unknown user id(s): " + ", ".join(sorted(result)), file=sys.stderr)
        return 2
    sys.stdout.write("".join(token + "\n" for token in result))
    return 0


def _whole_number(least: int, most: int | None = None, name: str = "number") -> Callable[[str], int]:
    """An argparse type: a whole number from ``least`` (to ``most``). Its errors are sentences (argparse would
    otherwise print the function's name: ``invalid _positive value``)."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
        if most is not None and not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be between {least} and {most}")
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}")
        return value

    parse.__name__ = name
    return parse


_count = _whole_number(0, name="count")
_positive = _whole_number(1, name="positive number")
_port = _whole_number(1, 65535, name="port")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cartsnitch-hub", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the REST API and Socket.IO hub")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1, or CARTSNITCH_HOST)")
    serve.add_argument("--port", type=_port, help="port, 1-65535 (default 8000, or CARTSNITCH_PORT)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="processes sharing the port (SO_REUSEPORT), each with its own event loop; more than 1 needs Redis "
        "(default 1: one process)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument(
        "--revision", default="head", help="the Alembic revision to upgrade to (default head: the newest)"
    )
    migrate.set_defaults(func=cmd_migrate)

    # the demo size fills what is not given: importing the data layer for the defaults would cost every command
    # (an argument error among them) a second of start-up
    seed = sub.add_parser("seed", help="fill the database with deterministic demo data")
    seed.add_argument("--users", type=_count, help="(default: the demo size, 25)")
    seed.add_argument("--products", type=_count, help="(default 300)")
    seed.add_argument("--price-rows", type=_count, help="(default 30000)")
    seed.add_argument("--purchases", type=_count, help="(default 600)")
    seed.add_argument("--seed", type=int, help="random seed (same seed, same data; default 42)")
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
        "--url",
        help="the hub to hand the event to when no Redis is configured (default: the address serve listens on, "
        "from CARTSNITCH_HOST and CARTSNITCH_PORT: http://127.0.0.1:8000)",
    )
    publish.set_defaults(func=cmd_publish)

    token = sub.add_parser(
        "token",
        help="print an access token per user id (operators, load tests); put the ids "
        "after -- when one starts with a dash",
    )
    token.add_argument("user_ids", nargs="+", metavar="USER_ID")
    token.add_argument("--ttl", type=_positive, default=3600, help="lifetime in seconds (default 3600)")
    token.set_defaults(func=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Failure as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        # asyncio.run has cancelled what was running (a migration, the demo data): nothing to add to it
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
