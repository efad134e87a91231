"""HLS and Low-Latency HLS output: fMP4 packaged in memory from the hub's packets.

Video is never re-encoded: H.264 access units become MP4 samples (length-prefixed, parameter
sets moved into ``avcC``); doorbell audio (Opus or G.711) becomes AAC through one encoder per
stream, since AAC is what HLS players accept.

Why the boxes are written by hand rather than with PyAV's mp4 muxer and ``frag_duration``: LL-HLS
needs to know exactly where each part starts and ends, whether it starts with a keyframe, and
its duration, the moment it is cut. A muxer decides fragment boundaries itself, buffers
internally and rewrites packet timestamps in place, so its output would have to be parsed back
into fragments. The handful of boxes involved is a few hundred lines, costs a few struct.pack
calls per frame (well under 1 % of a core), and copies each frame's bytes once.

Layout: ``options`` (the ``[hls]`` settings), ``boxes`` (MP4 boxes), ``segmenter`` (packets →
segments and parts, synchronous), ``playlist`` (m3u8 text and the blocking-reload rules),
``packager`` (one shared, idle-stopped packager per stream and their registry). The HTTP glue is
``bridge.routes.hls``. Exports are imported on first use (``bridge.lazy``).
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .options import HlsOptions
    from .packager import HlsPackager, HlsRegistry, NotAvailable
    from .playlist import BadRequest, parse_blocking
    from .segmenter import Segmenter

__all__ = [
    "BadRequest",
    "HlsOptions",
    "HlsPackager",
    "HlsRegistry",
    "NotAvailable",
    "Segmenter",
    "parse_blocking",
]

__getattr__ = lazy_exports(
    __name__,
    {
        ".options": ("HlsOptions",),
        ".packager": ("HlsPackager", "HlsRegistry", "NotAvailable"),
        ".playlist": ("BadRequest", "parse_blocking"),
        ".segmenter": ("Segmenter",),
    },
)
