"""Auth routes (register, login, refresh with rotation and reuse detection, logout, me, password change)
and ``require_user`` for every user-scoped handler."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.exc import IntegrityError

from channels import bus
from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError, unavailable_dependency
from hub.infra.origins import UNSAFE_METHODS
from hub.infra.security import InvalidToken, hash_password, password_fits, random_id, verify_password
from hub.realtime.identity import Principal, session_token_from_cookies, unauthorized
from hub.realtime.socket import end_user_connections
from hub.store import tokens, users
from hub.store.models import User
from rest import responses
from rest.openapi import RouteTable
from rest.validation import parse_body

log = logging.getLogger("hub.auth")

routes = RouteTable("auth")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")
_SIGNED_OUT = "invalid email or password"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _new_password() -> Any:
    return Field(
        min_length=8, max_length=72, description="8 characters to 72 bytes (bcrypt's limit; the byte limit is checked)"
    )


class RegisterIn(_Strict):
    email: str = Field(max_length=255, description="the sign-in email", json_schema_extra={"format": "email"})
    password: str = _new_password()
    display_name: str | None = Field(None, max_length=100)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if not _EMAIL.match(value):
            raise ValueError("is not an email address")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        if not password_fits(value):
            raise ValueError("must be at most 72 bytes (bcrypt's limit)")
        return value


class LoginIn(_Strict):
    email: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(_Strict):
    refresh_token: str = Field(min_length=1, max_length=4096)


class PasswordChangeIn(_Strict):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = _new_password()

    @field_validator("new_password")
    @classmethod
    def _password(cls, value: str) -> str:
        if not password_fits(value):
            raise ValueError("must be at most 72 bytes (bcrypt's limit)")
        return value


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int = Field(description="seconds until the access token expires")


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str = Field(description="empty when the user gave none (a string, as the old gateway's)")
    email_verified: bool
    image: str | None
    created_at: datetime

    @field_validator("display_name", mode="before")
    @classmethod
    def _none_is_empty(cls, value: str | None) -> str:
        return value or ""


class RegisterOut(TokenPair):
    user: UserOut


async def current_principal(request: web.Request) -> Principal | None:
    """The caller's credentials (bearer token, or the Better-Auth session cookie), resolved once per request.

    A browser sends its cookies with a request any site makes: a state-changing request that a cookie
    authenticates must come from an allowed origin (CSRF). A bearer token cannot be sent by another site."""
    if keys.principal in request:
        return request[keys.principal]
    authorization = request.headers.get("Authorization")
    if (
        not authorization
        and request.method in UNSAFE_METHODS
        and session_token_from_cookies(request.cookies)
        and not request.app[keys.origins].allows_request(request.headers)
    ):
        raise AppError(
            ProblemType.FORBIDDEN,
            "a change authenticated by the session cookie must come from an allowed origin "
            "(CARTSNITCH_CORS_ORIGINS); send a bearer token otherwise",
        )
    principal = await request.app[keys.authenticator].request_credentials(authorization, request.cookies)
    request[keys.principal] = principal
    return principal


async def require_user(request: web.Request) -> Principal:
    principal = await current_principal(request)
    if principal is None:
        raise unauthorized("sign in: send a bearer token or the session cookie")
    return principal


def _user_out(user: User) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


async def _issue_pair(request: web.Request, *, user_id: str, family_id: str) -> TokenPair:
    codec = request.app[keys.authenticator].codec
    access = codec.issue("access", user_id=user_id, family_id=family_id)
    refresh = codec.issue("refresh", user_id=user_id, family_id=family_id)
    async with request.app[keys.sessionmaker].begin() as session:
        await tokens.insert_refresh_token(
            session, jti=refresh.jti, family_id=family_id, expires_at=datetime.fromtimestamp(refresh.expires_at, UTC)
        )
    return TokenPair(access_token=access.token, refresh_token=refresh.token, expires_in=codec.access_ttl)


async def _new_family(request: web.Request, user_id: str, signed_in_with: str | None = None) -> TokenPair:
    """A new refresh family for the user. ``signed_in_with``: the credential hash a login verified. The family is
    written holding the user's row, after the hash is read again: a password change (which holds the row while it
    revokes every family) that came first refuses the login; one that comes after revokes its family."""
    family_id = random_id(16)
    async with request.app[keys.sessionmaker].begin() as session:
        if not await users.hold_user(session, user_id=user_id):
            raise unauthorized("the account no longer exists")
        if signed_in_with is not None and await users.get_credential_hash(session, user_id=user_id) != signed_in_with:
            raise unauthorized(_SIGNED_OUT)
        await tokens.insert_family(session, family_id=family_id, user_id=user_id)
    return await _issue_pair(request, user_id=user_id, family_id=family_id)


@routes.post(
    "/auth/register",
    summary="Create an account and sign in",
    auth="none",
    limit="auth",
    body=RegisterIn,
    response=RegisterOut,
    status=201,
    errors=(409,),
)
async def register(request: web.Request) -> web.Response:
    body = await parse_body(request, RegisterIn)
    password_hash = await hash_password(body.password)
    try:
        async with request.app[keys.sessionmaker].begin() as session:
            if await users.email_holder(session, email=body.email):
                raise AppError(ProblemType.CONFLICT, "an account with this email exists")
            user = await users.insert_user(
                session, email=body.email, password_hash=password_hash, display_name=body.display_name
            )
    except IntegrityError:
        raise AppError(ProblemType.CONFLICT, "an account with this email exists") from None
    pair = await _new_family(request, user.id)
    return responses.created(RegisterOut(**pair.model_dump(), user=_user_out(user)))


@routes.post(
    "/auth/login",
    summary="Sign in with email and password",
    auth="none",
    limit="auth",
    body=LoginIn,
    response=TokenPair,
    errors=(401,),
)
async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginIn)
    async with request.app[keys.sessionmaker]() as session:
        user = await users.get_user_by_email(session, email=body.email.strip())
        password_hash = await users.get_credential_hash(session, user_id=user.id) if user else None
    # Unknown email and wrong password take the same path: one bcrypt check (against a dummy hash when there is
    # no user) and the same problem.
    if not await verify_password(body.password, password_hash) or user is None:
        raise unauthorized(_SIGNED_OUT)
    return responses.json(await _new_family(request, user.id, signed_in_with=password_hash))


@routes.post(
    "/auth/refresh",
    summary="Rotate a refresh token (each works once)",
    auth="none",
    limit="auth",
    body=RefreshIn,
    response=TokenPair,
    errors=(401,),
)
async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, RefreshIn)
    try:
        claims = request.app[keys.authenticator].codec.decode(body.refresh_token, "refresh")
    except InvalidToken as exc:
        raise unauthorized(f"invalid refresh token: {exc}") from None
    now = datetime.now(UTC)
    reused = False
    async with request.app[keys.sessionmaker].begin() as session:
        row = await tokens.get_refresh_token(session, jti=claims["jti"])
        family = await tokens.get_family(session, family_id=claims["sid"])
        if row is None or family is None or row.family_id != family.id or family.user_id != claims["sub"]:
            raise unauthorized("unknown refresh token")
        if family.revoked_at is not None:
            raise unauthorized("this session has been signed out")
        if not await tokens.spend_refresh_token(session, jti=row.jti, now=now):
            await tokens.revoke_family(session, family_id=family.id, reason="refresh_token_reuse")
            reused = True
    if reused:
        await end_user_connections(
            request.app, claims["sub"], reason="refresh_token_reuse", credential_id=claims["sid"]
        )
        raise unauthorized("refresh token reused: every token of this session is revoked")
    return responses.json(await _issue_pair(request, user_id=claims["sub"], family_id=claims["sid"]))


@routes.post("/auth/logout", summary="Sign out: revoke this session and end the user's live connections", status=204)
async def logout(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[keys.sessionmaker].begin() as session:
        if principal.kind == "jwt":
            await tokens.revoke_family(session, family_id=principal.credential_id, reason="logout")
        else:
            await users.delete_session(session, session_id=principal.credential_id)
    await end_user_connections(request.app, principal.user_id, reason="logout", credential_id=principal.credential_id)
    return responses.no_content()


@routes.post(
    "/auth/password",
    summary="Change the password: every session is signed out",
    body=PasswordChangeIn,
    response=TokenPair,
    limit="auth",
    errors=(403,),
)
async def change_password(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await parse_body(request, PasswordChangeIn)
    async with request.app[keys.sessionmaker]() as session:
        current = await users.get_credential_hash(session, user_id=principal.user_id)
    if not await verify_password(body.current_password, current):
        raise AppError(ProblemType.FORBIDDEN, "the current password is wrong")
    new_hash = await hash_password(body.new_password)
    async with request.app[keys.sessionmaker].begin() as session:
        # held until every family is revoked: a login that verified the old password waits, then is refused
        await users.hold_user(session, user_id=principal.user_id)
        await users.set_credential_hash(session, user_id=principal.user_id, password_hash=new_hash)
        await tokens.revoke_user_families(session, user_id=principal.user_id, reason="password_change")
        await users.delete_user_sessions(session, user_id=principal.user_id)
    await end_user_connections(request.app, principal.user_id, reason="password_change")
    return responses.json(await _new_family(request, principal.user_id))


@routes.get("/auth/me", summary="The signed-in user", response=UserOut, errors=(404,))
async def me(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[keys.sessionmaker]() as session:
        user = await users.get_user(session, user_id=principal.user_id)
    if user is None:
        raise unauthorized("the account no longer exists")
    return responses.json(_user_out(user))


class ProfileIn(_Strict):
    email: str | None = Field(None, max_length=255, description="a new sign-in email (unverified until verified)")
    display_name: str | None = Field(None, min_length=1, max_length=100)
    image: str | None = Field(None, min_length=1, max_length=2048, description="the avatar's URL")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not _EMAIL.match(value):
            raise ValueError("is not an email address")
        return value


@routes.patch(
    "/auth/me",
    summary="Change the signed-in user's email, display name or image (absent or null: unchanged)",
    body=ProfileIn,
    response=UserOut,
    errors=(409,),
)
async def update_me(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await parse_body(request, ProfileIn)
    try:
        async with request.app[keys.sessionmaker].begin() as session:
            user = await users.get_user(session, user_id=principal.user_id)
            if user is None:
                raise unauthorized("the account no longer exists")
            if body.email is not None:
                holder = await users.email_holder(session, email=body.email)
                if holder is not None and holder.id != user.id:
                    raise AppError(ProblemType.CONFLICT, "an account with this email exists")
            await users.update_profile(
                session, user=user, email=body.email, display_name=body.display_name, image=body.image
            )
    except IntegrityError:
        raise AppError(ProblemType.CONFLICT, "an account with this email exists") from None
    return responses.json(_user_out(user))


@routes.delete(
    "/auth/me",
    summary="Delete the signed-in user's account and everything that is theirs; their live connections end",
    status=204,
)
async def delete_me(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[keys.sessionmaker].begin() as session:
        deleted = await users.delete_user(session, user_id=principal.user_id)
    if not deleted:
        raise unauthorized("the account no longer exists")
    await end_user_connections(request.app, principal.user_id, reason="account_deleted")
    try:
        await request.app[keys.bus].forget(bus.user_audience(principal.user_id))
    except Exception as exc:  # the account is gone; its history expires with its max age
        if unavailable_dependency(exc) is None:
            raise
        log.warning("the deleted account's event history stays until it expires: %s", type(exc).__name__)
    return responses.no_content()
