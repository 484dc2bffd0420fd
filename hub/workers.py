"""``serve --workers N``: N hub processes on one host sharing the listening port.

The parent migrates and seeds once (in ``cli``), then starts the workers: fresh interpreters (``spawn``), each with
its own event loop and its own listening socket bound with ``SO_REUSEPORT``, so the kernel spreads new connections
across them. The parent turns SIGTERM and SIGINT into one SIGTERM per worker (each then shuts down as a single
process does) and waits for them. A worker that ends while the parent did not ask it to stops the others and the
parent exits non-zero: the service manager (Kubernetes, systemd, compose) restarts the whole group, so a crash
loop shows instead of hiding behind in-process restarts. A worker whose parent disappears (SIGKILL) stops too.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from hub.settings import Settings

log = logging.getLogger("hub")

KILL_AFTER_SECONDS = 5.0
"""How long past its own shutdown timeout a stopping worker may take before it is killed."""


def check_port_free(host: str, port: int) -> None:
    """Raise OSError when something already listens on host:port.

    SO_REUSEPORT would otherwise let the workers join a group of processes that already listen there (a previous
    run still alive) and share its traffic silently. A plain bind fails on a listening port, with or without
    SO_REUSEPORT on the listener.
    """
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)


def detach_from_terminal() -> None:
    """Leave the parent's process group: a Ctrl-C in the terminal then reaches the parent only, which stops the
    workers with one SIGTERM each (a second signal during shutdown would cut a worker's cleanup short)."""
    os.setpgrp()


async def stop_with_parent(_: Any) -> None:
    """An aiohttp on_startup hook of a worker: SIGTERM itself when the parent process is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    loop = asyncio.get_running_loop()

    def parent_gone() -> None:
        loop.remove_reader(parent.sentinel)
        log.warning("the parent process is gone: stopping this worker")
        os.kill(os.getpid(), signal.SIGTERM)

    # the sentinel is a pipe whose other end the parent holds: it becomes readable when the parent ends
    loop.add_reader(parent.sentinel, parent_gone)


def supervise(settings: Settings, count: int, target: Callable[[Settings], None], shutdown_timeout: float) -> int:
    """Run ``target(settings)`` in ``count`` worker processes until a signal or a worker's end; the exit code."""
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    stopping = False

    def stop_all(signum: int | None = None, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.exitcode is None and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(count):
            if stopping:
                break
            worker = context.Process(target=target, args=(settings,), name=f"hub-worker-{index + 1}")
            worker.start()
            workers.append(worker)
        log.info("started %d workers: pids %s", len(workers), ", ".join(str(w.pid) for w in workers))
        if stopping:
            stop_all()
        return _wait(workers, stop_all, lambda: stopping, shutdown_timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(
    workers: list[BaseProcess], stop_all: Callable[[], None], stopping: Callable[[], bool], shutdown_timeout: float
) -> int:
    failed = False
    alive = list(workers)
    deadline: float | None = None
    while alive:
        ready = wait([w.sentinel for w in alive], timeout=0.5)
        for worker in [w for w in alive if w.sentinel in ready]:
            worker.join()
            alive.remove(worker)
            if not stopping():
                log.error(
                    "worker %s (pid %s) ended with exit code %s: stopping the others",
                    worker.name,
                    worker.pid,
                    worker.exitcode,
                )
                failed = True
                stop_all()
            elif worker.exitcode != 0:
                log.error("worker %s (pid %s) stopped with exit code %s", worker.name, worker.pid, worker.exitcode)
                failed = True
        if stopping() and deadline is None:
            deadline = time.monotonic() + shutdown_timeout + KILL_AFTER_SECONDS
        if deadline is not None and alive and time.monotonic() > deadline:
            for worker in alive:
                log.error("worker %s (pid %s) did not stop in time: killing it", worker.name, worker.pid)
                worker.kill()
                worker.join()
            failed = True
            alive = []
    return 1 if failed else 0
