"""Publishing streams to media servers (MediaMTX, nginx-rtmp, go2rtc): RTSP, RTMP(S), SRT.

A protocol package: it consumes the hub like every output and knows nothing of aiohttp or the
config module; ``bridge.routes.publish`` wires it into the app.
"""

from bridge.publish.options import PublishTarget, parse_publish, safe_url, url_problem
from bridge.publish.publisher import Publisher, PublishStats

__all__ = ["PublishStats", "PublishTarget", "Publisher", "parse_publish", "safe_url", "url_problem"]
