"""HTTP authentication for the API and the outputs: Basic auth, or a browser session cookie.

NVRs, ffmpeg and Home Assistant all speak Basic. The browser page logs in once instead
(``POST /api/login``, see ``bridge.routes.web``) and gets a session cookie: a random token kept
here, server-side, with an expiry. Routes that carry their own credential (the SkyBell webhook's
shared secret) are listed in ``open_paths``; resources marked with ``mark_public`` (the page's
static files, the login endpoints) need no credential either. A credentialed POST or DELETE
that a browser sends from a page of another origin is refused (403), whichever credential
the browser attached.

A path may also take a bearer token of its own (``Authorization: Bearer ...``): Prometheus
scrapes ``/metrics`` with ``server.metrics_token`` instead of the password. The token opens that
path only; anywhere else it is a wrong credential like any other.

Wrong passwords (and wrong tokens) are counted by the one ``AuthLimiter`` the login form and
RTSP share (see ``bridge.authlimit``): an address that keeps guessing gets 429 with
``Retry-After`` here, whichever of them it guessed on. A live session cookie is never limited:
it is a 256-bit random token, not something anyone guesses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractResource

from bridge.authlimit import AuthLimiter

__all__ = [
    "AUTH_LIMITER",
    "COOKIE_NAME",
    "SESSIONS",
    "LoginTokens",
    "basic_auth_middleware",
    "client_key",
    "count_failure",
    "credentials_match",
    "has_valid_session",
    "mark_public",
    "parse_basic",
    "refuse_guesser",
]

_LOGGER = logging.getLogger(__name__)

COOKIE_NAME = "skybell_session"


class LoginTokens:
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


SESSIONS = web.AppKey("sessions", LoginTokens)
# The one limiter for every password check; the composition root puts it here (and gives the
# same object to RTSP). Apps built without it (tests, tools): web.setup or the middleware make one.
AUTH_LIMITER = web.AppKey("auth_limiter", AuthLimiter)
_PUBLIC: web.AppKey[set[AbstractResource]] = web.AppKey("public_resources")


def mark_public(app: web.Application, *resources: AbstractResource) -> None:
    """Let these resources through without credentials (the page itself, login, public facts)."""
    app.setdefault(_PUBLIC, set()).update(resources)


def _bytes(text: str) -> bytes:
    # surrogatepass: headers arrive decoded with surrogateescape and JSON may hold lone
    # surrogates ("\udcff"); either must compare as unequal bytes, never raise.
    return text.encode("utf-8", "surrogatepass")


def parse_basic(header: str) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(_bytes(encoded.strip()), validate=True)
        user, sep, password = decoded.decode("utf-8").partition(":")
    except (binascii.Error, ValueError):  # not base64 (``Basic é``), or not UTF-8 inside
        return None
    return (user, password) if sep else None


def client_key(request: web.Request, limiter: AuthLimiter) -> str:
    """Who is guessing: the client address, behind trusted proxies per ``X-Forwarded-For``."""
    return limiter.client(request.remote, request.headers.getall("X-Forwarded-For", ()))


def refuse_guesser(request: web.Request, limiter: AuthLimiter) -> None:
    """Raise 429 with ``Retry-After`` if this client must wait after too many wrong passwords."""
    wait = limiter.retry_after(client_key(request, limiter))
    if wait > 0:
        retry = int(wait) + 1
        raise web.HTTPTooManyRequests(
            text=f'{{"error": "too many failed sign-ins; try again in {retry} s"}}',
            content_type="application/json",
            headers={"Retry-After": str(retry)},
        )


async def count_failure(request: web.Request, limiter: AuthLimiter, username: str) -> None:
    """Count a wrong password from this client, and hold the answer back if names are hunted."""
    delay = limiter.failed(client_key(request, limiter), username)
    if delay > 0:
        await asyncio.sleep(delay)


def credentials_match(
    given: tuple[str, str] | None, expected_user: str, expected_password: str
) -> bool:
    """Whether ``given`` is the configured user and password, in constant time."""
    # Compare both parts every time, so a timing difference cannot tell a wrong user from a
    # wrong password.
    user_ok = hmac.compare_digest(_bytes(given[0]) if given else b"", _bytes(expected_user))
    pw_ok = hmac.compare_digest(_bytes(given[1]) if given else b"", _bytes(expected_password))
    return given is not None and user_ok and pw_ok


def _bearer_matches(header: str, expected: str | None) -> bool:
    """Whether ``header`` is ``Bearer <expected>``, compared in constant time."""
    scheme, _, token = header.partition(" ")
    if expected is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_bytes(token.strip()), _bytes(expected))


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
    username: str,
    password: str,
    *,
    realm: str = "skybell-bridge",
    open_paths: Iterable[str] = (),
    limiter: AuthLimiter | None = None,
    bearer_tokens: Mapping[str, str] | None = None,
) -> Middleware:
    """A middleware that refuses requests without the right Basic credentials or a live
    session cookie (401), and clients that guessed wrong too often (429).

    ``limiter`` None uses the app's ``AUTH_LIMITER`` (shared with the login form), else its own.
    ``bearer_tokens`` maps a path to a token that also grants it (and only it).
    """
    exempt = frozenset(open_paths)
    tokens = dict(bearer_tokens or {})
    own = AuthLimiter()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        # The router has already matched the request, so the resource tells public routes
        # apart without any path-prefix rule that a new route could slip under by accident.
        resource = request.match_info.route.resource
        if resource is not None and resource in request.config_dict.get(_PUBLIC, ()):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        session = has_valid_session(request)
        limits = limiter or request.config_dict.get(AUTH_LIMITER) or own
        if header and not session:
            refuse_guesser(
                request, limits
            )  # before looking at the password: no oracle in a lockout
        given = parse_basic(header)
        bearer = _bearer_matches(header, tokens.get(request.path))
        if session or bearer or credentials_match(given, username, password):
            if not _same_origin_write(request):
                raise web.HTTPForbidden(
                    text='{"error": "cross-origin request refused"}',
                    content_type="application/json",
                )
            return await handler(request)
        if header:  # a request with no credentials is a first visit, not a guess
            await count_failure(request, limits, given[0] if given else "")
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
