"""Browser tests: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright's sync API against real hub
processes. Without Chromium they skip on a laptop and fail under ``CI=true``.

Fixtures for scenarios (objects from ``tests/browser/harness.py``):

``hub``            package-scoped ``HubProcess``: ``cartsnitch-hub serve`` in the embedded default (SQLite, in-process
                   broker, dev mode) on the demo data; ``second_origin`` is in its CORS list, rate limits and the
                   demo ticker are off (scenarios publish what should move). ``hub.url``, ``hub.get_json(path)``,
                   ``hub.request(method, path, json_body=, headers=)``, ``hub.publish(event_type, payload)``,
                   ``hub.publish_price(...)``, ``hub.demo_email`` / ``hub.demo_password``, ``hub.restart()``,
                   ``hub.log()``. Shared by the package: change only what your scenario creates.
``start_hub``      ``start_hub(settings={"CARTSNITCH_…": "…"}, demo_data=True) -> HubProcess``: a hub of your own
                   (same defaults as ``hub`` unless overridden), stopped after the test; a copy of the demo
                   database makes it ready in seconds.
``second_origin``  package-scoped ``StaticSite`` on another loopback port: ``tests/browser/pages/<file>`` at
                   ``/pages/<file>``, socket.io-client's browser bundle at ``/vendor/socket.io.min.js``,
                   ``second_origin.page_url("x.html", hub=hub.url)``, ``second_origin.add(path, body)``.
``unlisted_origin`` package-scoped ``StaticSite`` like ``second_origin`` but in no hub's CORS list: a page of
                   another site that the hub must treat as a stranger (public data only, no cookie changes).
``tab``            a ``Tab`` (1280x800) in a fresh browser context: ``tab.page`` is Playwright's ``Page``;
                   ``tab.assert_clean()`` fails on console errors, uncaught exceptions, failed requests and HTTP
                   errors; ``tab.hosts()`` names every host the page talked to.
``new_tab``        ``new_tab(**context_options) -> Tab`` for more tabs or other devices, e.g.
                   ``new_tab(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)``.
``browser``        the package-scoped Playwright ``Browser``.
``artifacts``      a git-ignored directory for screenshots (``tests/browser/artifacts``, or
                   ``CARTSNITCH_BROWSER_ARTIFACTS``).

Tests here are plain functions, not coroutines: Playwright's sync API runs its event loop in the test's thread.
Use ``harness.run_async`` for a coroutine (a database write, an async client). Pages of the hub run under its
Content-Security-Policy, which refuses Playwright's string predicates (``page.wait_for_function("…")`` is an
eval): wait with ``expect(locator)`` instead.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from hub.settings import DEFAULT_CORS_ORIGINS
from tests.browser.harness import (
    CHROMIUM_ARGS,
    HubProcess,
    StaticSite,
    Tab,
    chromium_path,
    prepare_hub,
    seed_demo_database,
)
from tests.services import unavailable

HERE = Path(__file__).resolve().parent
DEFAULT_TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        function = getattr(item, "function", None)
        if HERE in Path(str(item.path)).parents and inspect.iscoroutinefunction(function):
            raise pytest.UsageError(f"{item.nodeid}: browser tests are synchronous (Playwright's sync API)")


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium, headless, with a fresh profile (Playwright makes one per launch)."""
    path = chromium_path()
    if path is None:
        unavailable("Chromium (/usr/bin/chromium: apt-get install chromium)")
    assert path is not None
    launched = playwright.chromium.launch(executable_path=path, headless=True, args=list(CHROMIUM_ARGS))
    yield launched
    launched.close()


@pytest.fixture
def new_tab(browser: Browser) -> Iterator[Callable[..., Tab]]:
    contexts: list[Tab] = []

    def make(**context_options: object) -> Tab:
        context = browser.new_context(**context_options)  # type: ignore[arg-type]
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        tab = Tab(context, context.new_page()).watch()
        contexts.append(tab)
        return tab

    yield make
    for tab in contexts:
        tab.context.close()


@pytest.fixture
def tab(new_tab: Callable[..., Tab]) -> Tab:
    return new_tab(viewport={"width": 1280, "height": 800})


@pytest.fixture(scope="package")
def second_origin() -> Iterator[StaticSite]:
    site = StaticSite()
    yield site
    site.close()


@pytest.fixture(scope="package")
def unlisted_origin() -> Iterator[StaticSite]:
    site = StaticSite()
    yield site
    site.close()


@pytest.fixture(scope="package")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_demo_database(tmp_path_factory.mktemp("demo-template"))


def _defaults(second_origin: StaticSite) -> dict[str, str]:
    return {
        "CARTSNITCH_CORS_ORIGINS": json.dumps([*DEFAULT_CORS_ORIGINS, second_origin.origin]),
        "CARTSNITCH_RATE_LIMIT_ENABLED": "false",
        "CARTSNITCH_DEMO_TICKER_SECONDS": "0",
    }


@pytest.fixture(scope="package")
def hub(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, demo_database: Path, second_origin: StaticSite
) -> Iterator[HubProcess]:
    process = prepare_hub(tmp_path_factory.mktemp("hub"), demo_database, _defaults(second_origin)).start()
    yield process
    process.stop()


@pytest.fixture
def start_hub(
    browser: Browser, tmp_path: Path, demo_database: Path, second_origin: StaticSite
) -> Iterator[Callable[..., HubProcess]]:
    started: list[HubProcess] = []

    def start(settings: Mapping[str, str] | None = None, *, demo_data: bool = True) -> HubProcess:
        directory = tmp_path / f"hub{len(started)}"
        process = prepare_hub(
            directory, demo_database if demo_data else None, {**_defaults(second_origin), **(settings or {})}
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(os.environ.get("CARTSNITCH_BROWSER_ARTIFACTS") or HERE / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
