"""The publish helper other services import: validate, record in the history and route live, in one round trip.

It works on a single Redis (``redis.asyncio.Redis``) and on a Redis Cluster (``redis.asyncio.cluster.RedisCluster``,
which sends each script call to the master of its keys' slot): every key of one call shares one hash tag. On a
cluster the live event goes out with ``SPUBLISH`` (sharded pub/sub), elsewhere with ``PUBLISH``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import orjson

from channels import bus
from channels.events import EventType, is_direct, parse_event_type
from channels.payloads import InvalidPayload, build_envelope, refuse_nul, validate_payload

DEFAULT_MAX_EVENTS = 1000
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600
DEFAULT_IDEMPOTENCY_SECONDS = 24 * 3600


class IdempotencyConflict(ValueError):
    """An Idempotency-Key that recorded a different event earlier (within the retention window)."""

    def __init__(self, first_id: str) -> None:
        super().__init__("this idempotency key was used for a different event")
        self.first_id = first_id


class RedisLike(Protocol):
    """The part of ``redis.asyncio.Redis`` the helper uses (kept as a protocol so channels imports no client)."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...


_SCRIPTS = (bus.RECORD_SCRIPT, bus.INGEST_SCRIPT, bus.EPOCH_SCRIPT)
_SHA = {script: hashlib.sha1(script.encode()).hexdigest() for script in _SCRIPTS}  # noqa: S324


async def run_script(redis: RedisLike, script: str, keys: list[str], args: list[Any]) -> Any:
    """Run one of the bus scripts by its SHA, loading it on the server's first NOSCRIPT."""
    try:
        return await redis.evalsha(_SHA[script], len(keys), *keys, *args)
    except Exception as exc:
        if not is_noscript(exc):
            raise
        return await redis.eval(script, len(keys), *keys, *args)


def is_noscript(exc: BaseException) -> bool:
    """True for Redis's "script not loaded" error, whichever client raised it."""
    return type(exc).__name__ == "NoScriptError" or "NOSCRIPT" in str(exc) or "No matching script" in str(exc)


def new_epoch() -> str:
    """A random history epoch; a new one means every earlier event id is void. (Twelve hex digits: hubs before
    per-audience epochs used eight, so an id of theirs never matches a current epoch.)"""
    return secrets.token_hex(6)


def is_cluster_client(redis: object) -> bool:
    """True for a Redis Cluster client (redis-py's or valkey-py's ``RedisCluster``: it routes by key slot)."""
    return callable(getattr(redis, "get_node_from_key", None))


def fingerprint(event_type: str, payload: Mapping[str, Any]) -> str:
    """What makes two publishes the same event for an idempotency key: the type and the payload (not the
    timestamp, which a retry may renew)."""
    digest = hashlib.sha256(event_type.encode() + b"\0" + orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:24]


def encode_envelope(envelope: Mapping[str, Any]) -> str:
    """The envelope as compact JSON text, members in the order given; InvalidPayload when its payload has no JSON
    form (nested past orjson's limit, a key that is not a string, a value JSON cannot carry)."""
    try:
        return orjson.dumps(envelope).decode()
    except TypeError as exc:
        raise InvalidPayload(
            [{"field": "payload", "message": f"cannot be sent as JSON: {exc}", "type": "json"}]
        ) from None


async def record(
    redis: RedisLike,
    audience: str,
    envelope_json: str,
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
    dedupe_key: str | None = None,
    dedupe_seconds: int = bus.LEGACY_DEDUPE_SECONDS,
    fingerprint: str = "",
    sharded: bool | None = None,
) -> bus.Recorded:
    """Append an encoded envelope to ``audience``'s history and publish it live, unless ``dedupe_key`` (a key
    tagged with ``audience``) recorded one already (then nothing is recorded and the first id comes back,
    ``repeated``). ``sharded`` (SPUBLISH) defaults to whether ``redis`` is a cluster client."""
    if sharded is None:
        sharded = is_cluster_client(redis)
    keys = [bus.epoch_key(audience), bus.history_key(audience)]
    args: list[Any] = [
        envelope_json,
        max_events,
        max_age_seconds * 1000,
        new_epoch(),
        "SPUBLISH" if sharded else "PUBLISH",
        bus.live_channel(audience),
    ]
    if dedupe_key:
        keys.append(dedupe_key)
        args.extend((dedupe_seconds, fingerprint))
    return bus.parse_recorded(await run_script(redis, bus.RECORD_SCRIPT, keys, args))


async def enqueue(
    redis: RedisLike,
    envelope_json: str,
    *,
    dedupe_key: str | None = None,
    dedupe_seconds: int = bus.LEGACY_DEDUPE_SECONDS,
    fingerprint: str = "",
) -> bus.Recorded:
    """Queue an encoded envelope for hub-side expansion; its id is the queue entry's (``ingest-…``). A
    ``dedupe_key`` must carry the queue's tag (``bus.idempotency_key(key)``, ``bus.legacy_dedupe_key(digest)``)."""
    keys = [bus.INGEST_STREAM]
    args: list[Any] = [envelope_json, bus.INGEST_MAXLEN]
    if dedupe_key:
        keys.append(dedupe_key)
        args.extend((dedupe_seconds, fingerprint))
    return bus.parse_recorded(await run_script(redis, bus.INGEST_SCRIPT, keys, args), "ingest-")


async def publish(
    redis: RedisLike,
    event_type: EventType | str,
    payload: Mapping[str, Any],
    *,
    service: str,
    timestamp: str | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
    idempotency_key: str | None = None,
    idempotency_seconds: int = DEFAULT_IDEMPOTENCY_SECONDS,
) -> str:
    """Validate and publish one catalog event; returns its id (for expanded audiences, the queue entry id).

    With ``idempotency_key``, a retry within ``idempotency_seconds`` (after a timeout, say) records nothing and
    returns the first publish's id; the same key with another event raises IdempotencyConflict.
    Raises InvalidPayload when the payload fails its schema; nothing is recorded then.
    """
    kind = event_type if isinstance(event_type, EventType) else parse_event_type(event_type)
    if kind is None:
        raise InvalidPayload([{"field": "event_type", "message": f"unknown event type {event_type!r}", "type": "enum"}])
    checked = validate_payload(kind, payload)
    envelope_json = encode_envelope(build_envelope(kind, checked, service=service, timestamp=timestamp))
    refuse_nul(envelope_json, checked, "payload")
    signature = fingerprint(kind.value, checked)  # the payload encoded within the envelope: it encodes alone too
    if is_direct(kind, checked):
        audience = bus.user_audience(checked["user_id"])
        result = await record(
            redis,
            audience,
            envelope_json,
            max_events=max_events,
            max_age_seconds=max_age_seconds,
            dedupe_key=bus.idempotency_key(idempotency_key, audience) if idempotency_key else None,
            dedupe_seconds=idempotency_seconds,
            fingerprint=signature,
        )
    else:
        result = await enqueue(
            redis,
            envelope_json,
            dedupe_key=bus.idempotency_key(idempotency_key) if idempotency_key else None,
            dedupe_seconds=idempotency_seconds,
            fingerprint=signature,
        )
    if result.repeated and result.fingerprint != signature:
        raise IdempotencyConflict(result.id)
    return result.id
