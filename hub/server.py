"""Running the app: aiohttp's runner with the hub's request handler, and a drain on SIGTERM.

The request handler answers what aiohttp rejects before any route runs with a problem+json like every other error
(414 for an over-long request target, 431 for an oversized header field or too many of them, 501 for an unknown
method, 400 for anything else malformed), and logs one line without the request's content (an
oversized Cookie header would otherwise put the start of a session token in the log).

The drain, in order: readiness turns 503 and new requests get 503; SSE streams get ``cartsnitch.reconnect`` and
end, long-polls answer at once with what they have; sockets get an Engine.IO close (clients reconnect, to
another process, and resume from their last id); then the listener stops and resources close."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler

from channels.errors import Problem, ProblemType
from hub import keys
from hub.app import MAX_HEADER_FIELD, MAX_HEADERS, MAX_REQUEST_TARGET, SERVER

log = logging.getLogger("hub.server")


class HubRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s: %s", request.remote, type(exc).__name__ if exc else status)
        else:
            log.info("refused a malformed request from %s (%s)", request.remote, type(exc).__name__ if exc else status)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was under way")
        if isinstance(exc, BadHttpMethod):
            # RFC 9110 §9.1: a method the server does not recognise is 501
            body = {"type": "about:blank", "title": "Not Implemented", "status": 501, "code": "BAD_REQUEST"}
            body["detail"] = "the request method is not one this server implements"
            status = 501
        elif isinstance(exc, LineTooLong) and exc.args[1:2] == (MAX_REQUEST_TARGET,):
            detail = f"the request target is limited to {MAX_REQUEST_TARGET} bytes"
            body = Problem(ProblemType.URI_TOO_LONG, detail).to_dict()
            status = 414
        elif isinstance(exc, LineTooLong) or (isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc)):
            detail = f"a header field is limited to {MAX_HEADER_FIELD} bytes, the header to {MAX_HEADERS} fields"
            body = Problem(ProblemType.HEADERS_TOO_LARGE, detail).to_dict()
            status = 431
        else:
            kind = ProblemType.INTERNAL if status >= 500 else ProblemType.BAD_REQUEST
            # the parser's message quotes the offending bytes (a cookie, say): none of it goes back or into the log
            malformed = None if status >= 500 else "the request line or a header is malformed"
            body = Problem(kind, malformed).to_dict()
            body["status"] = status
        response = web.json_response(body, status=status, content_type="application/problem+json")
        response.headers["Server"] = SERVER
        response.force_close()
        return response


class HubWebServer(web.Server):
    def __call__(self) -> RequestHandler:
        return HubRequestHandler(self, loop=self._loop, **self._kwargs)


class HubRunner(web.AppRunner):
    """aiohttp's AppRunner whose connections are served by HubRequestHandler."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return HubWebServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )


async def drain(app: web.Application) -> None:
    """Stop taking work and hand every live client over to another process (see the module's docstring)."""
    hub = app[keys.hub]
    hub.drain()
    await app[keys.sio].shutdown()


class CannotListen(Exception):
    """The listening socket could not be bound: the port is taken, or the address is not one of this host's."""


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    listening: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain and stop; ``shutdown_timeout`` bounds what in-flight requests
    get once every stream has ended. ``reuse_port`` lets ``--workers`` processes share the port. ``listening`` is
    called once the socket is bound (whoever announces the URL must not announce one nothing listens on); a bind
    that fails raises CannotListen after the app has been cleaned up."""
    runner = HubRunner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        # a deep accept queue: a reconnect storm after a failover brings thousands of sockets within seconds
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as exc:
            # asyncio's message repeats the address; the errno's own text is the reason
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise CannotListen(f"cannot listen on {host}:{port}: {reason}") from None
        if listening is not None:
            listening()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        log.info("draining: streams and sockets are told to reconnect elsewhere")
        await drain(app)
    finally:
        await runner.cleanup()
