"""Refresh-token families: rotation, reuse detection and revocation."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import RefreshFamily, RefreshToken


async def insert_family(session: AsyncSession, *, family_id: str, user_id: str) -> None:
    session.add(RefreshFamily(id=family_id, user_id=user_id))
    await session.flush()


async def insert_refresh_token(session: AsyncSession, *, jti: str, family_id: str, expires_at: datetime) -> None:
    session.add(RefreshToken(jti=jti, family_id=family_id, expires_at=expires_at))
    await session.flush()


async def get_refresh_token(session: AsyncSession, *, jti: str) -> RefreshToken | None:
    result = await session.execute(select(RefreshToken).where(RefreshToken.jti == jti).with_for_update())
    return result.scalar_one_or_none()


async def get_family(session: AsyncSession, *, family_id: str) -> RefreshFamily | None:
    return await session.get(RefreshFamily, family_id)


async def spend_refresh_token(session: AsyncSession, *, jti: str, now: datetime) -> bool:
    """Mark an unused refresh token as used; False when it was spent already (a concurrent or replayed use)."""
    result = await session.execute(
        update(RefreshToken).where(RefreshToken.jti == jti, RefreshToken.used_at.is_(None)).values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_family(session: AsyncSession, *, family_id: str, reason: str) -> None:
    await session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == family_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
    )


async def revoke_user_families(session: AsyncSession, *, user_id: str, reason: str) -> None:
    await session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.user_id == user_id, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
    )


async def live_families(session: AsyncSession, *, families: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (family id, user id) pairs name a family of that user that is not revoked."""
    rows = await session.execute(
        select(RefreshFamily.id, RefreshFamily.user_id).where(
            RefreshFamily.id.in_([family_id for family_id, _ in families]), RefreshFamily.revoked_at.is_(None)
        )
    )
    return {(family_id, user_id) for family_id, user_id in rows}
