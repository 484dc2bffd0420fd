"""Redis names of the event bus, the scripts that record events, and event-id parsing.

Grammar (Centrifugo-style): ``hub:v1:<what>:{<audience>}``; an audience is ``user:<id>`` or ``room:<room>``. The
braces are a Redis Cluster hash tag: every key and the live channel of one audience hash to one slot, so the script
that appends to the history and publishes runs on one node in one round trip, on a cluster as on a single Redis.
Keys that belong to the ingest queue carry the queue's name as their tag (``{hub:v1:ingest}``) for the same reason.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

PREFIX = "hub:v1:"
INGEST_STREAM = PREFIX + "ingest"
INGEST_GROUP = "hub"
SOCKETIO_CHANNEL = PREFIX + "socketio"
LEGACY_PATTERN = "cartsnitch.*"
INGEST_MAXLEN = 100_000
LEGACY_DEDUPE_SECONDS = 600
V1_LIVE_PATTERN = PREFIX + "live:[ru]*"
"""The live channels of hubs before hash tags (``hub:v1:live:user:<id>``, ``hub:v1:live:room:<room>``): what an
older hub or an older copy of this package publishes there is re-recorded by the current hub (single Redis only)."""
_INGEST_TAG = "{" + INGEST_STREAM + "}"
INGEST_LEASE = PREFIX + "lease:" + _INGEST_TAG
"""Names the one hub process that reads the ingest queue (see ``hub.realtime.fanout.LEASE_SECONDS``)."""


def user_audience(user_id: str) -> str:
    """The audience of everything addressed to one user."""
    return "user:" + user_id


def room_audience(room: str) -> str:
    """The audience of a public room."""
    return "room:" + room


def room_of_audience(audience: str) -> str | None:
    """The room named by a room audience, or None for a user audience."""
    return audience[len("room:") :] if audience.startswith("room:") else None


def _tagged(what: str, audience: str) -> str:
    return PREFIX + what + ":{" + audience + "}"


def history_key(audience: str) -> str:
    """The Redis stream holding an audience's event history."""
    return _tagged("history", audience)


def epoch_key(audience: str) -> str:
    """The key holding the epoch of an audience's history (it lives and expires with the history)."""
    return _tagged("epoch", audience)


def live_channel(audience: str) -> str:
    """The Redis channel carrying an audience's live events (envelopes with ``id``)."""
    return _tagged("live", audience)


LIVE_CHANNEL_PREFIX = PREFIX + "live:{"


def audience_of_live_channel(channel: str) -> str:
    """The audience named by a live channel."""
    return channel[len(LIVE_CHANNEL_PREFIX) : -1]


def audience_of_v1_channel(channel: str) -> str | None:
    """The audience of a live channel as hubs before hash tags named it (``hub:v1:live:user:42``), else None."""
    if channel.startswith(LIVE_CHANNEL_PREFIX) or not channel.startswith(PREFIX + "live:"):
        return None
    audience = channel[len(PREFIX) + len("live:") :]
    return audience if audience.startswith(("user:", "room:")) else None


def legacy_dedupe_key(digest: str, audience: str | None = None) -> str:
    """The key that gives one legacy PUBLISH exactly one place in ``audience``'s history (or in the ingest queue
    when None) across hub processes."""
    return PREFIX + "legacy:" + ("{" + audience + "}" if audience is not None else _INGEST_TAG) + ":" + digest


def expansion_key(entry_id: str, audience: str) -> str:
    """The key that gives what the hub records in ``audience`` while expanding the queue entry ``entry_id`` one
    place in its history, however often the entry is handed over."""
    return PREFIX + "expansion:{" + audience + "}:" + entry_id


def idempotency_key(key: str, audience: str | None = None) -> str:
    """The Redis key remembering what a publisher's Idempotency-Key recorded in ``audience``'s history (or queued
    for expansion when None); the key itself is hashed."""
    tag = "{" + audience + "}" if audience is not None else _INGEST_TAG
    return PREFIX + "idem:" + tag + ":" + hashlib.sha256(key.encode()).hexdigest()


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


MAX_ID_PART = (1 << 63) - 1
"""The largest number in either of an event id's numeric parts (SQLite's integers are signed 64-bit)."""


def parse_event_id(value: object) -> EventId | None:
    """The parts of an event id (``<ms>-<seq>-<epoch>``), or None when ``value`` is not one."""
    if not isinstance(value, str) or len(value) > 80 or not value.isascii():
        return None  # ASCII only: str.isdigit() is true of "²" and "٣", which int() refuses or reads as 3
    parts = value.split("-", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2].isalnum():
        return None
    ms, seq = int(parts[0]), int(parts[1])
    if ms > MAX_ID_PART or seq > MAX_ID_PART:
        return None  # no history issues one: a SQLite integer and a Redis stream id part end here
    return EventId(ms, seq, parts[2])


# Records one event in an audience's history and routes it live, atomically (one round trip, one slot).
# KEYS: epoch, history stream[, dedupe key]
# ARGV: envelope JSON without id (an object), max events, max age in ms, candidate epoch, 'SPUBLISH' on a Redis
#       Cluster (else classic PUBLISH), live channel (in the keys' slot)[, dedupe ttl s, fingerprint]
# (The channel is not a key: declared, it would make a cluster answer TRYAGAIN to every call while its slot moves.)
# Returns the event id; when the dedupe key exists (another hub process, or an earlier try of the same publish,
# recorded it) nothing is recorded and the reply is '=<fingerprint> <first id>'.
# The epoch names one incarnation of the stream on one node: a stream that has to be created starts a new epoch,
# and on a cluster the epoch carries the id of the node that wrote it (a stream written by another node has been
# through a failover or a slot migration, which may have lost the writes the old master had not replicated).
RECORD_SCRIPT = """
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then return '=' .. seen end
end
local publish = 'PUBLISH'
local writer = ''
if ARGV[5] == 'SPUBLISH' then
  publish = 'SPUBLISH'
  writer = ':' .. redis.call('CLUSTER', 'MYID')
end
-- The stream and its epoch key live max age + 1/16 after a refresh, and are refreshed by the first event once less
-- than max age is left: every event is kept at least max age, for two calls every max age / 16 instead of each time.
local max_age = tonumber(ARGV[3])
local keep = max_age + math.floor(max_age / 16)
local ttl = redis.call('PTTL', KEYS[2])
local epoch = ARGV[4]
local fresh = false
if ttl ~= -2 then
  local stored = redis.call('GET', KEYS[1])
  if stored then
    local at = string.find(stored, ':', 1, true)
    if (at and string.sub(stored, at) or '') == writer then
      epoch = at and string.sub(stored, 1, at - 1) or stored
      fresh = ttl > max_age
    end
  end
end
if not fresh then redis.call('SET', KEYS[1], epoch .. writer, 'PX', keep) end
local sid = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
local ms = tonumber(string.match(sid, '^%d+'))
if ms % 32 == 0 then
  -- about one event in 32 also sheds what is older than the age limit (the expiry drops idle streams whole)
  local min_ms = ms - max_age
  if min_ms > 0 then redis.call('XTRIM', KEYS[2], 'MINID', '~', min_ms) end
end
if not fresh then redis.call('PEXPIRE', KEYS[2], keep) end
local id = sid .. '-' .. epoch
redis.call(publish, ARGV[6], '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2))
if KEYS[3] then redis.call('SET', KEYS[3], (ARGV[8] or '') .. ' ' .. id, 'EX', ARGV[7]) end
return id
"""

# The epoch of an audience's history for a reader, on the node that serves the history (its master).
# KEYS: epoch, history stream; ARGV: candidate epoch, 'SPUBLISH' on a Redis Cluster
# Returns '' when there is no history; the epoch; or '!<epoch>' when the reader had to start a new one because the
# stream was last written by another node (or its epoch key is gone): every id of the old epoch is void.
EPOCH_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return '' end
local writer = ''
if ARGV[2] == 'SPUBLISH' then writer = ':' .. redis.call('CLUSTER', 'MYID') end
local stored = redis.call('GET', KEYS[1])
if stored then
  local at = string.find(stored, ':', 1, true)
  if (at and string.sub(stored, at) or '') == writer then return at and string.sub(stored, 1, at - 1) or stored end
end
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1] .. writer, 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1] .. writer)
end
return '!' .. ARGV[1]
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
