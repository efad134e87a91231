"""HTTP authentication for the API and the outputs: Basic auth against the configured user.

NVRs, ffmpeg and Home Assistant all speak Basic; a browser page that cannot send a header can
use ``user:password@`` in the URL. Routes that carry their own credential (the SkyBell webhook's
shared secret) are listed in ``open_paths`` and skip this check.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["basic_auth_middleware"]

_LOGGER = logging.getLogger(__name__)


def _credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def basic_auth_middleware(
    username: str, password: str, *, realm: str = "skybell-bridge", open_paths: Iterable[str] = ()
) -> Middleware:
    """A middleware that refuses requests without the right Basic credentials (401)."""
    expected_user, expected_pw = username.encode(), password.encode()
    exempt = frozenset(open_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        given = _credentials(request.headers.get("Authorization", ""))
        # Compare both parts every time, in constant time, so a timing difference cannot tell
        # a wrong user from a wrong password.
        ok = given is not None
        user_ok = hmac.compare_digest(given[0].encode() if given else b"", expected_user)
        pw_ok = hmac.compare_digest(given[1].encode() if given else b"", expected_pw)
        if ok and user_ok and pw_ok:
            return await handler(request)
        _LOGGER.info(
            "refused %s %s from %s: bad credentials", request.method, request.path, request.remote
        )
        raise web.HTTPUnauthorized(
            text='{"error": "authentication required"}',
            content_type="application/json",
            headers={"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'},
        )

    return middleware
