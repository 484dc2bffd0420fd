"""Redis names of the event bus, the scripts that record events, and event-id parsing.

Grammar (Centrifugo-style): ``hub:v1:<what>:<audience>``; an audience is ``user:<id>`` or ``room:<room>``.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

PREFIX = "hub:v1:"
EPOCH_KEY = PREFIX + "epoch"
INGEST_STREAM = PREFIX + "ingest"
INGEST_GROUP = "hub"
SOCKETIO_CHANNEL = PREFIX + "socketio"
LEGACY_PATTERN = "cartsnitch.*"
INGEST_MAXLEN = 100_000
LEGACY_DEDUPE_SECONDS = 600


def user_audience(user_id: str) -> str:
    """The audience of everything addressed to one user."""
    return "user:" + user_id


def room_audience(room: str) -> str:
    """The audience of a public room."""
    return "room:" + room


def room_of_audience(audience: str) -> str | None:
    """The room named by a room audience, or None for a user audience."""
    return audience[len("room:") :] if audience.startswith("room:") else None


def history_key(audience: str) -> str:
    """The Redis stream holding an audience's event history."""
    return PREFIX + "history:" + audience


def live_channel(audience: str) -> str:
    """The Redis channel carrying an audience's live events (envelopes with ``id``)."""
    return PREFIX + "live:" + audience


def audience_of_live_channel(channel: str) -> str:
    """The audience named by a live channel."""
    return channel[len(PREFIX) + len("live:") :]


def legacy_dedupe_key(digest: str) -> str:
    """The key that gives one legacy PUBLISH exactly one place in the history across hub processes."""
    return PREFIX + "legacy:" + digest


def idempotency_key(key: str) -> str:
    """The Redis key remembering what a publisher's Idempotency-Key recorded (the key itself is hashed)."""
    return PREFIX + "idem:" + hashlib.sha256(key.encode()).hexdigest()


class Recorded(NamedTuple):
    """What recording an event did: its id, and whether a dedupe or idempotency key had recorded it already (then
    ``id`` is the first recording's, and ``fingerprint`` what the first request carried)."""

    id: str
    repeated: bool = False
    fingerprint: str = ""


def parse_recorded(reply: object, prefix: str = "") -> Recorded:
    """A script's reply: the new id, or ``=<fingerprint> <id>`` when its dedupe key had recorded it already."""
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    if text.startswith("="):
        fingerprint, _, first = text[1:].partition(" ")
        return Recorded(first, True, fingerprint)
    return Recorded(prefix + text)


class EventId(NamedTuple):
    ms: int
    seq: int
    epoch: str

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}-{self.epoch}"


def parse_event_id(value: object) -> EventId | None:
    """The parts of an event id (``<ms>-<seq>-<epoch>``), or None when ``value`` is not one."""
    if not isinstance(value, str) or len(value) > 80:
        return None
    parts = value.split("-", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2].isalnum():
        return None
    return EventId(int(parts[0]), int(parts[1]), parts[2])


# Records one event in an audience's history and routes it live, atomically (one round trip).
# KEYS: epoch, history stream, live channel[, dedupe key]
# ARGV: envelope JSON without id (an object), max events, max age in ms, candidate epoch[, dedupe ttl s, fingerprint]
# Returns the event id; when the dedupe key exists (another hub process, or an earlier try of the same publish,
# recorded it) nothing is recorded and the reply is '=<fingerprint> <first id>'.
RECORD_SCRIPT = """
if KEYS[4] then
  local seen = redis.call('GET', KEYS[4])
  if seen then return '=' .. seen end
end
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[1], epoch)
end
local sid = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
local ms = tonumber(string.match(sid, '^%d+'))
if ms % 32 == 0 then
  -- about one event in 32 also sheds what is older than the age limit (PEXPIRE drops idle streams whole)
  local min_ms = ms - tonumber(ARGV[3])
  if min_ms > 0 then redis.call('XTRIM', KEYS[2], 'MINID', '~', min_ms) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local id = sid .. '-' .. epoch
redis.call('PUBLISH', KEYS[3], '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2))
if KEYS[4] then redis.call('SET', KEYS[4], (ARGV[6] or '') .. ' ' .. id, 'EX', ARGV[5]) end
return id
"""

# Queues one event for the hub to expand (buyers, coupon users, trend rooms, cache invalidation).
# KEYS: ingest stream[, dedupe key]; ARGV: envelope JSON without id, max length[, dedupe ttl s, fingerprint]
# Returns the queue entry id, or '=<fingerprint> <first entry id>' as RECORD_SCRIPT does.
INGEST_SCRIPT = """
if KEYS[2] then
  local seen = redis.call('GET', KEYS[2])
  if seen then return '=' .. seen end
end
local entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
if KEYS[2] then redis.call('SET', KEYS[2], (ARGV[4] or '') .. ' ingest-' .. entry, 'EX', ARGV[3]) end
return entry
"""


def with_id(event_id: str, envelope_json: str) -> str:
    """The envelope JSON (an object without ``id``) with ``id`` as its first member."""
    return '{"id":"' + event_id + '",' + envelope_json[1:]
