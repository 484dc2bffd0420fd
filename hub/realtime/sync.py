"""Store syncs: forwarded to ReceiptWitness when it is configured; otherwise, in demo mode, driven through their
states by the hub itself so the PWA's sync flow can be seen (labelled as demo everywhere)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from channels.errors import ProblemType
from channels.events import EventType
from hub import keys
from hub.errors import AppError
from hub.store import syncjobs
from hub.store.models import Store, SyncJob

log = logging.getLogger("hub.sync")

DEMO_STEPS = ((0.2, 4), (0.45, 11), (0.7, 19), (0.9, 26))
DEMO_STEP_SECONDS = 0.5
DEMO_MESSAGE = "demo sync: no ReceiptWitness is configured, these progress events are simulated"


async def _progress(
    app: web.Application, job: SyncJob, store: Store, *, status: str, progress: float, items: int, message: str | None
) -> None:
    async with app[keys.sessionmaker].begin() as session:
        await syncjobs.update_job(
            session, job_id=job.id, status=status, progress=progress, items_synced=items, message=message
        )
        if status == "succeeded":
            await syncjobs.mark_synced(session, user_id=job.user_id, store_id=store.id, at=datetime.now(UTC))
    await app[keys.ingest].publish(
        EventType.SYNC_PROGRESS,
        {
            "user_id": job.user_id,
            "store_slug": store.slug,
            "job_id": str(job.id),
            "status": status,
            "progress": progress,
            "items_synced": items,
            "message": message or "",
        },
        service="hub",
        source="hub",
    )


async def run_demo(app: web.Application, job: SyncJob, store: Store) -> None:
    log.info("demo sync %s of %s for %s (simulated: no ReceiptWitness configured)", job.id, store.slug, job.user_id)
    try:
        for progress, items in DEMO_STEPS:
            await asyncio.sleep(DEMO_STEP_SECONDS)
            await _progress(app, job, store, status="running", progress=progress, items=items, message=DEMO_MESSAGE)
        await asyncio.sleep(DEMO_STEP_SECONDS)
        await _progress(
            app, job, store, status="succeeded", progress=1.0, items=DEMO_STEPS[-1][1], message=DEMO_MESSAGE
        )
    except Exception:
        log.exception("demo sync %s failed", job.id)
        await _progress(app, job, store, status="failed", progress=0.0, items=0, message="demo sync failed")


async def forward(app: web.Application, job: SyncJob, store: Store) -> None:
    """Hand the job to ReceiptWitness; a failure marks the job failed and becomes a 502/503/504 problem."""
    settings = app[keys.settings]
    url = f"{settings.receiptwitness_url}/sync/{store.slug}"
    headers = {"X-Service-Key": settings.service_key or ""}
    failure: AppError
    try:
        async with app[keys.http_client].post(
            url, json={"user_id": job.user_id, "job_id": str(job.id)}, headers=headers
        ) as response:
            if response.status < 400:
                return
            if response.status in (502, 503, 504):
                failure = AppError(
                    ProblemType.SERVICE_UNAVAILABLE, f"ReceiptWitness is unavailable (HTTP {response.status})"
                )
            else:
                failure = AppError(ProblemType.BAD_GATEWAY, f"ReceiptWitness refused the sync (HTTP {response.status})")
    except TimeoutError:
        failure = AppError(ProblemType.GATEWAY_TIMEOUT, "ReceiptWitness did not answer in time")
    except aiohttp.ClientError as exc:
        failure = AppError(ProblemType.SERVICE_UNAVAILABLE, f"ReceiptWitness cannot be reached ({type(exc).__name__})")
    await _progress(app, job, store, status="failed", progress=0.0, items=0, message=failure.detail)
    raise failure


async def start(app: web.Application, *, user_id: str, store: Store) -> SyncJob:
    settings = app[keys.settings]
    if settings.receiptwitness_url:
        mode = "receiptwitness"
    elif settings.demo_sync:
        mode = "demo"
    else:
        raise AppError(
            ProblemType.SERVICE_UNAVAILABLE,
            "store sync needs CARTSNITCH_RECEIPTWITNESS_URL (or CARTSNITCH_DEMO_SYNC=true for simulated syncs)",
        )
    async with app[keys.sessionmaker].begin() as session:
        if await syncjobs.active_job(session, user_id=user_id, store_id=store.id) is not None:
            raise AppError(ProblemType.CONFLICT, f"a sync of {store.slug} is already running")
        job = await syncjobs.insert_job(session, user_id=user_id, store_id=store.id, mode=mode)
    await _progress(
        app,
        job,
        store,
        status="queued",
        progress=0.0,
        items=0,
        message=DEMO_MESSAGE if mode == "demo" else "queued at ReceiptWitness",
    )
    if mode == "receiptwitness":
        await forward(app, job, store)
    else:
        app[keys.hub].spawn(run_demo(app, job, store))
    return job
