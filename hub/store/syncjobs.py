"""Sync jobs: one per requested store sync, driven by ReceiptWitness (or the demo driver)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import Store, SyncJob, UserStoreAccount

ACTIVE = ("queued", "running")


async def get_store_by_slug(session: AsyncSession, *, slug: str) -> Store | None:
    return (await session.execute(select(Store).where(Store.slug == slug))).scalar_one_or_none()


async def get_account(session: AsyncSession, *, user_id: str, store_id: uuid.UUID) -> UserStoreAccount | None:
    stmt = select(UserStoreAccount).where(UserStoreAccount.user_id == user_id, UserStoreAccount.store_id == store_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def active_job(session: AsyncSession, *, user_id: str, store_id: uuid.UUID) -> SyncJob | None:
    stmt = (
        select(SyncJob)
        .where(SyncJob.user_id == user_id, SyncJob.store_id == store_id, SyncJob.status.in_(ACTIVE))
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_job(session: AsyncSession, *, user_id: str, store_id: uuid.UUID, mode: str) -> SyncJob:
    job = SyncJob(user_id=user_id, store_id=store_id, status="queued", mode=mode, progress=0.0, items_synced=0)
    session.add(job)
    await session.flush()
    return job


async def update_job(
    session: AsyncSession, *, job_id: uuid.UUID, status: str, progress: float, items_synced: int, message: str | None
) -> None:
    values: dict[str, object] = {
        "status": status,
        "progress": progress,
        "items_synced": items_synced,
        "message": message,
        "updated_at": datetime.now(UTC),
    }
    if status in ("succeeded", "failed"):
        values["finished_at"] = datetime.now(UTC)
    await session.execute(update(SyncJob).where(SyncJob.id == job_id).values(**values))


async def mark_synced(session: AsyncSession, *, user_id: str, store_id: uuid.UUID, at: datetime) -> None:
    await session.execute(
        update(UserStoreAccount)
        .where(UserStoreAccount.user_id == user_id, UserStoreAccount.store_id == store_id)
        .values(last_sync_at=at, status="active")
    )


async def latest_jobs(
    session: AsyncSession, *, user_id: str
) -> list[tuple[Store, UserStoreAccount | None, SyncJob | None]]:
    """Every store the user connected or synced, with the account and the newest job."""
    newest = (
        select(SyncJob.store_id, func.max(SyncJob.created_at).label("created_at"))
        .where(SyncJob.user_id == user_id)
        .group_by(SyncJob.store_id)
        .subquery()
    )
    jobs = {
        job.store_id: job
        for job in (
            await session.execute(
                select(SyncJob)
                .join(newest, (SyncJob.store_id == newest.c.store_id) & (SyncJob.created_at == newest.c.created_at))
                .where(SyncJob.user_id == user_id)
            )
        ).scalars()
    }
    accounts = {
        account.store_id: account
        for account in (
            await session.execute(select(UserStoreAccount).where(UserStoreAccount.user_id == user_id))
        ).scalars()
    }
    store_ids = set(jobs) | set(accounts)
    if not store_ids:
        return []
    stores = (await session.execute(select(Store).where(Store.id.in_(store_ids)).order_by(Store.name))).scalars()
    return [(store, accounts.get(store.id), jobs.get(store.id)) for store in stores]
