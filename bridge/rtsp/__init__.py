"""RTSP output: hub streams served to NVRs and players (Frigate's ffmpeg, Blue Iris, VLC).

``RtspServer`` is the only entry point the app needs; it finds streams through a resolver
callable, so this package depends on ``bridge.media`` and nothing above it.
"""

from .auth import AuthMode
from .backchannel import TalkOpener, TalkSink
from .connection import Resolver
from .feed import AudioMode
from .server import RtspServer

__all__ = ["AudioMode", "AuthMode", "Resolver", "RtspServer", "TalkOpener", "TalkSink"]
