"""RTSP/1.0 messages: reading requests and interleaved frames, writing responses, parsing headers."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = [
    "Interleaved",
    "ParseError",
    "Request",
    "Transport",
    "format_response",
    "parse_transport",
    "read_message",
    "split_url",
]

_MAX_LINE = 4096
_MAX_HEADERS = 64
_MAX_BODY = 64 << 10
_METHOD = re.compile(r"[A-Za-z_-]{1,32}")
_TRACK_SUFFIX = re.compile(r"(?:trackID|track|streamid)=([0-9]{1,9})$", re.IGNORECASE)
# Numbers from the wire are ASCII digits only: str.isdigit() also accepts "²", which int()
# then refuses, and int() accepts other scripts' digits ("٣"); both have no place in RTSP.
_DIGITS = re.compile(r"[0-9]{1,10}")
# Control characters in a header would be echoed (CSeq) or logged; a bare CR could split a reply.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    451: "Parameter Not Understood",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}


class ParseError(Exception):
    """The peer sent something that is not RTSP; the connection cannot be resynchronised."""


@dataclass
class Request:
    """One RTSP request; header names are lower-cased."""

    method: str
    url: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def cseq(self) -> str | None:
        """The CSeq to echo, if the client sent a valid one (ASCII digits)."""
        value = self.headers.get("cseq")
        return value if value is not None and _DIGITS.fullmatch(value) else None

    @property
    def session_id(self) -> str | None:
        """The Session header's id, without parameters such as ``timeout``."""
        value = self.headers.get("session")
        return value.split(";", 1)[0].strip() if value else None


@dataclass
class Interleaved:
    """A ``$``-framed packet on the RTSP connection (RTCP receiver reports, in practice)."""

    channel: int
    data: bytes


async def read_message(reader: asyncio.StreamReader) -> Request | Interleaved | None:
    """The next request or interleaved frame; None at a clean end of the connection."""
    first = await reader.read(1)
    while first in (b"\r", b"\n"):  # stray line ends between messages are allowed
        first = await reader.read(1)
    if not first:
        return None
    if first == b"$":
        head = await reader.readexactly(3)
        size = int.from_bytes(head[1:3], "big")
        return Interleaved(head[0], await reader.readexactly(size))
    line = first + await _readline(reader)
    text = line.decode("utf-8", "replace").strip()
    parts = text.split(" ")
    if (
        _CONTROL.search(text)
        or len(parts) != 3
        or not _METHOD.fullmatch(parts[0])
        or not parts[2].startswith("RTSP/")
    ):
        raise ParseError("bad request line")
    request = Request(parts[0].upper(), parts[1], parts[2])
    for _ in range(_MAX_HEADERS + 1):
        raw = await _readline(reader)
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            break
        name, sep, value = text.partition(":")
        if not sep or not name.strip():
            raise ParseError("bad header line")
        if _CONTROL.search(text):
            raise ParseError("control character in a header")
        request.headers[name.strip().lower()] = value.strip()
    else:
        raise ParseError("too many headers")
    length_text = request.headers.get("content-length", "0")
    if not _DIGITS.fullmatch(length_text) or int(length_text) > _MAX_BODY:
        raise ParseError("bad Content-Length")
    length = int(length_text)
    if length:
        request.body = await reader.readexactly(length)
    return request


async def _readline(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise ParseError("line too long") from None
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise ParseError("connection closed mid-request") from None
        raise
    if len(line) > _MAX_LINE:
        raise ParseError("line too long")
    return line


def format_response(
    status: int,
    cseq: str | None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    reason: str | None = None,
) -> bytes:
    """Serialise a response; CSeq is echoed as RTSP requires."""
    lines = [f"RTSP/1.0 {status} {reason or REASONS.get(status, 'Unknown')}"]
    if cseq is not None:
        lines.append(f"CSeq: {cseq}")
    lines.append("Server: skybell-bridge")
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Transport:
    """The one transport we accepted out of a client's Transport header."""

    tcp: bool
    channels: tuple[int, int] | None = None  # interleaved RTP/RTCP channels
    client_ports: tuple[int, int] | None = None  # UDP RTP/RTCP ports on the client


def parse_transport(header: str | None) -> Transport | None:
    """The first alternative we support (TCP interleaved or UDP unicast), else None."""
    for alternative in (header or "").split(","):
        parts = [p.strip() for p in alternative.split(";") if p.strip()]
        if not parts:
            continue
        spec = parts[0].upper()
        params = dict(p.partition("=")[::2] for p in parts[1:])
        if "multicast" in params:
            continue
        if spec == "RTP/AVP/TCP":
            channels = _pair(params.get("interleaved"))
            if "interleaved" in params and (channels is None or channels[1] > 255):
                continue
            return Transport(True, channels=channels)
        if spec in ("RTP/AVP", "RTP/AVP/UDP"):
            ports = _pair(params.get("client_port"))
            if ports is not None and 0 < ports[0] < 65536 and 0 < ports[1] < 65536:
                return Transport(False, client_ports=ports)
    return None


def _pair(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    first, _, second = value.partition("-")
    if not _DIGITS.fullmatch(first) or (second and not _DIGITS.fullmatch(second)):
        return None
    low = int(first)
    high = int(second) if second else low + 1
    return (low, high) if high <= 65535 else None


def split_url(url: str) -> tuple[str, int | None]:
    """(stream name, track index) from a request URL.

    Ignores the query string, a trailing slash and a ``trackID=N`` (or ``track=``/``streamid=``)
    suffix, so the aggregate URL and every track URL of one stream map to the same name.
    """
    if url == "*":
        return "", None
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    segments = [s for s in unquote(path).split("/") if s]
    track: int | None = None
    if segments:
        match = _TRACK_SUFFIX.fullmatch(segments[-1])
        if match:
            track = int(match.group(1))
            segments.pop()
    return "/".join(segments), track
