"""Store syncs: start one, and see where each store stands."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, cast

from aiohttp import web
from pydantic import BaseModel, Field

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError
from hub.realtime import sync
from hub.store import syncjobs
from rest import responses
from rest.api import API
from rest.auth import require_user
from rest.openapi import RouteTable

routes = RouteTable("scraping")

SyncStatus = Literal["queued", "running", "succeeded", "failed"]


class SyncAccepted(BaseModel):
    job_id: str
    status: SyncStatus
    message: str
    mode: Literal["receiptwitness", "demo"]


class StoreSyncStatus(BaseModel):
    store_slug: str
    status: SyncStatus | Literal["never"] = Field(
        description='the latest sync job the hub started; "succeeded" for an account synced without one (it has a '
        'last_sync_at: ReceiptWitness syncs on its own schedule too), "never" for one never synced'
    )
    last_sync_at: datetime | None
    items_synced: int
    progress: float
    job_id: str | None


@routes.post(
    f"{API}/scraping/{{store_slug}}/sync",
    summary="Start a sync of a connected store; progress arrives as cartsnitch.sync.progress events",
    response=SyncAccepted,
    status=202,
    errors=(404, 409, 502, 503, 504),
    path_params={"store_slug": "the store's slug, e.g. kroger"},
)
async def start_sync(request: web.Request) -> web.Response:
    principal = await require_user(request)
    slug = request.match_info["store_slug"]
    async with request.app[keys.sessionmaker]() as session:
        store = await syncjobs.get_store_by_slug(session, slug=slug[:20])
        account = await syncjobs.get_account(session, user_id=principal.user_id, store_id=store.id) if store else None
    if store is None:
        raise AppError(ProblemType.NOT_FOUND, f"no store {slug!r}")
    if account is None:
        raise AppError(ProblemType.CONFLICT, f"connect {slug} first (POST {API}/me/stores/{slug}/connect)")
    job = await sync.start(request.app, user_id=principal.user_id, store=store)
    message = sync.DEMO_MESSAGE if job.mode == "demo" else "sync queued at ReceiptWitness"
    return responses.accepted(SyncAccepted(job_id=str(job.id), status="queued", message=message, mode=job.mode))


@routes.get(
    f"{API}/scraping/status", summary="Where each connected store's sync stands", response=list[StoreSyncStatus]
)
async def sync_status(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[keys.sessionmaker]() as session:
        rows = await syncjobs.latest_jobs(session, user_id=principal.user_id)
    out = []
    for store, account, job in rows:
        last_sync_at = account.last_sync_at if account else None
        if job is not None:
            status: SyncStatus | Literal["never"] = cast(SyncStatus, job.status)
            progress = job.progress
        elif last_sync_at is not None:  # synced without a job of the hub's (ReceiptWitness's own schedule)
            status, progress = "succeeded", 1.0
        else:
            status, progress = "never", 0.0
        out.append(
            StoreSyncStatus(
                store_slug=store.slug,
                status=status,
                last_sync_at=last_sync_at,
                items_synced=job.items_synced if job else 0,
                progress=progress,
                job_id=str(job.id) if job else None,
            )
        )
    return responses.json(out)
