"""The RTSP server: accepts connections and owns every task and socket it starts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TypedDict

from bridge.authlimit import AuthLimiter
from bridge.limits import ConnectionLimiter
from bridge.rtsp.auth import Authenticator, AuthMode
from bridge.rtsp.backchannel import TalkOpener
from bridge.rtsp.connection import Resolver, RtspConnection, ServerContext
from bridge.rtsp.feed import AudioMode, FeedRegistry
from bridge.rtsp.message import format_response
from bridge.tasks import TaskSet

__all__ = ["RtspServer", "RtspStats"]

_LOGGER = logging.getLogger(__name__)


class RtspStats(TypedDict):
    """Connections, sessions, and playing clients per stream name."""

    connections: int
    sessions: int
    streams: dict[str, int]


class RtspServer:
    """Serves hub streams over RTSP (TCP interleaved or UDP unicast) to NVRs and players."""

    def __init__(
        self,
        resolve: Resolver,
        *,
        host: str = "0.0.0.0",
        port: int = 8554,
        username: str | None = None,
        password: str | None = None,
        auth: AuthMode = "digest",
        audio: AudioMode = "aac",
        keyframe_timeout: float = 10.0,
        session_timeout: int = 60,
        header_timeout: float = 10.0,
        max_udp_sessions: int = 4,
        limiter: ConnectionLimiter | None = None,
        auth_limiter: AuthLimiter | None = None,
        talk: TalkOpener | None = None,
    ) -> None:
        if audio not in ("aac", "passthrough"):
            raise ValueError(f"unknown audio mode {audio!r}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.host = host
        self.port = port
        authenticator = (
            Authenticator(username, password, auth)
            if username is not None and password is not None
            else None
        )
        self._ctx = ServerContext(
            resolve,
            FeedRegistry(audio),
            authenticator,
            keyframe_timeout,
            session_timeout,
            header_timeout=header_timeout,
            max_udp_sessions=max_udp_sessions,
            limiter=limiter,
            auth_limiter=auth_limiter,
            talk=talk,
        )
        self._server: asyncio.Server | None = None
        self._connections: set[RtspConnection] = set()
        self._tasks = TaskSet()  # the reaper and one task per connection
        self._closed = False

    async def start(self) -> None:
        """Listen; ``port`` then holds the real port (useful when 0 was asked for)."""
        if self._server is not None or self._closed:
            raise RuntimeError("RtspServer.start() called twice or after close()")
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._tasks.spawn(self._reap(), name="rtsp reaper")
        _LOGGER.info("RTSP server listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop listening, close every client and cancel every task; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        # Each connection's own cleanup (sessions, UDP sockets, subscribers) runs as it unwinds.
        await self._tasks.cancel_all()
        self._connections.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def stats(self) -> RtspStats:
        """Connections, and playing clients per stream name."""
        streams: dict[str, int] = {}
        for session in self._ctx.sessions.values():
            if session.playing:
                streams[session.stream.name] = streams.get(session.stream.name, 0) + 1
        return {
            "connections": len(self._connections),
            "sessions": len(self._ctx.sessions),
            "streams": streams,
        }

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._closed or peer is None:  # None: the client already left
            writer.transport.abort()
            return
        limiter = self._ctx.limiter
        if limiter is not None:
            refused = limiter.admit(writer, str(peer[0]), writer.transport.abort)
            if refused is not None:
                # Said before any request, so without CSeq; the limiter logs refusals in bulk.
                writer.write(
                    format_response(
                        503, None, [("Content-Type", "text/plain")], f"{refused}\n".encode()
                    )
                )
                # close() sends the few bytes already queued, then frees the socket: a refused
                # connection keeps no descriptor, however the client behaves.
                writer.transport.close()
                return
        conn = RtspConnection(self._ctx, reader, writer)
        # Our own task rather than the one asyncio.start_server would wrap a coroutine callback
        # in: that one cannot be cancelled on close without asyncio logging an error (3.11).
        self._connections.add(conn)
        self._tasks.spawn(self._serve(conn), name=f"rtsp {conn.peer}")

    async def _serve(self, conn: RtspConnection) -> None:
        _LOGGER.debug("rtsp %s: connected", conn.peer)
        try:
            await conn.run()
        except Exception:
            # One client's failure must never reach the others or the server.
            _LOGGER.exception("rtsp %s: connection failed", conn.peer)
        finally:
            if self._ctx.limiter is not None:
                self._ctx.limiter.release(conn.writer)
            self._connections.discard(conn)
            _LOGGER.debug("rtsp %s: disconnected", conn.peer)

    async def _reap(self) -> None:
        interval = max(1.0, min(5.0, self._ctx.session_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self._connections):
                try:
                    await conn.expire_idle(now)
                except Exception:
                    _LOGGER.exception("rtsp %s: expiring sessions failed", conn.peer)
