"""Publishing streams to media servers (MediaMTX, nginx-rtmp, go2rtc): RTSP, RTMP(S), SRT.

A protocol package: it consumes the hub like every output and knows nothing of aiohttp or the
config module; ``bridge.routes.publish`` wires it into the app. Exports are imported on first
use (``bridge.lazy``), so the config loader reads ``bridge.publish.options`` without PyAV.
"""

from typing import TYPE_CHECKING

from bridge.lazy import lazy_exports

if TYPE_CHECKING:
    from .options import PublishTarget, parse_publish, safe_url, url_problem
    from .publisher import Publisher, PublishStats

__all__ = ["PublishStats", "PublishTarget", "Publisher", "parse_publish", "safe_url", "url_problem"]

__getattr__ = lazy_exports(
    __name__,
    {
        ".options": ("PublishTarget", "parse_publish", "safe_url", "url_problem"),
        ".publisher": ("Publisher", "PublishStats"),
    },
)
