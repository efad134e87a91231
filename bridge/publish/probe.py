"""A non-blocking look at an RTMP target before FFmpeg talks to it.

PyAV holds the GIL while FFmpeg opens an output (``avio_open``, ``avformat_write_header``: the
RTMP handshake, RTSP's ANNOUNCE/SETUP/RECORD), so a target that accepts the connection and then
says nothing would freeze the whole event loop, every output with it, for FFmpeg's I/O timeout.
Asking first from asyncio means only an RTMP target that answers gets that far. (Writes release
the GIL, so a target that stalls later only blocks its own thread.)

RTSP is not probed: a receiver may take a single connection (``ffmpeg -rtsp_flags listen``
does), which a probe would spend. A silent RTSP target still holds the loop while FFmpeg waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from urllib.parse import urlsplit

__all__ = ["probe"]

_DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}


async def probe(url: str, timeout: float = 5.0) -> None:
    """Raise OSError or TimeoutError unless an RTMP target answers the handshake's first step.

    RTMP: C0+C1 gets S0. RTMPS is only connected to (its TLS handshake is FFmpeg's). RTSP and
    SRT (UDP) are left to FFmpeg.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return
    host, port = parts.hostname or "", parts.port or _DEFAULT_PORTS[scheme]
    try:
        await asyncio.wait_for(_ask(scheme, host, port), timeout)
    except TimeoutError:
        raise TimeoutError(f"no answer within {timeout:g} s") from None


async def _ask(scheme: str, host: str, port: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if scheme == "rtmp":
            writer.write(b"\x03" + bytes(8) + os.urandom(1528))  # C0 + C1
            if await reader.readexactly(1) != b"\x03":
                raise OSError("not an RTMP server")
    except asyncio.IncompleteReadError:
        raise OSError("the target closed the connection") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
