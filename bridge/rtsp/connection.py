"""One client's RTSP control connection: the request loop and a handler per method.

Anything that goes wrong here ends this connection only; the server and other clients carry on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bridge.authlimit import AuthLimiter
from bridge.limits import ConnectionLimiter, RateLog
from bridge.media.hub import Stream
from bridge.rtsp.auth import Authenticator, ConnectionAuth
from bridge.rtsp.backchannel import TalkOpener, wants_backchannel
from bridge.rtsp.feed import FeedRegistry, StreamFeed
from bridge.rtsp.message import (
    Interleaved,
    ParseError,
    Request,
    format_response,
    parse_transport,
    read_message,
    split_url,
)
from bridge.rtsp.sdp import TrackInfo, backchannel_track, build_sdp
from bridge.rtsp.session import RtspSession

__all__ = ["Resolver", "RtspConnection", "ServerContext"]

_LOGGER = logging.getLogger(__name__)

Resolver = Callable[[str], Stream | None]

_PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, GET_PARAMETER, SET_PARAMETER, TEARDOWN"
_MAX_SESSIONS = 8  # per connection; a real client needs one
_USERINFO = re.compile(r"//[^/@]*@")


@dataclass
class ServerContext:
    """What every connection shares with the server."""

    resolve: Resolver
    feeds: FeedRegistry
    auth: Authenticator | None
    keyframe_timeout: float
    session_timeout: int
    sessions: dict[str, RtspSession] = field(default_factory=dict)
    auth_limiter: AuthLimiter | None = None  # shared with HTTP: guesses here count there too
    # A connection that has not proved itself (authenticated, or sent a request of substance
    # when there is no password) within this many seconds is closed; so is one that proved
    # itself but sits with no session and no request for as long.
    header_timeout: float = 10.0
    max_udp_sessions: int = 4  # each UDP track holds two sockets; TCP sessions hold none
    limiter: ConnectionLimiter | None = None
    talk: TalkOpener | None = None  # None: no backchannel is offered, whatever clients ask
    idle_log: RateLog = field(
        default_factory=lambda: RateLog(
            _LOGGER, "rtsp: closed connections idle past the header timeout", level=logging.INFO
        )
    )


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reason: str | None = None
    after: Callable[[], None] | None = None  # runs once the reply is written (PLAY: start media)


def _text(status: int, reason: str, message: str) -> _Reply:
    # A reason phrase and a body both say what went wrong: ffmpeg prints the phrase, curl the body.
    return _Reply(status, [("Content-Type", "text/plain")], f"{message}\n".encode(), reason)


def _base_url(url: str) -> str:
    """The aggregate URL with a trailing slash, what Content-Base and RTP-Info build on."""
    base = _USERINFO.sub("//", url.split("?", 1)[0])
    head, _, last = base.rstrip("/").rpartition("/")
    if split_url(last)[1] is not None:  # a track URL: drop the trackID= part
        base = head
    return base if base.endswith("/") else base + "/"


class RtspConnection:
    """Serves requests on one TCP connection until it closes."""

    def __init__(
        self, ctx: ServerContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._ctx = ctx
        self._reader = reader
        self._writer = self.writer = writer
        self.local = str(writer.get_extra_info("sockname")[0])
        self.peer = str(writer.get_extra_info("peername")[0])
        self._proven = False
        self._idle: asyncio.TimerHandle | None = None
        self._arm()
        self.sessions: dict[str, RtspSession] = {}
        self._auth = ConnectionAuth()  # Digest nonces are bound to this connection
        self._refused = False  # an address that keeps guessing: close after the 503
        self._feeds: dict[Stream, StreamFeed] = {}
        self._described: dict[Stream, list[TrackInfo]] = {}
        self._handlers: dict[str, Callable[[Request], Awaitable[_Reply]]] = {
            "OPTIONS": self._options,
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "PAUSE": self._pause,
            "TEARDOWN": self._teardown,
            "GET_PARAMETER": self._get_parameter,
            "SET_PARAMETER": self._set_parameter,
        }

    async def run(self) -> None:
        """Serve until the client leaves, then end its sessions."""
        try:
            while True:
                try:
                    message = await read_message(self._reader)
                except ParseError as err:
                    _LOGGER.info("rtsp %s: malformed request (%s)", self.peer, err)
                    self._write(format_response(400, None))
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                if message is None:
                    break
                self._touch()
                if isinstance(message, Interleaved):
                    # Backchannel audio, or RTCP receiver reports (only their arrival matters).
                    for session in self.sessions.values():
                        if session.tcp and session.receive_interleaved(
                            message.channel, message.data
                        ):
                            break
                    continue
                try:
                    await self._respond(message)
                except ConnectionError:
                    break  # the client hung up before reading the reply
                if self._refused:
                    break
        finally:
            await self._cleanup()

    async def _respond(self, request: Request) -> None:
        _LOGGER.debug("rtsp %s: %s %s", self.peer, request.method, _USERINFO.sub("//", request.url))
        if request.version != "RTSP/1.0":
            reply = _Reply(505)
        elif request.cseq is None:
            reply = _text(400, "Bad Request", "missing CSeq")
        elif (handler := self._handlers.get(request.method)) is None:
            reply = _Reply(501, [("Public", _PUBLIC)])
        elif (denied := self._authorize(request)) is not None:
            reply = denied
        else:
            if request.method != "OPTIONS":
                self._prove()
            if self._proven:
                self._disarm()  # a DESCRIBE may wait seconds for a keyframe: not idling
            try:
                reply = await handler(request)
            except Exception:
                _LOGGER.exception("rtsp %s: %s failed", self.peer, request.method)
                reply = _Reply(500)
        self._write(
            format_response(reply.status, request.cseq, reply.headers, reply.body, reply.reason)
        )
        if reply.after is not None:
            reply.after()
        if self._proven and not self.sessions:
            self._arm()
        await self._writer.drain()

    def _authorize(self, request: Request) -> _Reply | None:
        auth = self._ctx.auth
        if auth is None or request.method == "OPTIONS":
            return None
        limiter = self._ctx.auth_limiter
        header = request.headers.get("authorization")
        # The limiter's key, not the raw peer: IPv6 counts per /64 and ::ffff:a.b.c.d as IPv4,
        # the same key HTTP uses for this client.
        who = limiter.client(self.peer) if limiter is not None else self.peer
        if limiter is not None and header and (wait := limiter.retry_after(who)) > 0:
            # Refused before the credentials are looked at (a lockout that let the right
            # password through would tell a guesser when it was right); then hang up.
            self._refused = True
            _LOGGER.debug("rtsp %s: refused (too many failed authentications)", self.peer)
            reply = _text(503, "Too Many Failed Authentications", "try again later")
            reply.headers.append(("Retry-After", str(int(wait) + 1)))
            return reply
        verdict = auth.check(request.method, request.url, header, self._auth)
        if verdict.result == "ok":
            return None
        if limiter is not None and verdict.result == "denied" and verdict.username is not None:
            limiter.failed(who, verdict.username)
        _LOGGER.info("rtsp %s: %s refused (authentication)", self.peer, request.method)
        challenges = auth.challenges(self._auth, stale=verdict.result == "stale")
        return _Reply(401, [("WWW-Authenticate", c) for c in challenges])

    def _write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def _prove(self) -> None:
        if not self._proven:
            self._proven = True
            if self._ctx.limiter is not None:
                self._ctx.limiter.prove(self._writer)

    def _arm(self) -> None:
        # Restarted from now; before the connection proves itself it is armed only once, at
        # connect, so OPTIONS every second (which needs no password) cannot keep it open.
        self._disarm()
        if self._ctx.header_timeout > 0:
            self._idle = asyncio.get_running_loop().call_later(
                self._ctx.header_timeout, self._idle_expired
            )

    def _disarm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        _LOGGER.debug("rtsp %s: idle past the header timeout, closing", self.peer)
        self._ctx.idle_log.hit(self.peer)
        self._writer.transport.abort()  # the read loop sees EOF and cleans up

    def _touch(self) -> None:
        # Any sign of life counts as a keepalive for this connection's sessions: some NVRs
        # send a bare OPTIONS, others only RTCP receiver reports.
        for session in self.sessions.values():
            session.touch()

    # -- helpers -------------------------------------------------------------------------------

    def _stream(self, request: Request) -> tuple[Stream | None, str]:
        name, _ = split_url(request.url)
        return (self._ctx.resolve(name) if name else None), name

    def _feed(self, stream: Stream) -> StreamFeed:
        feed = self._feeds.get(stream)
        if feed is None:
            feed = self._feeds[stream] = self._ctx.feeds.acquire(stream)
        return feed

    async def _tracks(self, stream: Stream, request: Request) -> list[TrackInfo]:
        """The stream's tracks, and the backchannel after them when the client asks for it."""
        tracks = await self._feed(stream).describe(self._ctx.keyframe_timeout)
        if (
            tracks
            and self._ctx.talk is not None
            and wants_backchannel(request.headers.get("require"))
        ):
            # Last, so the stream's own tracks keep their trackIDs with and without it.
            tracks = [*tracks, backchannel_track()]
        return tracks

    def _session(self, request: Request) -> RtspSession | None:
        sid = request.session_id
        return self.sessions.get(sid) if sid else None

    def _session_header(self, session: RtspSession) -> tuple[str, str]:
        return ("Session", f"{session.id};timeout={self._ctx.session_timeout}")

    def _session_ended(self, session: RtspSession) -> None:
        # The stream stopped or the client stopped reading: close the connection, so the client
        # notices at once and reconnects instead of waiting on a silent socket.
        self._writer.transport.abort()

    async def expire_idle(self, now: float) -> None:
        """End UDP sessions with no keepalive for the session timeout (TCP ones end with TCP)."""
        for session in list(self.sessions.values()):
            if session.tcp is False and now - session.last_activity > self._ctx.session_timeout:
                _LOGGER.info("rtsp %s: session %s timed out", self.peer, session.id)
                await self._drop(session)

    async def _drop(self, session: RtspSession) -> None:
        self.sessions.pop(session.id, None)
        self._ctx.sessions.pop(session.id, None)
        await session.close()
        if not self.sessions and not self._writer.is_closing():
            self._arm()  # no session left: the connection is idle again

    async def _cleanup(self) -> None:
        for session in list(self.sessions.values()):
            await self._drop(session)
        for stream in self._feeds:
            self._ctx.feeds.release(stream)
        self._feeds.clear()
        self._disarm()
        self._writer.transport.abort()

    # -- methods -------------------------------------------------------------------------------

    async def _options(self, request: Request) -> _Reply:
        return _Reply(200, [("Public", _PUBLIC)])

    async def _describe(self, request: Request) -> _Reply:
        stream, name = self._stream(request)
        if stream is None:
            return _text(404, "Stream Not Found", f"no stream named {name!r}")
        tracks = await self._tracks(stream, request)
        if not tracks:
            return _text(503, "No Picture Yet", f"stream {name!r} sent no picture in time")
        self._described[stream] = tracks
        sdp = build_sdp(stream.name, self.local, tracks, int(time.time()))
        headers = [("Content-Type", "application/sdp"), ("Content-Base", _base_url(request.url))]
        return _Reply(200, headers, sdp.encode())

    async def _setup(self, request: Request) -> _Reply:
        stream, name = self._stream(request)
        if stream is None:
            return _text(404, "Stream Not Found", f"no stream named {name!r}")
        session = self._session(request)
        if request.session_id and (session is None or session.stream is not stream):
            return _Reply(454)
        transport = parse_transport(request.headers.get("transport"))
        if transport is None:
            return _Reply(461)
        if session is not None and (session.playing or session.tcp not in (None, transport.tcp)):
            return _Reply(455 if session.playing else 461)
        tracks = session.available if session is not None else self._described.get(stream)
        if tracks is None:
            tracks = await self._tracks(stream, request)
            if not tracks:
                return _text(503, "No Picture Yet", f"stream {name!r} sent no picture in time")
            self._described[stream] = tracks
        index = split_url(request.url)[1] or 0
        if index >= len(tracks):
            return _text(404, "Track Not Found", f"stream {name!r} has no track {index}")
        if not transport.tcp and (session is None or session.tcp is None):
            # Each UDP session holds two sockets per track: a cap per connection, and none at
            # all once the process is short of descriptors.
            udp = sum(1 for s in self.sessions.values() if s.tcp is False)
            if udp >= self._ctx.max_udp_sessions:
                return _text(503, "Too Many UDP Sessions", "too many UDP sessions: use TCP")
            # A player that got this far may dip into the reserve kept from client connections,
            # but only half of it: the rest stays for health checks and the cloud.
            limiter = self._ctx.limiter
            if limiter is not None and limiter.fds_low(keep=limiter.fd_reserve // 2):
                return _text(503, "Out Of Resources", "out of file descriptors: use TCP")
        if session is None:
            if len(self.sessions) >= _MAX_SESSIONS:
                return _Reply(503, reason="Too Many Sessions")
            session = RtspSession(
                stream,
                self._feed(stream),
                tracks,
                self._writer,
                self._session_ended,
                talk=self._ctx.talk,
            )
            self.sessions[session.id] = self._ctx.sessions[session.id] = session
        try:
            reply_transport = await session.add_track(index, transport, self.local, self.peer)
        except OSError as err:
            _LOGGER.warning("rtsp %s: cannot open UDP ports: %s", self.peer, err)
            return _Reply(461, reason="No UDP Ports")
        return _Reply(200, [("Transport", reply_transport), self._session_header(session)])

    async def _play(self, request: Request) -> _Reply:
        session = self._session(request)
        if session is None:
            return _Reply(454)
        if not session.tracks:
            return _Reply(455)
        rtp_info = await session.play(_base_url(request.url), self._ctx.keyframe_timeout)
        if rtp_info is None:
            return _text(503, "No Picture Yet", "the stream sent no picture in time")
        _LOGGER.info(
            "rtsp %s: playing %s over %s",
            self.peer,
            session.stream.name,
            "TCP" if session.tcp else "UDP",
        )
        headers = [self._session_header(session), ("Range", "npt=0.000-")]
        if rtp_info:  # empty when only the backchannel is set up: we send nothing on it
            headers.append(("RTP-Info", rtp_info))
        return _Reply(200, headers, after=session.start)

    async def _pause(self, request: Request) -> _Reply:
        session = self._session(request)
        if session is None:
            return _Reply(454)
        await session.pause()
        return _Reply(200, [self._session_header(session)])

    async def _teardown(self, request: Request) -> _Reply:
        session = self._session(request)
        if session is None:
            return _Reply(454)
        await self._drop(session)
        return _Reply(200)

    async def _get_parameter(self, request: Request) -> _Reply:
        # The usual keepalive. We expose no parameters, so a body asking for some gets nothing.
        if request.session_id and self._session(request) is None:
            return _Reply(454)
        return _Reply(200)

    async def _set_parameter(self, request: Request) -> _Reply:
        if request.session_id and self._session(request) is None:
            return _Reply(454)
        return _Reply(451 if request.body.strip() else 200)
