"""Build a bare aiohttp app around a hub, so each output's routes are tested through HTTP."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bridge.media.hub import Hub
from bridge.routes.common import HUB


def make_app(hub: Hub, *setups: Callable[[web.Application], None]) -> web.Application:
    """An app holding ``hub``, with each ``setup(app)`` applied in order."""
    app = web.Application()
    app[HUB] = hub
    for setup in setups:
        setup(app)
    return app
