"""Issue 10, point 2: a frozen Redis (SIGSTOP) holds no request longer than one Redis timeout (2 s), plus the half
second the cache and the rate limiter, which can do without Redis, give it: publishes get a 503, public reads fall
back to the database, nothing piles up. Before: publishes were held for the whole freeze (p50 10.7 s, p99 20.5 s)
and cached public reads took 7 to 10 s."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import aiohttp
import pytest

from hub.store.engine import build_engine, build_sessionmaker
from tests import factories
from tests.cluster import create_users, sync_payload
from tests.conftest import make_settings
from tests.faults.conftest import Hubs, repeated_lines
from tests.services import RedisProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

FREEZE_AT = 1.0
FREEZE_SECONDS = 5.0
RUN_SECONDS = 8.0
TIMEOUT = 2.0
"""CARTSNITCH_REDIS_TIMEOUT_SECONDS"""
FALLBACK_WAIT = TIMEOUT / 4
"""What the cache and the rate limiter, which can do without Redis, wait for it."""
SLACK = 0.5
"""Room for a loaded machine."""


async def test_a_frozen_redis_costs_a_request_one_timeout_at_most(
    pg_url: str, redis_process: RedisProcess, hubs: Hubs
) -> None:
    settings = make_settings(pg_url, redis_process.url)
    [user] = await create_users(settings, 1)
    engine = build_engine(pg_url)
    async with build_sessionmaker(engine).begin() as session:
        store = await factories.create_store(session)
        product = await factories.create_product(session)
        await factories.create_price(session, product=product, store=store, observed=date.today(), regular="2.50")
    await engine.dispose()
    [hub] = await hubs.start(settings, CARTSNITCH_RATE_LIMIT_ENABLED="true", CARTSNITCH_RATE_LIMIT_REQUESTS="1000000")
    service = {"X-Service-Key": settings.service_key}
    bearer = {"Authorization": f"Bearer {user.token}"}
    # (kind, started after the run began, status, seconds)
    done: list[tuple[str, float, int | str, float]] = []

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def call(kind: str, method: str, url: str, **kwargs: object) -> None:
            started = time.monotonic()
            try:
                async with http.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
                    await response.read()
                    status: int | str = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            done.append((kind, started - begin, status, time.monotonic() - started))

        begin = time.monotonic()
        frozen = thawed = False
        pending: list[asyncio.Future[None]] = []
        tick = 0
        while (now := time.monotonic() - begin) < RUN_SECONDS:
            if not frozen and now >= FREEZE_AT:
                redis_process.freeze()
                frozen = True
            if not thawed and now >= FREEZE_AT + FREEZE_SECONDS:
                redis_process.thaw()
                thawed = True
            body = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user.id, tick)}
            headers = {**service, "Idempotency-Key": f"freeze-{tick}"}
            pending.append(
                asyncio.ensure_future(call("publish", "POST", hub.url + "/internal/events", json=body, headers=headers))
            )
            if tick % 2 == 0:
                pending.append(
                    asyncio.ensure_future(call("public", "GET", f"{hub.url}/api/v1/public/trends/{product.id}"))
                )
            if tick % 4 == 0:
                pending.append(
                    asyncio.ensure_future(call("events", "GET", hub.url + "/api/v1/me/events", headers=bearer))
                )
            tick += 1
            await asyncio.sleep(0.05)
        await asyncio.gather(*pending)

    def of(kind: str, since: float = 0.0, until: float = RUN_SECONDS) -> list[tuple[str, float, int | str, float]]:
        return [d for d in done if d[0] == kind and since <= d[1] < until]

    assert {d[2] for d in of("publish")} <= {202, 503}, done
    assert {d[2] for d in of("events")} <= {200, 503}, done
    assert {d[2] for d in of("public")} == {200}, done  # the database answers what the cache cannot
    slowest = {kind: max(d[3] for d in of(kind)) for kind in ("publish", "public", "events")}
    assert slowest["publish"] <= TIMEOUT + SLACK, slowest
    assert slowest["public"] <= FALLBACK_WAIT + SLACK, slowest
    assert slowest["events"] <= FALLBACK_WAIT + TIMEOUT + SLACK, slowest  # the rate limiter, then the history
    # sent while Redis was frozen (and not answered before the freeze ended): refused, not held
    during = of("publish", FREEZE_AT + 0.1, FREEZE_AT + FREEZE_SECONDS - TIMEOUT - SLACK)
    assert len(during) >= 20
    assert {d[2] for d in during} == {503}, during
    # a second after the freeze ended, Redis answers again
    after = of("publish", FREEZE_AT + FREEZE_SECONDS + 1.0)
    assert after and {d[2] for d in after} == {202}, after
    log = hubs.log(hub)
    assert " ERROR " not in log, log
    assert repeated_lines(log) == {}, log
