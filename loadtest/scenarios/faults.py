"""Fault injection under load: what publishers and clients see when Redis, PostgreSQL or a hub process fails.

For each fault: a fresh PostgreSQL and Redis (AOF off, or on with everysec/always for the restart faults), two hub
processes, N users each followed by one python-socketio client (websocket) that, when disconnected, reconnects with
its last_event_id (to its own process, or to the other when its own is gone). A publisher sends RATE events/s for
SECONDS through ``POST /internal/events``, alternating between the processes, each with an Idempotency-Key, a 5 s
timeout and up to 6 tries (the same key, the next process) on a timeout, a 5xx or a refused connection. The fault
is injected FAULT_AT s in (a Redis restart: SIGKILL, ``--redis-down`` seconds, start); after the last publish the
clients get up to DELIVERY_TIMEOUT s to receive everything.

Event n of a user carries ``items_synced = n``: per user, an accepted event that no client delivery carries is lost
unless a ``cartsnitch.resync`` reached that client after the event's publish began (the client was told to
refetch); a value delivered twice is a duplicate; an id not after the previous one of the same epoch is out of
order. Recovery: from the injection (SIGKILL, SIGTERM of a hub) or the end of the fault (Redis up, SIGCONT,
PostgreSQL up) to the first accepted publish that began after it, and to the first delivery of such an event.

    python -m loadtest.scenarios.faults [--faults redis-freeze,sigterm-process] [--users 200] [--rate 200]
        [--seconds 40] [--redis-down 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from channels.bus import parse_event_id
from loadtest.common import RESULTS, machine, record
from tests.cluster import HubProcess, User, create_users, start_hub, stop_hubs, sync_payload
from tests.conftest import make_settings
from tests.faults.conftest import create_database
from tests.faults.follower import Follower
from tests.services import PostgresCluster, RedisProcess
from tests.sse import SseStream

FAULT_AT = 10.0
FREEZE_SECONDS = 10.0
POSTGRES_DOWN_SECONDS = 10.0
PUBLISH_TIMEOUT = 5.0
PUBLISH_TRIES = 6
RECONNECT_TRIES = 30
DELIVERY_TIMEOUT = 30.0
EXIT_TIMEOUT = 60.0
WATCHERS = 3
"""SSE streams and long-polls held on process A in the process faults"""

REDIS_CONFIG: dict[str, dict[str, Any]] = {
    "redis-restart-no-persistence": {},
    "redis-restart-aof-everysec": {"appendonly": True, "appendfsync": "everysec"},
    "redis-restart-aof-always": {"appendonly": True, "appendfsync": "always"},
}
FAULTS = (
    "redis-restart-no-persistence",
    "redis-restart-aof-everysec",
    "redis-restart-aof-always",
    "redis-freeze",
    "postgres-stop",
    "sigkill-process",
    "sigterm-process",
)


@dataclass
class Sent:
    """One event the publisher tried to publish."""

    user: int
    n: int
    began: float
    tries: list[str] = field(default_factory=list)
    """the outcome of every try that did not succeed: a status, ``timeout`` or ``connection``"""
    refusals: list[tuple[float, float]] = field(default_factory=list)
    """(when it began, seconds until the answer) of every try answered with a status other than 202"""
    event_id: str | None = None
    accepted_at: float | None = None
    try_began: float | None = None
    """when the successful try began"""


class Publisher:
    """RATE events/s through POST /internal/events of both processes in turn, retried with the same key."""

    def __init__(self, hubs: list[HubProcess], service_key: str, users: list[User], rate: float) -> None:
        self.hubs = hubs
        self.service_key = service_key
        self.users = users
        self.rate = rate
        self.sent: list[Sent] = []
        self.run_id = uuid.uuid4().hex[:8]

    async def run(self, seconds: float) -> None:
        total = int(self.rate * seconds)
        connector = aiohttp.TCPConnector(limit=3000, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            tasks: list[asyncio.Task[None]] = []
            started = time.monotonic()
            while len(tasks) < total and time.monotonic() - started < seconds + 5:
                due = min(total, int((time.monotonic() - started) * self.rate) + 1)
                while len(tasks) < due:
                    tasks.append(asyncio.create_task(self._publish(http, len(tasks))))
                await asyncio.sleep(0.005)
            # every publish ends by itself: PUBLISH_TRIES tries of at most PUBLISH_TIMEOUT s and a back-off each
            await asyncio.wait(tasks, timeout=PUBLISH_TRIES * (PUBLISH_TIMEOUT + 2) + 5)
            for task in tasks:
                task.cancel()

    async def _publish(self, http: aiohttp.ClientSession, k: int) -> None:
        user, n = k % len(self.users), k // len(self.users)
        sent = Sent(user, n, time.monotonic())
        self.sent.append(sent)
        body = {"event_type": "cartsnitch.sync.progress", "payload": sync_payload(self.users[user].id, n)}
        headers = {"X-Service-Key": self.service_key, "Idempotency-Key": f"faults-{self.run_id}-{k}"}
        timeout = aiohttp.ClientTimeout(total=PUBLISH_TIMEOUT)
        for attempt in range(PUBLISH_TRIES):
            hub = self.hubs[(k + attempt) % len(self.hubs)]
            began = time.monotonic()
            try:
                async with http.post(
                    hub.url + "/internal/events", json=body, headers=headers, timeout=timeout
                ) as response:
                    if response.status == 202:
                        sent.event_id = (await response.json())["id"]
                        sent.accepted_at, sent.try_began = time.monotonic(), began
                        return
                    sent.tries.append(str(response.status))
                    sent.refusals.append((began, time.monotonic() - began))
                    if response.status < 500:
                        return  # refused for good: a retry would get the same answer
            except TimeoutError:
                sent.tries.append("timeout")
            except aiohttp.ClientError:
                sent.tries.append("connection")
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))


class Client:
    """One user's socket client: on a disconnect it reconnects with its last id, to its own process while that one
    runs, else (or after a refusal) to the other."""

    def __init__(self, user: User, home: int, hubs: list[HubProcess]) -> None:
        self.follower = Follower(user.id, user.token)
        self.home = home
        self.hubs = hubs
        self.disconnects = 0
        self.reconnected_at: list[float] = []
        self.failed = False
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.follower.connect(self.hubs[self.home].url)
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        while not self._stop:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.follower.gone.wait(), 0.5)
            if self._stop or not self.follower.gone.is_set():
                continue
            self.disconnects += 1
            self.follower.client = None
            if not await self._reconnect():
                self.failed = True
                return

    async def _reconnect(self) -> bool:
        for attempt in range(RECONNECT_TRIES):
            own = self.hubs[self.home]
            choices = [self.home, 1 - self.home] if own.process.returncode is None else [1 - self.home]
            target = choices[attempt % len(choices)]
            with contextlib.suppress(Exception):
                await self.follower.connect(self.hubs[target].url, timeout=5)
                self.home = target
                self.reconnected_at.append(time.monotonic())
                return True
            if self._stop:
                return False
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        return False

    async def close(self) -> None:
        self._stop = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.follower.close(), 5)


@dataclass
class Watchers:
    """SSE streams and long-polls on one process, to see how it ends them on SIGTERM or SIGKILL."""

    sse_ended: list[float] = field(default_factory=list)
    sse_reconnect: int = 0
    sse_events: int = 0
    poll_answers: list[float] = field(default_factory=list)
    poll_errors: int = 0
    stop: bool = False

    async def sse(self, http: aiohttp.ClientSession, url: str, user: User) -> None:
        with contextlib.suppress(Exception):
            stream = await SseStream.open(
                http, url + "/api/v1/me/events/stream", {"Authorization": f"Bearer {user.token}"}
            )
            try:
                while not self.stop:
                    with contextlib.suppress(TimeoutError):
                        event = await stream.next(timeout=1.0)
                        if event is None:
                            break
                        if event.get("event") == "cartsnitch.reconnect":
                            self.sse_reconnect += 1
                        else:
                            self.sse_events += 1
            finally:
                stream.close()
        self.sse_ended.append(time.monotonic())

    async def long_poll(self, http: aiohttp.ClientSession, url: str, user: User) -> None:
        after = ""
        headers = {"Authorization": f"Bearer {user.token}"}
        for _ in range(1000):
            if self.stop:
                return
            try:
                async with http.get(
                    url + "/api/v1/me/events",
                    params={"after": after, "wait": "30"},
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=40),
                ) as response:
                    self.poll_answers.append(time.monotonic())
                    if response.status != 200:
                        self.poll_errors += 1
                        return
                    after = (await response.json()).get("next") or after
            except (aiohttp.ClientError, TimeoutError):
                self.poll_errors += 1
                return


async def _in_thread(call: Callable[[], None]) -> None:
    await asyncio.to_thread(call)


async def inject(
    fault: str,
    redis: RedisProcess,
    postgres: PostgresCluster,
    hubs: list[HubProcess],
    out: dict[str, Any],
    redis_down: float = 0.0,
) -> float:
    """Inject the fault; returns the moment recovery is measured from."""
    if fault.startswith("redis-restart"):
        await _in_thread(lambda: redis.restart(signal.SIGKILL, down_seconds=redis_down))
        return time.monotonic()
    if fault == "redis-freeze":
        redis.freeze()
        await asyncio.sleep(FREEZE_SECONDS)
        redis.thaw()
        return time.monotonic()
    if fault == "postgres-stop":
        await _in_thread(lambda: postgres.stop("fast"))
        await asyncio.sleep(POSTGRES_DOWN_SECONDS)
        await _in_thread(postgres.start)
        return time.monotonic()
    victim = hubs[0].process
    sig = signal.SIGKILL if fault == "sigkill-process" else signal.SIGTERM
    mark = time.monotonic()
    victim.send_signal(sig)
    try:
        await asyncio.wait_for(victim.wait(), EXIT_TIMEOUT)
        out["exit_seconds"] = time.monotonic() - mark
    except TimeoutError:
        out["exit_seconds"] = None  # still running after EXIT_TIMEOUT: stop_hubs kills it
    return mark


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tally(fault: str, sent: list[Sent], clients: list[Client], injected: float, mark: float) -> dict[str, Any]:
    """Published, accepted, failed, delivered, lost, duplicated, out of order, resyncs, recovery; the latency of
    the publishes begun during the fault (injection to recovery mark, at least the second after the injection)."""
    failed = Counter(s.tries[-1] if s.tries else "?" for s in sent if s.event_id is None)
    answers = Counter(t for s in sent for t in s.tries)
    accepted = [s for s in sent if s.event_id is not None]
    resyncs: Counter[str] = Counter()
    delivered = duplicated = out_of_order = lost = covered = unacknowledged = 0
    lost_by_phase: Counter[str] = Counter()
    first_arrival: dict[tuple[int, int], float] = {}
    for index, client in enumerate(clients):
        follower = client.follower
        resync_times = [at for at, name, _ in follower.events if name == "cartsnitch.resync"]
        resyncs.update(follower.resyncs())
        seen: Counter[int] = Counter()
        previous: tuple[str, int, int] | None = None
        for at, name, argument in follower.events:
            if name != "cartsnitch.sync.progress":
                continue
            n = argument["payload"]["items_synced"]
            seen[n] += 1
            first_arrival.setdefault((index, n), at)
            parsed = parse_event_id(argument.get("id"))
            if parsed is not None:
                if previous is not None and previous[0] == parsed.epoch and (parsed.ms, parsed.seq) <= previous[1:]:
                    out_of_order += 1
                previous = (parsed.epoch, parsed.ms, parsed.seq)
        delivered += len(seen)
        duplicated += sum(count - 1 for count in seen.values())
        mine = [s for s in sent if s.user == index]
        for s in mine:
            if s.event_id is None:
                unacknowledged += s.n in seen
                continue
            if s.n in seen:
                continue
            if any(at >= s.began for at in resync_times):
                covered += 1
            else:
                lost += 1
                lost_by_phase["before" if s.began < mark - 0.5 else "after"] += 1
    after = [s for s in accepted if s.try_began is not None and s.try_began >= mark]
    first_accept = min((s.accepted_at - mark for s in after if s.accepted_at is not None), default=None)
    first_delivery = min(
        (first_arrival[(s.user, s.n)] - mark for s in after if (s.user, s.n) in first_arrival), default=None
    )
    window = max(mark, injected + 1.0)
    refused_in = [seconds for s in sent for began, seconds in s.refusals if injected <= began <= window]
    during = [s.accepted_at - s.began for s in accepted if s.accepted_at is not None and injected <= s.began <= window]
    return {
        "published": len(sent),
        "during_fault_publish_p50_seconds": _percentile(during, 0.5),
        "during_fault_publish_p99_seconds": _percentile(during, 0.99),
        "during_fault_refusal_p50_seconds": _percentile(refused_in, 0.5),
        "during_fault_refusal_p99_seconds": _percentile(refused_in, 0.99),
        "accepted": len(accepted),
        "failed": dict(failed),
        "non_202_answers": dict(answers),
        "delivered": delivered,
        "delivered_unacknowledged": unacknowledged,
        "lost": lost,
        "lost_by_phase": dict(lost_by_phase),
        "covered_by_resync": covered,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "resyncs": dict(resyncs),
        "resyncs_per_client": dict(Counter(len(c.follower.resyncs()) for c in clients)),
        "recovery_publish_seconds": first_accept,
        "recovery_delivery_seconds": first_delivery,
        "client_disconnects": sum(c.disconnects for c in clients),
        "clients_not_reconnected": sum(c.failed for c in clients),
    }


async def wait_delivered(sent: list[Sent], clients: list[Client], timeout: float) -> float:
    """Until every accepted event reached its client (or a resync did after it began); seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pending = 0
        for s in sent:
            if s.event_id is None:
                continue
            follower = clients[s.user].follower
            if s.n in follower.items() or any(
                at >= s.began for at, name, _ in follower.events if name.endswith("resync")
            ):
                continue
            pending += 1
            break
        if not pending:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def traceback_ends(log: str) -> list[str]:
    """The exception line ending each traceback of a log."""
    out, inside = [], False
    for line in log.splitlines():
        if line.startswith("Traceback"):
            inside = True
        elif inside and line and not line.startswith(" "):
            out.append(line[:200])
            inside = False
    return out


async def run_fault(
    fault: str, users: int, rate: float, seconds: float, logs: Path, redis_down: float = 0.0
) -> dict[str, Any]:
    redis = RedisProcess(**REDIS_CONFIG.get(fault, {}))
    postgres = PostgresCluster()
    hubs: list[HubProcess] = []
    clients: list[Client] = []
    watchers = Watchers()
    tasks: list[asyncio.Task[Any]] = []
    out: dict[str, Any] = {"fault": fault, "users": users, "rate": rate, "seconds": seconds}
    if fault.startswith("redis-restart"):
        out["redis_down_seconds"] = redis_down
    try:
        await _in_thread(redis.start)
        await _in_thread(postgres.start)
        settings = make_settings(await create_database(postgres), redis.url)
        people = await create_users(settings, users)
        hubs = list(await asyncio.gather(*(start_hub(settings, logs / f"{fault}-{i}.log") for i in range(2))))
        clients = [Client(user, i % 2, hubs) for i, user in enumerate(people)]
        for start in range(0, len(clients), 50):
            await asyncio.gather(*(c.start() for c in clients[start : start + 50]))
        publisher = Publisher(hubs, settings.service_key or "", people, rate)
        async with aiohttp.ClientSession() as http:
            if fault in ("sigkill-process", "sigterm-process"):
                for user in people[:WATCHERS]:
                    tasks.append(asyncio.create_task(watchers.sse(http, hubs[0].url, user)))
                    tasks.append(asyncio.create_task(watchers.long_poll(http, hubs[0].url, user)))
            publishing = asyncio.create_task(publisher.run(seconds))
            await asyncio.sleep(FAULT_AT)
            injected = time.monotonic()
            mark = await inject(fault, redis, postgres, hubs, out, redis_down)
            out["fault_seconds"] = mark - injected
            await publishing
            out["delivery_wait_seconds"] = await wait_delivered(publisher.sent, clients, DELIVERY_TIMEOUT)
            watchers.stop = True
            if tasks:
                await asyncio.wait(tasks, timeout=10)
        out.update(tally(fault, publisher.sent, clients, injected, mark))
        if fault in ("sigkill-process", "sigterm-process"):
            out["sse_reconnect"] = f"{watchers.sse_reconnect}/{WATCHERS}"
            out["sse_ended_seconds"] = [round(at - mark, 2) for at in watchers.sse_ended if at >= mark]
            out["long_poll_answered_seconds"] = [round(at - mark, 2) for at in watchers.poll_answers if at >= mark]
        out["tracebacks"], exceptions = [], Counter[str]()
        for i in (0, 1):
            text = (logs / f"{fault}-{i}.log").read_text(errors="replace")
            out["tracebacks"].append(text.count("Traceback"))
            exceptions.update(traceback_ends(text))
        out["exceptions"] = dict(exceptions)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await stop_hubs(hubs)
        redis.close()
        postgres.close()
    return out


def _seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} s" if value < 1 else f"{value:.1f} s"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"


def row(r: dict[str, Any]) -> list[str]:
    failed = sum(r["failed"].values())
    return [
        r["fault"],
        str(r["published"]),
        str(r["accepted"]),
        f"{failed} ({_counts(r['failed'])})" if failed else "0",
        str(r["delivered"]),
        str(r["lost"]),
        str(r["duplicated"]),
        str(r["out_of_order"]),
        _counts(r["resyncs"]),
        f"{_seconds(r['recovery_publish_seconds'])} / {_seconds(r['recovery_delivery_seconds'])}",
        _seconds(r.get("exit_seconds")) if r["fault"] == "sigterm-process" else "",
    ]


HEADER = [
    "fault",
    "published",
    "accepted",
    "failed (last answer)",
    "delivered",
    "lost",
    "duplicated",
    "out of order",
    "resyncs",
    "recovery: publish / delivery",
    "exit",
]


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return "\n".join(lines)


def _quiet_unclosed_sessions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A python-socketio connect that fails (a process refusing while Redis is away, or draining) leaves its aiohttp
    session to the garbage collector, which reports each one; those reports are expected here, anything else is not."""
    if not str(context.get("message", "")).startswith("Unclosed"):
        loop.default_exception_handler(context)


async def main(
    faults: list[str], users: int, rate: float, seconds: float, redis_down: float = 0.0
) -> list[dict[str, Any]]:
    asyncio.get_running_loop().set_exception_handler(_quiet_unclosed_sessions)
    # every socket of a process that ends says "packet queue is empty, aborting": the disconnects are counted instead
    logging.getLogger("engineio.client").setLevel(logging.CRITICAL)
    results = []
    logs = RESULTS / "faults-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for fault in faults:
        for old in logs.glob(f"{fault}-*.log"):
            old.unlink()
    for fault in faults:
        result = await run_fault(fault, users, rate, seconds, logs, redis_down)
        extra = ""
        if "exit_seconds" in result:
            extra = (
                f", A exited in {_seconds(result['exit_seconds'])}, SSE reconnect {result['sse_reconnect']}, "
                f"SSE ended {result['sse_ended_seconds']}, "
                f"long-polls answered {result['long_poll_answered_seconds']}"
            )
        print(
            f"{fault}: published {result['published']}, accepted {result['accepted']}, failed "
            f"{_counts(result['failed'])} (non-202 answers {_counts(result['non_202_answers'])}), delivered "
            f"{result['delivered']}, lost {result['lost']} {result['lost_by_phase']}, covered by resync "
            f"{result['covered_by_resync']}, duplicated {result['duplicated']}, out of order "
            f"{result['out_of_order']}, resyncs {_counts(result['resyncs'])} (clients by resyncs received "
            f"{result['resyncs_per_client']}), recovery "
            f"{_seconds(result['recovery_publish_seconds'])} publish / "
            f"{_seconds(result['recovery_delivery_seconds'])} delivery, disconnects "
            f"{result['client_disconnects']}, publishes begun during the fault answered in p50 "
            f"{_seconds(result['during_fault_publish_p50_seconds'])} / p99 "
            f"{_seconds(result['during_fault_publish_p99_seconds'])} (a refused try in p50 "
            f"{_seconds(result['during_fault_refusal_p50_seconds'])} / p99 "
            f"{_seconds(result['during_fault_refusal_p99_seconds'])}), tracebacks {result['tracebacks']}{extra}",
            flush=True,
        )
        for line, count in result["exceptions"].items():
            print(f"  hub logs: {count} x {line}", flush=True)
        record("faults", {"machine": machine(), **result})
        results.append(result)
    print(table(results), flush=True)
    return results


def _faults(raw: str) -> list[str]:
    chosen = [f.strip() for f in raw.split(",") if f.strip()]
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown faults: {', '.join(sorted(unknown))} (known: {', '.join(FAULTS)})")
    return chosen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=_faults, default=list(FAULTS), help=f"comma-separated: {', '.join(FAULTS)}")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rate", type=float, default=200, help="events published per second")
    parser.add_argument("--seconds", type=float, default=40, help="how long the publisher runs")
    parser.add_argument(
        "--redis-down", type=float, default=0.0, help="seconds Redis stays down between the SIGKILL and the start"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # every process was stopped on the way out
        asyncio.run(main(args.faults, args.users, args.rate, args.seconds, args.redis_down))
