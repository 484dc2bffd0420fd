"""What the browser tests drive: Debian's Chromium through Playwright, real hub processes, a second origin.

The fixtures in ``conftest.py`` hand out these objects; scenarios import the classes for type hints, e.g.
``from tests.browser.harness import HubProcess, StaticSite, Tab``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import BrowserContext, Page, Request

from hub.cli import DEMO_EMAIL
from hub.store import prices, seed
from hub.store.engine import build_engine, build_sessionmaker
from hub.store.migrate import upgrade
from tests.services import free_port, unavailable

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).resolve().parent / "pages"
SOCKETIO_BUNDLE = ROOT / "tests" / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # without these Chromium keeps calling home, and the closed network here refuses it
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
DB_FILE = "cartsnitch-hub.db"
DEMO_PASSWORD = "browser-demo-password"
READY_SECONDS = 60.0
ABORTED = "net::ERR_ABORTED"
RUN_ASYNC_SECONDS = 300


def chromium_path() -> str | None:
    """Debian's Chromium (``CARTSNITCH_TEST_CHROMIUM`` overrides); Playwright never downloads a browser here."""
    given = os.environ.get("CARTSNITCH_TEST_CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def require_socketio_bundle() -> None:
    """Skip (fail under CI=true) when npm has not installed socket.io-client in tests/js."""
    if not SOCKETIO_BUNDLE.exists():
        unavailable("socket.io-client's browser bundle (npm ci in tests/js)")


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from a synchronous test. Playwright's sync API marks its own event loop as
    running in the test's thread between calls, so the coroutine gets a thread (and a loop) of its own."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(_awaited(make)))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=target, name="browser-tests-async")
    worker.start()
    worker.join(RUN_ASYNC_SECONDS)
    if worker.is_alive():
        raise TimeoutError(f"the coroutine did not finish within {RUN_ASYNC_SECONDS} s")
    if failure:
        raise failure[0]
    return result[0]


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


# --- HTTP ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    method: str, url: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None, timeout: float = 10
) -> HttpResponse:
    """One HTTP request (4xx and 5xx are returned, not raised)."""
    data = None
    all_headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpResponse(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, dict(exc.headers.items()), exc.read())


# --- the hub ------------------------------------------------------------------------------------------------


def seed_demo_database(directory: Path) -> Path:
    """A migrated SQLite database holding the demo data that ``serve`` loads on a first start (seeded once per
    run; every hub starts from a copy, in seconds). The demo user's password is ``DEMO_PASSWORD``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DB_FILE

    async def build() -> None:
        engine = build_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(engine)
            await seed.seed(engine, seed.SeedSize.demo(), demo_email=DEMO_EMAIL, demo_password=DEMO_PASSWORD)
        finally:
            await engine.dispose()

    run_async(build)
    return path


def hub_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any hub setting, plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CARTSNITCH_") and k not in ("DATABASE_URL", "REDIS_URL", "PORT", "LOG_LEVEL")
    }
    env.update(settings)
    return env


@dataclass
class HubProcess:
    """``cartsnitch-hub serve`` in a directory of its own on a free loopback port: the embedded default (a SQLite
    file, the in-process broker, dev mode) on a copy of the demo data, unless ``settings`` say otherwise.

    ``settings`` are environment variables (``{"CARTSNITCH_CORS_ORIGINS": '["http://…"]'}``). The service key is
    fixed here (``service_key``) for ``publish``; the demo user is ``demo_email`` / ``demo_password``.
    """

    directory: Path
    settings: dict[str, str]
    port: int = field(default_factory=free_port)
    service_key: str = "browser-tests-service-key-0123456789abcdef"
    demo_email: str = DEMO_EMAIL
    demo_password: str = DEMO_PASSWORD
    output: list[str] = field(default_factory=list)
    """What ``serve`` printed on stdout (the URL lines)."""
    process: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.directory / DB_FILE}"

    @property
    def log_path(self) -> Path:
        return self.directory / "hub.log"

    def log(self, tail: int = 4000) -> str:
        """The end of the hub's log (stderr), for failure messages."""
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def start(self) -> HubProcess:
        """Start the process and wait until ``/ready`` answers 200; the same port and database on a restart."""
        assert self.process is None or self.process.poll() is not None, "the hub is already running"
        env = hub_environment(
            {"CARTSNITCH_SERVICE_KEY": self.service_key, "CARTSNITCH_LOG_LEVEL": "INFO", **self.settings}
        )
        with self.log_path.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.directory,
                env=env,
                stdout=subprocess.PIPE,
                stderr=sink,
                text=True,
            )
        self._reader = threading.Thread(target=self._read_output, args=(self.process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the hub exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if http_request("GET", self.url + "/ready", timeout=2).status == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError(f"the hub was not ready within {READY_SECONDS:g} s:\n{self.log()}")

    def _read_output(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line.rstrip("\n"))

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: sockets and streams closed), SIGKILL after 20 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def restart(self) -> HubProcess:
        self.stop()
        return self.start()

    def request(
        self, method: str, path: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        return http_request(method, self.url + path, json_body=json_body, headers=headers)

    def get_json(self, path: str) -> Any:
        response = self.request("GET", path)
        assert response.status == 200, (path, response.status, response.body[:500])
        return response.json()

    def publish(self, event_type: str, payload: Mapping[str, Any], *, service: str = "browser-tests") -> str:
        """Publish one catalog event through ``POST /internal/events``; its id."""
        response = self.request(
            "POST",
            "/internal/events",
            json_body={"event_type": event_type, "payload": dict(payload), "service": service},
            headers={"X-Service-Key": self.service_key},
        )
        assert response.status == 202, (response.status, response.body[:500])
        event_id: str = response.json()["id"]
        return event_id

    def publish_price(self, **price: Any) -> str:
        """What a price publisher does (``try_publish_price``'s arguments), where that day's observation is not a
        receipt's line."""
        published = self.try_publish_price(**price)
        assert published is not None, "that day's observation is a receipt line"
        return published

    def try_publish_price(
        self,
        *,
        product_id: str,
        store_id: str,
        store_slug: str,
        regular_price: Decimal,
        sale_price: Decimal | None = None,
        observed: date | None = None,
    ) -> str | None:
        """What a price publisher does: record the observation in the shared database, then publish
        ``cartsnitch.prices.updated`` (the hub's snapshot in the event then includes it). None, and nothing recorded
        or published, where that day's observation is a receipt's line (the demo purchases include today's)."""
        day = observed or date.today()

        async def record() -> bool:
            engine = build_engine(self.database_url)
            try:
                async with build_sessionmaker(engine).begin() as session:
                    return await prices.record_daily_price(
                        session,
                        product_id=uuid.UUID(product_id),
                        store_id=uuid.UUID(store_id),
                        observed_date=day,
                        regular_price=regular_price,
                        sale_price=sale_price,
                        source="catalog",
                    )
            finally:
                await engine.dispose()

        if not run_async(record):
            return None
        return self.publish(
            "cartsnitch.prices.updated",
            {
                "product_id": product_id,
                "store_id": store_id,
                "store_slug": store_slug,
                "observed_date": day.isoformat(),
                "regular_price": float(regular_price),
                "sale_price": float(sale_price) if sale_price is not None else None,
            },
        )


def prepare_hub(directory: Path, template: Path | None, settings: Mapping[str, str]) -> HubProcess:
    """A hub (not started) whose directory holds a copy of the demo database ``template`` (or nothing: then
    ``serve`` seeds it on start, as on a first run)."""
    directory.mkdir(parents=True, exist_ok=True)
    if template is not None:
        for suffix in ("", "-wal", "-shm"):
            source = template.with_name(template.name + suffix)
            if source.exists():
                shutil.copyfile(source, directory / (DB_FILE + suffix))
        secrets_file = directory / (DB_FILE + ".secrets.json")
        fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"demo_password": DEMO_PASSWORD}, handle)
    return HubProcess(directory, dict(settings))


# --- the second origin --------------------------------------------------------------------------------------


class StaticSite:
    """A static web server on its own loopback port: another origin than the hub, for cross-origin scenarios.

    Serves ``tests/browser/pages/<file>`` at ``/pages/<file>``, the official socket.io-client browser bundle
    (installed by ``npm ci`` in ``tests/js``) at ``/vendor/socket.io.min.js``, and whatever a test adds with
    ``add(path, body, content_type)``. ``page_url("x.html", hub=…)`` builds a page URL with a query string.
    """

    def __init__(self) -> None:
        self.extra: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []
        handler = partial(_StaticHandler, site=self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="second-origin", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    origin = url

    def page_url(self, name: str, **query: str) -> str:
        return f"{self.url}/pages/{name}" + ("?" + urllib.parse.urlencode(query) if query else "")

    def add(self, path: str, body: bytes | str, content_type: str = "text/html; charset=utf-8") -> str:
        """Serve ``body`` at ``path`` (for a page a test writes on the fly); its URL."""
        self.extra[path] = (body.encode() if isinstance(body, str) else body, content_type)
        return self.url + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _StaticHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, site: StaticSite, **kwargs: Any) -> None:
        self.site = site
        super().__init__(*args, directory=str(PAGES), **kwargs)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        self.site.requests.append(path)
        if path in self.site.extra:
            body, content_type = self.site.extra[path]
            self._send(200, body, content_type)
        elif path == "/vendor/socket.io.min.js":
            if not SOCKETIO_BUNDLE.exists():
                self._send(404, b"socket.io-client is not installed (npm ci in tests/js)", "text/plain")
            else:
                self._send(200, SOCKETIO_BUNDLE.read_bytes(), "text/javascript; charset=utf-8")
        elif path.startswith("/pages/") and "/" not in path[len("/pages/") :] and (PAGES / path[7:]).is_file():
            file = PAGES / path[len("/pages/") :]
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(200, file.read_bytes(), content_type)
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --- a browser tab ------------------------------------------------------------------------------------------


@dataclass
class Tab:
    """A page in a fresh browser context (no shared cookies or cache), with everything that went wrong in it
    recorded: console errors, uncaught exceptions, requests that failed at the network level (those the page
    cancelled itself are kept apart), HTTP error responses, and every URL the page requested (``hosts()`` names
    the hosts it talked to)."""

    context: BrowserContext
    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    aborted_requests: list[str] = field(default_factory=list)
    """Requests the page cancelled itself (``EventSource.close()``, an aborted fetch, leaving the page)."""
    error_responses: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def watch(self) -> Tab:
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        self.page.on("requestfailed", self._failed)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("websocket", lambda socket: self.requests.append(socket.url))
        self.page.on(
            "response", lambda r: self.error_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )
        return self

    def _failed(self, request: Request) -> None:
        entry = f"{request.method} {request.url}: {request.failure}"
        (self.aborted_requests if request.failure == ABORTED else self.failed_requests).append(entry)

    def hosts(self) -> set[str]:
        """``host:port`` of every request the page made (websocket upgrades included)."""
        return {urllib.parse.urlsplit(url).netloc for url in self.requests if not url.startswith(("data:", "blob:"))}

    def problems(self, allow: Iterable[str] = ()) -> list[str]:
        allowed = tuple(allow)
        found = [
            *(f"console: {m}" for m in self.console_errors),
            *(f"page error: {m}" for m in self.page_errors),
            *(f"request failed: {m}" for m in self.failed_requests),
            *(f"HTTP {m}" for m in self.error_responses),
        ]
        return [p for p in found if not any(a in p for a in allowed)]

    def assert_clean(self, allow: Iterable[str] = ()) -> None:
        """No console error, uncaught exception, failed request or HTTP error so far (except those containing one
        of the ``allow`` strings)."""
        problems = self.problems(allow)
        assert not problems, "\n".join(problems)
