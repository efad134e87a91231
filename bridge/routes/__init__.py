"""HTTP glue: each output's aiohttp routes, kept out of the protocol packages.

The protocol packages (``bridge.hls``, ``bridge.mjpeg``, ``bridge.webrtc``) know nothing of
aiohttp.web; a module here per output turns their objects into endpoints on the go2rtc-compatible
paths, and ``bridge.app`` calls each module's ``setup(app, ...)`` in order.
"""
