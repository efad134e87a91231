"""The browser page: ``bridge/web/`` served at ``/``, its public facts, and login/logout.

- ``GET /`` and ``GET /<file>``: the static page. Only files found under ``web/`` when the app
  is built get a route, each by its exact path, so no URL can name anything outside the folder
  (symlinks that resolve outside it are skipped). Everything is ``no-cache``: there is no build
  step that puts a hash in file names, so the browser must revalidate (ETag/Last-Modified make
  that a 304) or it could mix modules of two versions after an upgrade.
- ``GET /api/config``: non-secret facts the page needs before and after login (RTSP port and
  host, whether auth is on and whether this request is authenticated, optional APIs present).
- ``POST /api/login`` (JSON or form: username, password): sets the session cookie (HttpOnly,
  SameSite=Strict, Path=/); ``POST /api/logout`` ends it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.authlimit import AuthLimiter
from bridge.routes.auth import (
    AUTH_LIMITER,
    COOKIE_NAME,
    SESSIONS,
    LoginTokens,
    count_failure,
    credentials_match,
    has_valid_session,
    mark_public,
    parse_basic,
    refuse_guesser,
)
from bridge.routes.common import error

__all__ = ["WEB_ROOT", "setup"]

_LOGGER = logging.getLogger(__name__)

# Package data, so a wheel installed anywhere (not only this checkout) serves the page. Packages
# are installed unpacked, so the resource is a real folder on disk.
WEB_ROOT = Path(str(resources.files("bridge") / "web"))

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
# The page runs only its own files: no inline script, nothing from elsewhere. blob: carries
# the MSE player's MediaSource and snapshot downloads.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_STATIC_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")
_MAX_LOGIN_BODY = 4096


def _files(root: Path) -> dict[str, Path]:
    """URL path -> file, for every servable file under ``root``."""
    root = root.resolve()
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix not in _TYPES:
            continue
        real = path.resolve()
        if not real.is_file() or not real.is_relative_to(root):
            continue
        found["/" + rel.as_posix()] = real
    if "/index.html" in found:
        found["/"] = found["/index.html"]
    return found


def _static_handler(path: Path) -> Handler:
    headers = {**_STATIC_HEADERS, "Content-Type": _TYPES[path.suffix]}
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = _CSP

    async def handler(_request: web.Request) -> web.StreamResponse:
        # FileResponse answers 404 itself if the file went away since start, and 304 to a
        # revalidation whose ETag or date still matches.
        return web.FileResponse(path, headers=headers)

    return handler


def setup(
    app: web.Application,
    *,
    rtsp_port: int | Callable[[], int],
    rtsp_host: str = "",
    username: str = "",
    password: str | None = None,
    lan_without_password: bool = False,
    session_ttl: float = 7 * 86400.0,
    root: Path = WEB_ROOT,
) -> None:
    """Serve the page from ``root`` at ``/``, plus ``/api/config``, ``/api/login``, ``/api/logout``.

    ``password`` None means auth is off; otherwise it must be the one the auth middleware uses.
    ``rtsp_port`` may be a callable, for a listener bound to port 0 after the app is built.
    ``lan_without_password`` makes the page warn that the network can reach it unguarded.
    """
    auth_on = password is not None
    if auth_on:
        app[SESSIONS] = LoginTokens(session_ttl)
    # Wrong passwords here, in Basic on the API and on RTSP count together (one limiter).
    limiter = app.setdefault(AUTH_LIMITER, AuthLimiter())

    async def config(request: web.Request) -> web.Response:
        authenticated = not auth_on or has_valid_session(request)
        if auth_on and not authenticated:
            given = parse_basic(request.headers.get("Authorization", ""))
            authenticated = credentials_match(given, username, password or "")
        host = rtsp_host if rtsp_host not in _WILDCARD_HOSTS else None
        canonicals = {r.canonical for r in request.app.router.resources()}
        return web.json_response(
            {
                "auth": auth_on,
                "authenticated": authenticated,
                "rtsp_port": rtsp_port() if callable(rtsp_port) else rtsp_port,
                "rtsp_host": host,  # None: the host the page was loaded from
                "features": {"automation": "/api/automation" in canonicals},
                # server.allow_lan_without_password let it listen beyond loopback with no
                # password: the page says so on every view, so the choice stays visible.
                "lan_without_password": lan_without_password and not auth_on,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def login(request: web.Request) -> web.Response:
        if not auth_on:
            return web.json_response({"ok": True, "auth": False})
        refuse_guesser(request, limiter)
        given = await _login_form(request)
        if not credentials_match(given, username, password or ""):
            _LOGGER.info("failed login from %s", request.remote)
            await count_failure(request, limiter, given[0])
            raise error(web.HTTPUnauthorized, "wrong username or password")
        token = request.app[SESSIONS].create()
        response = web.json_response({"ok": True, "auth": True})
        response.set_cookie(
            COOKIE_NAME,
            token,
            max_age=int(session_ttl),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def logout(request: web.Request) -> web.Response:
        store = request.app.get(SESSIONS)
        token = request.cookies.get(COOKIE_NAME)
        if store is not None and token:
            store.revoke(token)
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE_NAME, path="/", samesite="Strict")
        return response

    public = [
        app.router.add_get("/api/config", config).resource,
        app.router.add_post("/api/login", login).resource,
        app.router.add_post("/api/logout", logout).resource,
    ]
    if not root.is_dir():
        _LOGGER.warning("no web page: %s is not a folder", root)
    else:
        for url, path in _files(root).items():
            public.append(app.router.add_get(url, _static_handler(path)).resource)
    mark_public(app, *(r for r in public if r is not None))


def _too_large(size: int) -> web.HTTPException:
    return web.HTTPRequestEntityTooLarge(
        max_size=_MAX_LOGIN_BODY,
        actual_size=size,
        text=json.dumps({"error": "the login form is too large"}),
        content_type="application/json",
    )


async def _login_form(request: web.Request) -> tuple[str, str]:
    if request.content_length is not None and request.content_length > _MAX_LOGIN_BODY:
        raise _too_large(request.content_length)
    body = bytearray()
    while chunk := await request.content.read(1024):
        body += chunk
        if len(body) > _MAX_LOGIN_BODY:  # a chunked body has no Content-Length to refuse early
            raise _too_large(len(body))
    fields: Any
    if request.content_type == "application/json":
        try:
            fields = json.loads(body)
        except ValueError:
            fields = None
    else:
        fields = dict(parse_qsl(body.decode("utf-8", "replace")))
    if not isinstance(fields, dict):
        raise error(web.HTTPBadRequest, 'expected {"username": ..., "password": ...}')
    user, pw = fields.get("username", ""), fields.get("password")
    if not isinstance(user, str) or not isinstance(pw, str):
        raise error(web.HTTPBadRequest, "username and password must be strings")
    return user, pw
