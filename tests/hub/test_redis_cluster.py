"""The hub on a Redis Cluster that changes under it: a call sent to a master that no longer owns its slot, a
master killed while events are published (its replica takes over), and a slot moved to another master while the
platform publishes. Every client sees an exact resume or a resync, never a silent gap. The tests that break a
cluster run on one of their own; the master kill prints its figures (published, delivered, lost, resyncs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis as redis_sync
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from channels import bus
from channels.publish import publish
from hub.infra.cluster import ClusterCommands, KeyedCall, cluster_client, parse_cluster_url
from hub.realtime.fanout import redis_client
from hub.settings import Settings
from tests.cluster import Follower, HubProcess, start_hub, stop_hubs, sync_payload, users_with_tokens
from tests.conftest import make_settings
from tests.services import ClusterNodes, redis_cluster, sync_cluster_client

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

EVENTS_PER_USER = 300
EVENT_DEADLINE_SECONDS = 40.0
"""How long a publisher keeps retrying one event (a failover takes a few seconds here)."""


@pytest.fixture
def own_cluster() -> Iterator[ClusterNodes]:
    """A Redis Cluster of the test's own, not the session's: the test kills a master or moves a slot."""
    with redis_cluster() as nodes:
        yield nodes


@pytest.fixture
async def cluster_hubs(
    pg_url: str, own_cluster: ClusterNodes, tmp_path: Path
) -> AsyncIterator[tuple[Settings, list[HubProcess]]]:
    settings = make_settings(pg_url, own_cluster.url)
    started = await asyncio.gather(
        start_hub(settings, tmp_path / "hub-0.log", CARTSNITCH_LOG_LEVEL="INFO"),
        start_hub(settings, tmp_path / "hub-1.log", CARTSNITCH_LOG_LEVEL="INFO"),
    )
    yield settings, list(started)
    await stop_hubs(list(started))


async def test_a_call_a_master_answers_with_moved_runs_where_the_slot_is_and_fixes_the_slot_map(
    redis_cluster_url: str,
) -> None:
    cluster = cluster_client(redis_cluster_url, timeout=2)
    await cluster.initialize()
    commands = ClusterCommands(cluster, parse_cluster_url(redis_cluster_url), [], timeout=2)
    key = bus.history_key("user:moved").encode()
    slot = key_slot(key)
    owner = cluster.nodes_manager.get_node_from_slot(slot)
    stale = next(node for node in cluster.get_primaries() if node.name != owner.name)
    try:
        cluster.nodes_manager.slots_cache[slot] = [stale]  # as if the slot had moved since the map was read
        replies = await commands.execute([KeyedCall(key, (b"INCR", key)), KeyedCall(b"x", (b"INCR", b"x"))])
        assert replies == [1, 1]  # the first ran on its real master, after the stale one answered MOVED
        assert cluster.nodes_manager.get_node_from_slot(slot).name == owner.name
        assert await commands.execute([KeyedCall(key, (b"INCR", key))]) == [2]  # straight to the owner now
    finally:
        commands.close()
        await cluster.aclose()


def job(envelope: Any) -> int:
    return int(envelope["payload"]["job_id"].removeprefix("job-"))


@dataclass
class Seen:
    """What one follower received: the event segments between resyncs, each in arrival order."""

    segments: list[list[tuple[str, int]]] = field(default_factory=lambda: [[]])
    resyncs: int = 0

    @classmethod
    def of(cls, follower: Follower) -> Seen:
        seen = cls()
        for name, envelope in follower.events:
            if name == "cartsnitch.resync":
                seen.resyncs += 1
                seen.segments.append([])
            elif name == "cartsnitch.sync.progress":
                seen.segments[-1].append((envelope["id"], job(envelope)))
        return seen

    def jobs(self) -> set[int]:
        return {n for segment in self.segments for _id, n in segment}

    def ids(self) -> list[str]:
        return [event_id for segment in self.segments for event_id, _n in segment]


def check_no_silent_gap(seen: Seen, acknowledged: list[tuple[str, int]], history: set[int]) -> set[int]:
    """Assert the guarantee for one follower; return the acknowledged events Redis lost (not in the history)."""
    lost = {n for _id, n in acknowledged if n not in history}
    for segment in seen.segments:
        jobs = [n for _id, n in segment]
        assert jobs == sorted(set(jobs)), "a segment between resyncs is in order, without duplicates"
    if seen.resyncs == 0:
        assert seen.ids() == [event_id for event_id, _n in acknowledged], "no resync: an exact resume"
        assert not lost, "Redis lost events and the follower was not told"
    else:
        missing = {n for _id, n in acknowledged} - seen.jobs()
        assert missing <= lost, f"events in the history were never delivered: {sorted(missing - lost)[:10]}"
    return lost


async def history_jobs(redis: RedisCluster, user_id: str) -> set[int]:
    entries = await redis.xrange(bus.history_key(bus.user_audience(user_id)))
    return {job(json.loads(fields[b"e"])) for _id, fields in entries}


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def with_retries(attempt: Callable[[], Awaitable[str]]) -> tuple[str, int]:
    """The id of the publish once it succeeds (every attempt carries the same idempotency key), and the attempts."""
    deadline = time.monotonic() + EVENT_DEADLINE_SECONDS
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt(), tries
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def replica_of(master: str) -> int:
    """The port of the replica of a master (host:port)."""
    host, _, port = master.rpartition(":")
    with redis_sync.Redis(host=host, port=int(port)) as node:
        info = node.info("replication")
    return int(info["slave0"]["port"])


def role(port: int) -> str:
    with redis_sync.Redis(host="127.0.0.1", port=port, socket_timeout=1) as node:
        return str(node.execute_command("ROLE")[0].decode())


def masters_of(client: redis_sync.RedisCluster, user_ids: list[str]) -> dict[str, str]:
    """user id -> the master (host:port) that owns the user's slot."""
    return {user_id: client.get_node_from_key(bus.history_key(bus.user_audience(user_id))).name for user_id in user_ids}


def pick(masters: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """(the master with most users, two of its users, two users of other masters)."""
    counts: dict[str, int] = {}
    for master in masters.values():
        counts[master] = counts.get(master, 0) + 1
    victim = max(counts, key=lambda master: counts[master])
    on_victim = [user for user, master in masters.items() if master == victim][:2]
    elsewhere = [user for user, master in masters.items() if master != victim][:2]
    assert len(on_victim) == 2 and len(elsewhere) == 2, masters
    return victim, on_victim, elsewhere


@pytest.mark.parametrize("lagging", [False, True], ids=["crash", "crash-with-replication-lag"])
async def test_a_killed_master_gives_an_exact_resume_or_a_resync_never_a_silent_gap(
    own_cluster: ClusterNodes, cluster_hubs: tuple[Settings, list[HubProcess]], lagging: bool
) -> None:
    """``lagging``: the replica had stopped receiving the master's writes for 0.3 s when the master died (frozen,
    and its replication link cut), so the failover loses what the master acknowledged in that time."""
    settings, hubs = cluster_hubs
    users = dict(await users_with_tokens(settings, 12))
    client = sync_cluster_client(own_cluster.url)
    try:
        victim, on_victim, elsewhere = pick(masters_of(client, list(users)))
    finally:
        client.close()
    chosen = on_victim + elsewhere
    followers = {user_id: Follower(user_id, users[user_id]) for user_id in chosen}
    for index, user_id in enumerate(chosen):
        await followers[user_id].connect(hubs[index % 2])  # both processes follow users of the victim
    redis = redis_client(own_cluster.url, timeout=2, retries=8)
    acknowledged: dict[str, list[tuple[str, int]]] = {user_id: [] for user_id in chosen}
    attempts = 0

    async def through_channels(user_id: str) -> None:
        """The publish helper of the other services, on redis-py's cluster client."""
        nonlocal attempts
        for n in range(EVENTS_PER_USER):
            event_id, tries = await with_retries(
                lambda n=n: publish(  # type: ignore[misc]
                    redis,
                    "cartsnitch.sync.progress",
                    sync_payload(user_id, n),
                    service="test",
                    idempotency_key=f"{user_id}:{n}",
                )
            )
            attempts += tries - 1
            acknowledged[user_id].append((event_id, n))

    async def through_hub(user_id: str, hub: HubProcess, http: aiohttp.ClientSession) -> None:
        """POST /internal/events: the hub records through its own raw per-master pipelines."""
        nonlocal attempts

        async def post(n: int) -> str:
            async with http.post(
                hub.url + "/internal/events",
                json={"event_type": "cartsnitch.sync.progress", "payload": sync_payload(user_id, n)},
                headers={"X-Service-Key": settings.service_key or "", "Idempotency-Key": f"{user_id}:{n}"},
            ) as response:
                assert response.status == 202, await response.text()
                return str((await response.json())["id"])

        for n in range(EVENTS_PER_USER):
            event_id, tries = await with_retries(lambda n=n: post(n))  # type: ignore[misc]
            attempts += tries - 1
            acknowledged[user_id].append((event_id, n))

    killed_at = failed_over_at = 0.0
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            publishing = [
                asyncio.ensure_future(through_channels(chosen[0])),
                asyncio.ensure_future(through_hub(chosen[1], hubs[0], http)),
                asyncio.ensure_future(through_channels(chosen[2])),
                asyncio.ensure_future(through_hub(chosen[3], hubs[1], http)),
            ]
            await wait_until(
                lambda: all(len(followers[u].events) >= 60 for u in on_victim), 60, "events before the kill"
            )
            replica = replica_of(victim)
            if lagging:
                own_cluster.processes[replica].send_signal(signal.SIGSTOP)
                with redis_sync.Redis(host="127.0.0.1", port=int(victim.rpartition(":")[2])) as node:
                    node.execute_command("CLIENT KILL TYPE replica")
                await asyncio.sleep(0.3)
            own_cluster.kill(int(victim.rpartition(":")[2]))
            killed_at = time.monotonic()
            if lagging:
                own_cluster.processes[replica].send_signal(signal.SIGCONT)
            await wait_until(lambda: role(replica) == "master", 30, "the replica to take over")
            failed_over_at = time.monotonic()
            await asyncio.gather(*publishing)
        for user_id in chosen:
            await wait_until(
                lambda u=user_id: EVENTS_PER_USER - 1 in Seen.of(followers[u]).jobs(), 60, f"{user_id}'s last event"
            )
        await asyncio.sleep(0.5)
        histories = {user_id: await history_jobs(redis, user_id) for user_id in chosen}
    finally:
        await redis.aclose()
        for follower in followers.values():
            with contextlib.suppress(Exception):
                await follower.close()

    published = delivered = lost = resyncs = 0
    for user_id in chosen:
        seen = Seen.of(followers[user_id])
        lost_here = check_no_silent_gap(seen, acknowledged[user_id], histories[user_id])
        published += len(acknowledged[user_id])
        delivered += len(seen.jobs() & {n for _id, n in acknowledged[user_id]})
        lost += len(lost_here)
        resyncs += seen.resyncs
        if user_id in elsewhere:
            assert seen.resyncs == 0, "the users of the other masters resume exactly"
    print(
        f"\nmaster kill ({'replication lag' if lagging else 'crash'}): published {published}, delivered {delivered}, "
        f"lost {lost}, resyncs {resyncs} "
        f"(of the killed master's 2 users; {attempts} publish retries; failover took "
        f"{failed_over_at - killed_at:.1f} s)"
    )
    assert published == 4 * EVENTS_PER_USER
    if lagging:
        assert lost > 0, "the failover lost the writes the replica never received"


def move_slot(client: redis_sync.RedisCluster, slot: int, target: str, first: list[str]) -> None:
    """Move one slot to ``target`` as ``redis-cli --cluster reshard`` does (IMPORTING/MIGRATING, MIGRATE the keys,
    then the new owner on every master), slowly: the ``first`` keys go at once, then for half a second and more
    the rest a few at a time, while the hub keeps writing (its calls meet ASK and TRYAGAIN, then MOVED)."""
    source = client.nodes_manager.get_node_from_slot(slot)
    host, _, port = target.rpartition(":")
    src = redis_sync.Redis(host=source.host, port=source.port)
    dst = redis_sync.Redis(host=host, port=int(port))
    try:
        source_id, target_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        src.execute_command("MIGRATE", host, int(port), "", 0, 5000, "KEYS", *first)
        time.sleep(0.5)
        for _ in range(5000):
            keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 3)
            if not keys:
                break
            src.execute_command("MIGRATE", host, int(port), "", 0, 5000, "KEYS", *keys)
            time.sleep(0.01)
        for node in client.get_primaries():
            redis_sync.Redis(host=node.host, port=node.port).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    finally:
        src.close()
        dst.close()


async def test_a_moved_slot_keeps_exactly_once_legacy_ingest_and_delivery(
    own_cluster: ClusterNodes, cluster_hubs: tuple[Settings, list[HubProcess]]
) -> None:
    settings, hubs = cluster_hubs
    users = dict(await users_with_tokens(settings, 12))
    client = sync_cluster_client(own_cluster.url)
    source, moving, staying = pick(masters_of(client, list(users)))
    moved, stays = moving[0], staying[0]
    slot = client.keyslot(bus.history_key(bus.user_audience(moved)))
    target = next(node.name for node in client.get_primaries() if node.name != source)
    followers = {moved: Follower(moved, users[moved]), stays: Follower(stays, users[stays])}
    await followers[moved].connect(hubs[0])
    await followers[stays].connect(hubs[1])
    sent = 0

    async def platform() -> None:
        """The platform's plain PUBLISH, which both hub processes consume and record once."""
        nonlocal sent
        for n in range(EVENTS_PER_USER):
            for user_id in followers:
                envelope = {
                    "event_type": "cartsnitch.sync.progress",
                    "timestamp": f"2026-11-26T12:00:{n % 60:02d}+00:00",
                    "service": "receiptwitness",
                    "payload": sync_payload(user_id, n),
                }
                await asyncio.to_thread(client.publish, "cartsnitch.sync.progress", json.dumps(envelope))
                sent += 1
            await asyncio.sleep(0.01)

    redis = redis_client(own_cluster.url, timeout=2, retries=8)
    try:
        publishing = asyncio.ensure_future(platform())
        await wait_until(lambda: len(followers[moved].events) >= 50, 60, "events before the move")
        audience = bus.user_audience(moved)
        first = [bus.epoch_key(audience), bus.history_key(audience)]
        await asyncio.to_thread(move_slot, client, slot, target, first)
        await publishing
        for user_id in followers:
            await wait_until(
                lambda u=user_id: EVENTS_PER_USER - 1 in Seen.of(followers[u]).jobs(), 60, f"{user_id}'s last event"
            )
        await asyncio.sleep(0.5)
        client.nodes_manager.initialize()
        assert client.get_node_from_key(bus.history_key(bus.user_audience(moved))).name == target
        for user_id, follower in followers.items():
            entries = await redis.xrange(bus.history_key(bus.user_audience(user_id)))
            recorded = [job(json.loads(fields[b"e"])) for _id, fields in entries]
            assert recorded == list(range(EVENTS_PER_USER)), "each legacy PUBLISH recorded once, in order"
            seen = Seen.of(follower)
            for segment in seen.segments:
                jobs = [n for _id, n in segment]
                assert jobs == sorted(set(jobs)), "a segment between resyncs is in order, without duplicates"
            assert seen.jobs() == set(recorded), "every recorded event was delivered"
            if user_id == stays:
                assert seen.resyncs == 0
    finally:
        await redis.aclose()
        client.close()
        for follower in followers.values():
            with contextlib.suppress(Exception):
                await follower.close()
    assert sent == 2 * EVENTS_PER_USER
