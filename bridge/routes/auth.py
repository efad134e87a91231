"""HTTP authentication for the API and the outputs: Basic auth, or a browser session cookie.

NVRs, ffmpeg and Home Assistant all speak Basic. The browser page logs in once instead
(``POST /api/login``, see ``bridge.routes.web``) and gets a session cookie: a random token kept
here, server-side, with an expiry. Routes that carry their own credential (the SkyBell webhook's
shared secret) are listed in ``open_paths``; resources marked with ``mark_public`` (the page's
static files, the login endpoints) need no credential either. A credentialed POST or DELETE
that a browser sends from a page of another origin is refused (403), whichever credential
the browser attached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractResource

__all__ = [
    "COOKIE_NAME",
    "SESSIONS",
    "SessionStore",
    "basic_auth_middleware",
    "credentials_match",
    "has_valid_session",
    "mark_public",
    "parse_basic",
]

_LOGGER = logging.getLogger(__name__)

COOKIE_NAME = "skybell_session"


class SessionStore:
    """Browser sessions: random tokens with an absolute expiry, kept only as hashes.

    Hashing means a memory or log dump of the store does not hand out live cookies. The store
    is bounded: past ``max_sessions`` the oldest session is dropped, so a login loop cannot grow
    it without limit.
    """

    def __init__(
        self,
        ttl: float = 7 * 86400.0,
        *,
        max_sessions: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max = max_sessions
        self._clock = clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def create(self) -> str:
        """A new session's token (the cookie value)."""
        self._prune()
        token = secrets.token_urlsafe(32)
        self._expiry[self._key(token)] = self._clock() + self.ttl
        while len(self._expiry) > self._max:
            self._expiry.popitem(last=False)
        return token

    def valid(self, token: str) -> bool:
        """Whether ``token`` names a live session."""
        if not token or len(token) > 128:
            return False
        expiry = self._expiry.get(self._key(token))
        if expiry is None:
            return False
        if expiry <= self._clock():
            del self._expiry[self._key(token)]
            return False
        return True

    def revoke(self, token: str) -> None:
        """End a session (logout); unknown tokens are ignored."""
        self._expiry.pop(self._key(token), None)

    def __len__(self) -> int:
        self._prune()
        return len(self._expiry)

    def _prune(self) -> None:
        now = self._clock()
        for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[key]


SESSIONS = web.AppKey("sessions", SessionStore)
_PUBLIC: web.AppKey[set[AbstractResource]] = web.AppKey("public_resources")


def mark_public(app: web.Application, *resources: AbstractResource) -> None:
    """Let these resources through without credentials (the page itself, login, public facts)."""
    app.setdefault(_PUBLIC, set()).update(resources)


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def credentials_match(
    given: tuple[str, str] | None, expected_user: str, expected_password: str
) -> bool:
    """Whether ``given`` is the configured user and password, in constant time."""
    # Compare both parts every time, so a timing difference cannot tell a wrong user from a
    # wrong password.
    user_ok = hmac.compare_digest(given[0].encode() if given else b"", expected_user.encode())
    pw_ok = hmac.compare_digest(given[1].encode() if given else b"", expected_password.encode())
    return given is not None and user_ok and pw_ok


def has_valid_session(request: web.Request) -> bool:
    """Whether the request carries the cookie of a live browser session."""
    store = request.config_dict.get(SESSIONS)
    return store is not None and store.valid(request.cookies.get(COOKIE_NAME, ""))


def _from_our_page(request: web.Request) -> bool:
    # A same-origin fetch, <img> or <video> of the page gets a bare 401: with a Basic challenge
    # the browser would pop its own password dialog over the page's login form. Other clients
    # (ffmpeg, VLC, Home Assistant, an address typed into the browser) send no such header.
    return request.headers.get("Sec-Fetch-Site") == "same-origin" or COOKIE_NAME in request.cookies


def _same_origin_write(request: web.Request) -> bool:
    # Browsers attach credentials they hold for the bridge to requests other pages make: cached
    # Basic credentials go anywhere, and SameSite=Strict keeps the cookie only off other
    # *sites*, while a page served by another program on this host (another port) is the same
    # site. Browsers send Origin on every POST/DELETE, so a change must come from a page of
    # this very host and port; API clients (ffmpeg, Home Assistant) send no Origin at all.
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return True
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def basic_auth_middleware(
    username: str, password: str, *, realm: str = "skybell-bridge", open_paths: Iterable[str] = ()
) -> Middleware:
    """A middleware that refuses requests without the right Basic credentials or a live
    session cookie (401)."""
    exempt = frozenset(open_paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        # The router has already matched the request, so the resource tells public routes
        # apart without any path-prefix rule that a new route could slip under by accident.
        resource = request.match_info.route.resource
        if resource is not None and resource in request.config_dict.get(_PUBLIC, ()):
            return await handler(request)
        given = parse_basic(request.headers.get("Authorization", ""))
        if credentials_match(given, username, password) or has_valid_session(request):
            if not _same_origin_write(request):
                raise web.HTTPForbidden(
                    text='{"error": "cross-origin request refused"}',
                    content_type="application/json",
                )
            return await handler(request)
        _LOGGER.info(
            "refused %s %s from %s: bad credentials", request.method, request.path, request.remote
        )
        headers = {}
        if not _from_our_page(request):
            headers["WWW-Authenticate"] = f'Basic realm="{realm}", charset="UTF-8"'
        raise web.HTTPUnauthorized(
            text='{"error": "authentication required"}',
            content_type="application/json",
            headers=headers,
        )

    return middleware
