"""Stores, the user's connected store accounts and the receipt-forwarding address."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import orjson
from aiohttp import web
from cryptography.fernet import Fernet
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy.exc import IntegrityError

from channels.errors import ProblemType
from hub import keys
from hub.errors import AppError, validation_error
from hub.infra import cache
from hub.realtime.identity import unauthorized
from hub.settings import Settings
from hub.store import stores, users
from hub.store.models import Store
from hub.store.stores import StoreState
from rest import responses
from rest.api import API
from rest.auth import require_user
from rest.caching import cached_json
from rest.openapi import RouteTable
from rest.validation import parse_body

routes = RouteTable("stores")
SLUG_MAX_LENGTH = 20
MAX_CREDENTIALS = 20
MAX_CREDENTIALS_BYTES = 8 * 1024
INBOUND_DOMAIN = "receipts.cartsnitch.com"
INBOUND_INSTRUCTIONS = (
    "Forward your digital receipt emails to this address; they are added to your purchases once processed. "
    "Keep the address private: anyone who knows it can send receipts to your account."
)
_SLUG = {"store_slug": "the store's slug, e.g. meijer"}
CredentialName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
CredentialValue = Annotated[str, Field(strict=True)]


class StoreOut(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    logo_url: str | None
    supported: bool = Field(description="whether this deployment can connect and sync the store")


class StoreStateOut(BaseModel):
    store: StoreOut
    connected: bool = Field(description="whether the account is active (it can be synced)")
    last_sync_at: datetime | None
    sync_status: str | None = Field(
        description="the account's status: active, expired (sign in again: connect it anew) or error"
    )
    last_job_status: str | None = Field(
        description="the newest sync job's status: queued, running, succeeded or failed; null before the first sync"
    )


class ConnectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credentials: dict[CredentialName, CredentialValue] = Field(
        min_length=1,
        max_length=MAX_CREDENTIALS,
        description=f"the store login, as string values (at most {MAX_CREDENTIALS} keys and "
        f"{MAX_CREDENTIALS_BYTES} bytes); stored encrypted and never returned",
    )

    @field_validator("credentials")
    @classmethod
    def _size(cls, value: dict[str, str]) -> dict[str, str]:
        if sum(len(k.encode()) + len(v.encode()) for k, v in value.items()) > MAX_CREDENTIALS_BYTES:
            raise ValueError(f"must hold at most {MAX_CREDENTIALS_BYTES} bytes of keys and values")
        return value


class EmailInOut(BaseModel):
    email_address: str
    instructions: str


def _store_slug(request: web.Request) -> str:
    slug = request.match_info["store_slug"]
    if len(slug) > SLUG_MAX_LENGTH or "\x00" in slug:
        raise AppError(ProblemType.NOT_FOUND, f"no store {slug!r}")
    return slug


def _supported(settings: Settings, slug: str) -> bool:
    return settings.supported_stores is None or slug in settings.supported_stores


def _store_out(store: Store, settings: Settings) -> StoreOut:
    return StoreOut(
        id=store.id,
        name=store.name,
        slug=store.slug,
        logo_url=store.logo_url,
        supported=_supported(settings, store.slug),
    )


def _state_out(state: StoreState, settings: Settings) -> StoreStateOut:
    return StoreStateOut(
        store=_store_out(state.store, settings),
        connected=state.account_status == "active",
        last_sync_at=state.last_sync_at,
        sync_status=state.account_status,
        last_job_status=state.job_status,
    )


def _cipher(settings: Settings) -> Fernet:
    if not settings.fernet_key:
        raise AppError(
            ProblemType.SERVICE_UNAVAILABLE,
            "store credentials cannot be stored: CARTSNITCH_FERNET_KEY is not configured",
        )
    try:
        return Fernet(settings.fernet_key.encode())
    except (ValueError, TypeError):
        raise AppError(
            ProblemType.SERVICE_UNAVAILABLE,
            "store credentials cannot be stored: CARTSNITCH_FERNET_KEY is not a valid Fernet key",
        ) from None


def encrypt_credentials(settings: Settings, credentials: dict[str, str]) -> str:
    return _cipher(settings).encrypt(orjson.dumps(credentials)).decode()


@routes.get(f"{API}/stores", summary="Every store, ordered by name", auth="none", response=list[StoreOut], cached=True)
async def list_stores(request: web.Request) -> web.Response:
    settings = request.app[keys.settings]

    async def compute() -> list[StoreOut]:
        async with request.app[keys.sessionmaker]() as session:
            rows = await stores.list_stores(session)
        return [_store_out(store, settings) for store in rows]

    return await cached_json(request, cache.PRODUCTS, compute)


@routes.get(
    f"{API}/me/stores",
    summary="The user's store accounts, with their status and newest sync job",
    response=list[StoreStateOut],
)
async def list_my_stores(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[keys.sessionmaker]() as session:
        states = await stores.list_store_states(session, user_id=principal.user_id)
    settings = request.app[keys.settings]
    return responses.json([_state_out(state, settings) for state in states])


@routes.post(
    f"{API}/me/stores/{{store_slug}}/connect",
    summary="Connect a store account (credentials are encrypted)",
    body=ConnectIn,
    response=StoreStateOut,
    status=201,
    errors=(404, 409, 503),
    path_params=_SLUG,
)
async def connect_store(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await parse_body(request, ConnectIn)
    slug = _store_slug(request)
    settings = request.app[keys.settings]
    session_data = encrypt_credentials(settings, body.credentials)
    conflict = AppError(ProblemType.CONFLICT, f"the store {slug!r} is already connected; disconnect it first")
    try:
        async with request.app[keys.sessionmaker].begin() as session:
            store = await stores.get_store_by_slug(session, slug=slug)
            if store is None:
                raise AppError(ProblemType.NOT_FOUND, f"no store {slug!r}")
            if not _supported(settings, store.slug):
                raise validation_error(
                    [{"field": "store_slug", "message": "this store is not supported here", "type": "value_error"}],
                    f"the store {slug!r} cannot be connected on this deployment",
                )
            account = await stores.get_store_account(session, user_id=principal.user_id, store_id=store.id)
            if account is not None and account.status == "active":
                raise conflict
            if account is None:
                await stores.insert_store_account(
                    session, user_id=principal.user_id, store_id=store.id, session_data=session_data
                )
            else:
                await stores.renew_store_account(session, account=account, session_data=session_data)
            state = await stores.get_store_state(session, user_id=principal.user_id, store=store)
    except IntegrityError:
        raise conflict from None
    return responses.created(_state_out(state, settings))


@routes.delete(
    f"{API}/me/stores/{{store_slug}}",
    summary="Disconnect a store account and forget its credentials",
    status=204,
    errors=(404,),
    path_params=_SLUG,
)
async def disconnect_store(request: web.Request) -> web.Response:
    principal = await require_user(request)
    slug = _store_slug(request)
    async with request.app[keys.sessionmaker].begin() as session:
        store = await stores.get_store_by_slug(session, slug=slug)
        if store is None:
            raise AppError(ProblemType.NOT_FOUND, f"no store {slug!r}")
        if not await stores.delete_store_account(session, user_id=principal.user_id, store_id=store.id):
            raise AppError(ProblemType.NOT_FOUND, f"the store {slug!r} is not connected")
    return responses.no_content()


@routes.get(
    f"{API}/me/email-in-address",
    summary="The address that files forwarded receipts under this user",
    response=EmailInOut,
)
async def get_email_in_address(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[keys.sessionmaker]() as session:
        user = await users.get_user(session, user_id=principal.user_id)
    if user is None:
        raise unauthorized("the account no longer exists")
    return responses.json(
        EmailInOut(
            email_address=f"receipts+{user.email_inbound_token}@{INBOUND_DOMAIN}", instructions=INBOUND_INSTRUCTIONS
        )
    )
