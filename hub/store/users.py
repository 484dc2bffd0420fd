"""Queries for users, their credential accounts and Better-Auth sessions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.infra.security import random_id
from hub.store.engine import locking, serialize
from hub.store.keyset import instant
from hub.store.models import (
    Account,
    AlertRead,
    AlertSettings,
    PriceHistory,
    PriceTargetAlert,
    Purchase,
    PurchaseItem,
    RefreshFamily,
    RefreshToken,
    Session,
    ShoppingList,
    ShoppingListItem,
    SyncJob,
    User,
    UserStoreAccount,
    UTCDateTime,
)

CREDENTIAL_PROVIDER = "credential"


def new_inbound_token() -> str:
    """22 URL-safe random characters (16 bytes), generated here so SQLite needs no server-side default."""
    return secrets.token_urlsafe(16)


async def get_user(session: AsyncSession, *, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, *, email: str) -> User | None:
    """The user with this email, in any case. Should a database hold two that differ in case only (written before
    the hub held emails while claiming them, or by another service), the one spelled exactly so, else the oldest."""
    result = await session.execute(
        select(User)
        .where(func.lower(User.email) == email.lower())
        .order_by(User.email != email, User.created_at, User.id)
        .limit(1)
    )
    return result.scalars().first()


async def hold_user(session: AsyncSession, *, user_id: str) -> bool:
    """Hold the user's row until the transaction ends (False: the account is gone), so that what reads a user's
    state and then writes by it runs one after the other: a login's new session and a password change revoking
    every session, two creations of one target."""
    return (await locking(session, select(User.id).where(User.id == user_id))).first() is not None


async def email_holder(session: AsyncSession, *, email: str) -> User | None:
    """The user who has this email (any case), read while holding the email until the transaction ends: two
    registrations (or email changes) of one address, on any process, cannot both find it free."""
    await serialize(session, "users.email:" + email.lower(), User)
    return await get_user_by_email(session, email=email)


async def get_credential_hash(session: AsyncSession, *, user_id: str) -> str | None:
    """The bcrypt hash of the user's email+password account (Better-Auth's store, then the legacy column)."""
    result = await session.execute(
        select(Account.password).where(Account.user_id == user_id, Account.provider_id == CREDENTIAL_PROVIDER)
    )
    password = result.scalars().first()
    if password:
        return password
    user = await session.get(User, user_id)
    return user.hashed_password if user else None


async def insert_user(
    session: AsyncSession, *, email: str, password_hash: str, display_name: str | None, user_id: str | None = None
) -> User:
    user = User(
        id=user_id or random_id(24),
        email=email,
        display_name=display_name,
        email_verified=False,
        email_inbound_token=new_inbound_token(),
    )
    session.add(user)
    await session.flush()
    session.add(
        Account(
            id=random_id(24),
            user_id=user.id,
            account_id=user.id,
            provider_id=CREDENTIAL_PROVIDER,
            password=password_hash,
        )
    )
    await session.flush()
    return user


async def set_credential_hash(session: AsyncSession, *, user_id: str, password_hash: str) -> None:
    result = await session.execute(
        update(Account)
        .where(Account.user_id == user_id, Account.provider_id == CREDENTIAL_PROVIDER)
        .values(password=password_hash, updated_at=datetime.now(UTC))
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(
            Account(
                id=random_id(24),
                user_id=user_id,
                account_id=user_id,
                provider_id=CREDENTIAL_PROVIDER,
                password=password_hash,
            )
        )
        await session.flush()


async def get_live_session(session: AsyncSession, *, token: str, now: datetime) -> Session | None:
    """The Better-Auth session with this raw token, when it has not expired."""
    result = await session.execute(select(Session).where(Session.token == token, _unexpired(session, now)))
    return result.scalar_one_or_none()


async def existing_user_ids(session: AsyncSession, *, user_ids: list[str]) -> set[str]:
    result = await session.execute(select(User.id).where(User.id.in_(user_ids)))
    return set(result.scalars())


async def delete_session(session: AsyncSession, *, session_id: str) -> None:
    await session.execute(delete(Session).where(Session.id == session_id))


async def delete_user_sessions(session: AsyncSession, *, user_id: str) -> None:
    await session.execute(delete(Session).where(Session.user_id == user_id))


async def live_session_ids(session: AsyncSession, *, session_ids: list[str], now: datetime) -> set[str]:
    """Which of the Better-Auth session ids still exist and have not expired."""
    result = await session.execute(select(Session.id).where(Session.id.in_(session_ids), _unexpired(session, now)))
    return set(result.scalars())


def _unexpired(session: AsyncSession, now: datetime) -> ColumnElement[bool]:
    """The session row expires after ``now``, compared as instants: on SQLite Better-Auth writes ISO text
    (``…T…Z``) that text order would keep alive until the end of its day, and offsets would be ignored."""
    dialect = session.get_bind().dialect.name
    expiry: ColumnElement[bool] = instant(dialect, Session.expires_at) > instant(dialect, literal(now, UTCDateTime()))
    return expiry


async def update_profile(
    session: AsyncSession, *, user: User, email: str | None, display_name: str | None, image: str | None
) -> User:
    """Set the given fields (None leaves one as it is); a new email is unverified until Better-Auth verifies it."""
    if email is not None:
        if email.lower() != user.email.lower():
            user.email_verified = False
        user.email = email
    if display_name is not None:
        user.display_name = display_name
    if image is not None:
        user.image = image
    user.updated_at = datetime.now(UTC)
    await session.flush()
    return user


async def delete_user(session: AsyncSession, *, user_id: str) -> bool:
    """Delete the user and every row that is theirs. Explicit deletes, child tables first: a database the
    platform created has no ON DELETE CASCADE on purchases, their items or store accounts. Price observations
    recorded from the user's receipts are catalogue data: they stay, detached from the deleted items."""
    purchase_ids = select(Purchase.id).where(Purchase.user_id == user_id)
    item_ids = select(PurchaseItem.id).where(PurchaseItem.purchase_id.in_(purchase_ids))
    list_ids = select(ShoppingList.id).where(ShoppingList.user_id == user_id)
    family_ids = select(RefreshFamily.id).where(RefreshFamily.user_id == user_id)
    await session.execute(
        update(PriceHistory).where(PriceHistory.purchase_item_id.in_(item_ids)).values(purchase_item_id=None)
    )
    for statement in (
        delete(PurchaseItem).where(PurchaseItem.purchase_id.in_(purchase_ids)),
        delete(Purchase).where(Purchase.user_id == user_id),
        delete(UserStoreAccount).where(UserStoreAccount.user_id == user_id),
        delete(SyncJob).where(SyncJob.user_id == user_id),
        delete(ShoppingListItem).where(ShoppingListItem.list_id.in_(list_ids)),
        delete(ShoppingList).where(ShoppingList.user_id == user_id),
        delete(PriceTargetAlert).where(PriceTargetAlert.user_id == user_id),
        delete(AlertRead).where(AlertRead.user_id == user_id),
        delete(AlertSettings).where(AlertSettings.user_id == user_id),
        delete(RefreshToken).where(RefreshToken.family_id.in_(family_ids)),
        delete(RefreshFamily).where(RefreshFamily.user_id == user_id),
        delete(Session).where(Session.user_id == user_id),
        delete(Account).where(Account.user_id == user_id),
    ):
        await session.execute(statement.execution_options(synchronize_session=False))
    deleted = await session.execute(delete(User).where(User.id == user_id).execution_options(synchronize_session=False))
    return bool(deleted.rowcount)  # type: ignore[attr-defined]
