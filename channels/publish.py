"""The publish helper other services import: validate, record in the history and route live, in one round trip."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import orjson

from channels import bus
from channels.events import EventType, is_direct, parse_event_type
from channels.payloads import InvalidPayload, build_envelope, validate_payload

DEFAULT_MAX_EVENTS = 1000
DEFAULT_MAX_AGE_SECONDS = 7 * 24 * 3600


class RedisLike(Protocol):
    """The part of ``redis.asyncio.Redis`` the helper uses (kept as a protocol so channels imports no client)."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]: ...


_SHA = {script: hashlib.sha1(script.encode()).hexdigest() for script in (bus.RECORD_SCRIPT, bus.INGEST_SCRIPT)}  # noqa: S324


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
    """A random history epoch; a new one means every earlier event id is void."""
    return secrets.token_hex(4)


def encode_envelope(envelope: Mapping[str, Any]) -> str:
    """The envelope as compact JSON text, members in the order given."""
    return orjson.dumps(envelope).decode()


async def record(
    redis: RedisLike,
    audience: str,
    envelope_json: str,
    *,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
    dedupe_key: str | None = None,
) -> str | None:
    """Append an encoded envelope to ``audience``'s history and publish it live; None when deduplicated away."""
    keys = [bus.EPOCH_KEY, bus.history_key(audience), bus.live_channel(audience)]
    args: list[Any] = [envelope_json, max_events, max_age_seconds * 1000, new_epoch()]
    if dedupe_key:
        keys.append(dedupe_key)
        args.append(bus.LEGACY_DEDUPE_SECONDS)
    result = await run_script(redis, bus.RECORD_SCRIPT, keys, args)
    return None if result is None else _text(result)


async def enqueue(redis: RedisLike, envelope_json: str, *, dedupe_key: str | None = None) -> str | None:
    """Queue an encoded envelope for hub-side expansion; returns the queue entry id (None when deduplicated)."""
    keys = [bus.INGEST_STREAM]
    args: list[Any] = [envelope_json, bus.INGEST_MAXLEN]
    if dedupe_key:
        keys.append(dedupe_key)
        args.append(bus.LEGACY_DEDUPE_SECONDS)
    result = await run_script(redis, bus.INGEST_SCRIPT, keys, args)
    return None if result is None else "ingest-" + _text(result)


async def publish(
    redis: RedisLike,
    event_type: EventType | str,
    payload: Mapping[str, Any],
    *,
    service: str,
    timestamp: str | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS,
) -> str:
    """Validate and publish one catalog event; returns its id (for expanded audiences, the queue entry id).

    Raises InvalidPayload when the payload fails its schema; nothing is recorded then.
    """
    kind = event_type if isinstance(event_type, EventType) else parse_event_type(event_type)
    if kind is None:
        raise InvalidPayload([{"field": "event_type", "message": f"unknown event type {event_type!r}", "type": "enum"}])
    checked = validate_payload(kind, payload)
    envelope_json = encode_envelope(build_envelope(kind, checked, service=service, timestamp=timestamp))
    if is_direct(kind, checked):
        event_id = await record(
            redis,
            bus.user_audience(checked["user_id"]),
            envelope_json,
            max_events=max_events,
            max_age_seconds=max_age_seconds,
        )
    else:
        event_id = await enqueue(redis, envelope_json)
    if event_id is None:  # only a dedupe key makes the scripts skip, and none was given
        raise RuntimeError("the event bus refused to record the event")
    return event_id


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
