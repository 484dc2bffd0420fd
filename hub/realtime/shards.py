"""Live routing on a Redis Cluster: sharded pub/sub (``SSUBSCRIBE``, Redis 7+).

An audience's live channel lives in the audience's slot, and the record script ``SPUBLISH``es on the master that
owns it: a live event travels to that shard and to the processes subscribed there, not to every node as a classic
``PUBLISH`` does. This process subscribes to a channel on the master that owns its slot (redis-py's slot map), with
one raw connection per master (``hub.infra.resp``). redis-py's ``ClusterPubSub`` was measured and cannot carry the
live traffic: it polls its per-node connections in turn, and 30,000 sharded messages on a local 3-master cluster
took it 19.8 s at 67 µs of CPU each, against 0.9 s and under 10 µs each (publisher included) here.

When a master's connection breaks (a crash, a failover), or a master drops a channel (its slot moved to another
master, or the master became a replica), every channel it carried is subscribed again where the refreshed slot map
says, and once Redis has confirmed them ``on_resubscribed`` runs: what was published meanwhile is in the history,
and the subscribers catch up from it. Until then the messages of those channels are held back: one delivered
before the subscribers start catching up would move them past the events they missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import cast

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hub.infra.cluster import ClusterAddress
from hub.infra.resp import PubSubConnection, auth_command, open_connection

log = logging.getLogger("hub.fanout")

ROUTE_FIRST = 0.05
ROUTE_CAP = 1.0
"""Back-off between attempts to re-route channels while the cluster has no master for their slots (a failover)."""


class ShardedSubscriptions:
    def __init__(
        self,
        cluster: RedisCluster,
        address: ClusterAddress,
        on_message: Callable[[bytes, bytes], None],
        on_resubscribed: Callable[[], None],
        *,
        timeout: float,
    ) -> None:
        self.cluster = cluster
        self.address = address
        self.on_message = on_message
        self.on_resubscribed = on_resubscribed
        self.timeout = timeout
        self.wanted: set[str] = set()
        self._holder: dict[str, str] = {}
        """channel -> the master whose connection carries it (or was asked to)"""
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._own_unsubscribes: dict[tuple[str, str], int] = {}
        self._connections: dict[str, PubSubConnection] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._holding: set[bytes] = set()
        self._held: list[tuple[bytes, bytes]] = []
        self._dirty = asyncio.Event()
        self._router: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._router = asyncio.ensure_future(self._route_loop())

    async def close(self) -> None:
        self._closing = True
        for task in (self._router, *self._watchers):
            if task is not None:
                task.cancel()
        for task in (self._router, *self._watchers):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for protocol in self._connections.values():
            if protocol.transport is not None:
                protocol.transport.close()
        self._connections.clear()

    def count(self) -> int:
        return len(self.wanted)

    async def subscribe(self, channel: str) -> None:
        """Subscribe on the channel's master and wait until it confirms (within ``timeout``)."""
        self.wanted.add(channel)
        if channel in self._confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                if channel not in self._holder:
                    try:
                        await self._send_subscribe(channel)
                    except Exception as exc:  # no master for the slot now: the router keeps trying
                        log.info("sharded subscription deferred (%s)", type(exc).__name__)
                        self._dirty.set()
                await waiter
        except TimeoutError:
            raise RedisTimeoutError("Redis did not confirm the subscription in time") from None
        finally:
            waiting = self._waiters.get(channel)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[channel]

    def unsubscribe(self, channel: str) -> None:
        self.wanted.discard(channel)
        self._confirmed.discard(channel)
        for waiter in self._waiters.pop(channel, ()):  # a subscribe still under way has nothing left to wait for
            if not waiter.done():
                waiter.set_result(None)
        node = self._holder.pop(channel, None)
        protocol = self._connections.get(node) if node is not None else None
        if node is not None and protocol is not None:
            self._own_unsubscribes[node, channel] = self._own_unsubscribes.get((node, channel), 0) + 1
            protocol.send("SUNSUBSCRIBE", channel)

    async def _send_subscribe(self, channel: str) -> None:
        node = self.cluster.nodes_manager.get_node_from_slot(key_slot(channel.encode())).name
        protocol = await self._connection(node)
        if channel not in self.wanted or channel in self._holder:
            # unsubscribed while the connection opened (a subscription sent now would be one nobody wants, and
            # the channel, marked as carried, would never be asked for again), or routed by another caller
            return
        self._holder[channel] = node
        protocol.send("SSUBSCRIBE", channel)

    # --- what the masters say ----------------------------------------------------------------------------

    def _message(self, channel: bytes, data: bytes) -> None:
        if self._holding and channel in self._holding:
            self._held.append((channel, data))
            return
        self.on_message(channel, data)

    def _subscribed(self, node: str, raw: bytes) -> None:
        channel = raw.decode()
        if self._holder.get(channel) != node or channel not in self.wanted:
            return
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _unsubscribed(self, node: str, raw: bytes) -> None:
        channel = raw.decode()
        pending = self._own_unsubscribes.get((node, channel), 0)
        if pending:
            if pending == 1:
                del self._own_unsubscribes[node, channel]
            else:
                self._own_unsubscribes[node, channel] = pending - 1
            return
        if self._holder.get(channel) == node:
            # the master dropped it: its slot now belongs to another master
            del self._holder[channel]
            self._confirmed.discard(channel)
            self._dirty.set()

    def _error(self, node: str, text: str) -> None:
        # a subscription the master refused (MOVED: our slot map was stale): route its channels again
        log.info("a master refused a sharded subscription (%s); routing again", text.split(" ", 1)[0])
        for channel, holder in list(self._holder.items()):
            if holder == node and channel not in self._confirmed:
                del self._holder[channel]
        self._dirty.set()

    def _lost(self, node: str, protocol: PubSubConnection) -> None:
        if self._connections.get(node) is protocol:
            del self._connections[node]
        for channel, holder in list(self._holder.items()):
            if holder == node:
                del self._holder[channel]
                self._confirmed.discard(channel)
        self._own_unsubscribes = {key: n for key, n in self._own_unsubscribes.items() if key[0] != node}
        if not self._closing:
            log.warning("sharded pub/sub connection to %s lost: its channels move to their current master", node)
            self._dirty.set()

    # --- connections and routing ---------------------------------------------------------------------

    async def _connection(self, node: str) -> PubSubConnection:
        protocol = self._connections.get(node)
        if protocol is not None:
            return protocol
        async with self._connecting.setdefault(node, asyncio.Lock()):
            protocol = self._connections.get(node)
            if protocol is not None:
                return protocol
            host, _, port = node.rpartition(":")
            url = self.address.node_url(host, int(port))
            protocol = cast(
                PubSubConnection,
                await open_connection(
                    url,
                    lambda: PubSubConnection(
                        self._message,
                        lambda _channel, _data: None,
                        lambda channel: self._subscribed(node, channel),
                        lambda channel: self._unsubscribed(node, channel),
                        lambda text: self._error(node, text),
                    ),
                    self.timeout,
                ),
            )
            auth = auth_command(url)
            if auth is not None and protocol.transport is not None:
                protocol.transport.write(auth)
            self._connections[node] = protocol
            watcher = asyncio.ensure_future(self._watch(node, protocol))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
            return protocol

    async def _watch(self, node: str, protocol: PubSubConnection) -> None:
        await protocol.lost
        self._lost(node, protocol)

    async def _route_loop(self) -> None:
        delay = ROUTE_FIRST
        while not self._closing:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                moved = await self._route()
            except (OSError, RedisConnectionError, RedisTimeoutError, TimeoutError, ConnectionError) as exc:
                log.info("routing sharded subscriptions failed (%s); retrying", type(exc).__name__)
                moved = None
            except Exception:
                log.exception("routing sharded subscriptions failed; retrying")
                moved = None
            if moved:
                log.warning("%d sharded subscriptions moved: their subscribers catch up from the history", moved)
                self.on_resubscribed()
            # no await from here: the held messages reach subscribers that are catching up already
            held, self._held = self._held, []
            self._holding.clear()
            for channel, data in held:
                self.on_message(channel, data)
            if moved is None or any(channel not in self._confirmed for channel in self.wanted):
                self._dirty.set()
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, ROUTE_CAP)
            else:
                delay = ROUTE_FIRST

    async def _route(self) -> int:
        """Subscribe every wanted channel that no master carries on its current master; wait for the
        confirmations (within ``timeout``); return how many moved."""
        await self.cluster.nodes_manager.initialize()
        moved: list[str] = []
        for channel in sorted(self.wanted):
            if channel in self._holder:
                continue
            self._holding.add(channel.encode())
            try:
                await self._send_subscribe(channel)
            except Exception as exc:
                log.info("no master for a sharded channel yet (%s)", type(exc).__name__)
                continue
            moved.append(channel)
        deadline = asyncio.get_running_loop().time() + self.timeout
        while any(channel in self._holder and channel not in self._confirmed for channel in moved):
            if asyncio.get_running_loop().time() > deadline:
                for channel in moved:
                    if channel not in self._confirmed:
                        self._holder.pop(channel, None)
                break
            await asyncio.sleep(0.01)
        return sum(1 for channel in moved if channel in self._confirmed)
