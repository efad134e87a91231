"""HTTP side of the connection limits: a listening site that asks the shared limiter first.

aiohttp (3.14) already closes a connection that sends no whole request within its keep-alive
timeout, counted from the connect: the runner is given ``server.header_timeout`` for that, which
is the slowloris guard. What aiohttp has no notion of is a cap, so this site wraps each
connection's protocol and refuses (503, one line, close) or admits it before aiohttp sees a byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bridge.limits import ConnectionLimiter, install_accept_error_filter

__all__ = ["LIMITER", "LimitedSite", "limits_middleware", "setup"]

# The connection caps shared by the HTTP site and RTSP: one budget of descriptors.
LIMITER = web.AppKey("limiter", ConnectionLimiter)


def _refusal(reason: str) -> bytes:
    body = f"{reason}\n".encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 10\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class _Guard(asyncio.Protocol):
    """Stands in front of aiohttp's protocol for one connection: admit, or refuse and close."""

    def __init__(self, inner: asyncio.Protocol, limiter: ConnectionLimiter) -> None:
        self._inner = inner
        self._limiter = limiter
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        if peer is None:  # the client already left
            transport.abort()
            return
        refused = self._limiter.admit(transport, str(peer[0]), transport.abort)
        if refused is not None:
            # Answered before the request is read; close() sends these few bytes and frees
            # the socket, so a refused connection holds no descriptor whatever the client does.
            transport.write(_refusal(refused))
            transport.close()
            return
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            self._limiter.release(transport)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._inner.resume_writing()


class LimitedSite(web.BaseSite):
    """A TCP site whose connections go through a ``ConnectionLimiter``."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, limiter: ConnectionLimiter
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limiter = limiter

    @property
    def name(self) -> str:
        """The URL this site was asked to listen on."""
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen, like ``web.TCPSite``, with each connection guarded."""
        await super().start()
        server = self._runner.server
        assert server is not None
        limiter = self._limiter
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guard(server(), limiter),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )


def limits_middleware(limiter: ConnectionLimiter) -> Middleware:
    """Mark a connection as proven once a whole request arrived on it."""

    @web.middleware
    async def proven(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.transport is not None:
            limiter.prove(request.transport)
        return await handler(request)

    return proven


def setup(app: web.Application, limiter: ConnectionLimiter) -> None:
    """Keep ``limiter`` on the app (``LIMITER``) and add the context of the accept() filter:
    running out of descriptors is logged once a minute, not as a traceback per attempt."""
    app[LIMITER] = limiter

    async def accept_filter(app: web.Application) -> AsyncIterator[None]:
        uninstall = install_accept_error_filter(asyncio.get_running_loop())
        try:
            yield
        finally:
            uninstall()

    app.cleanup_ctx.append(accept_filter)
