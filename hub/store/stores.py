"""Queries for stores and the user's connected store accounts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import Store, SyncJob, UserStoreAccount


@dataclass(frozen=True, slots=True)
class StoreState:
    """One of the user's store accounts: its status, when it last synced, and how its newest sync job went."""

    store: Store
    account_status: str
    last_sync_at: datetime | None
    job_status: str | None


async def list_stores(session: AsyncSession) -> list[Store]:
    result = await session.execute(select(Store).order_by(Store.name, Store.id))
    return list(result.scalars())


async def get_store_by_slug(session: AsyncSession, *, slug: str) -> Store | None:
    result = await session.execute(select(Store).where(Store.slug == slug))
    return result.scalar_one_or_none()


def _states(user_id: str) -> Select[Store, str, datetime | None, str | None]:
    newest_job_status = (
        select(SyncJob.status)
        .where(SyncJob.user_id == user_id, SyncJob.store_id == Store.id)
        .order_by(SyncJob.created_at.desc(), SyncJob.id.desc())
        .limit(1)
        .correlate(Store)
        .scalar_subquery()
    )
    return (
        select(Store, UserStoreAccount.status, UserStoreAccount.last_sync_at, newest_job_status)
        .join(UserStoreAccount, (UserStoreAccount.store_id == Store.id) & (UserStoreAccount.user_id == user_id))
        .order_by(Store.name, Store.id)
    )


async def list_store_states(session: AsyncSession, *, user_id: str) -> list[StoreState]:
    """The user's store accounts (one per store at most), by store name."""
    return [StoreState(*row) for row in (await session.execute(_states(user_id))).all()]


async def get_store_state(session: AsyncSession, *, user_id: str, store: Store) -> StoreState:
    """The user's account at ``store``, which must exist."""
    return StoreState(*(await session.execute(_states(user_id).where(Store.id == store.id))).one())


async def get_store_account(session: AsyncSession, *, user_id: str, store_id: uuid.UUID) -> UserStoreAccount | None:
    result = await session.execute(
        select(UserStoreAccount).where(UserStoreAccount.user_id == user_id, UserStoreAccount.store_id == store_id)
    )
    return result.scalar_one_or_none()


async def insert_store_account(
    session: AsyncSession, *, user_id: str, store_id: uuid.UUID, session_data: str
) -> UserStoreAccount:
    """A new connected account holding the (already encrypted) credentials."""
    account = UserStoreAccount(user_id=user_id, store_id=store_id, session_data=session_data, status="active")
    session.add(account)
    await session.flush()
    return account


async def renew_store_account(session: AsyncSession, *, account: UserStoreAccount, session_data: str) -> None:
    """Fresh (already encrypted) credentials for an expired or failed account."""
    account.session_data = session_data
    account.session_expires_at = None
    account.status = "active"
    await session.flush()


async def delete_store_account(session: AsyncSession, *, user_id: str, store_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(UserStoreAccount).where(UserStoreAccount.user_id == user_id, UserStoreAccount.store_id == store_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
