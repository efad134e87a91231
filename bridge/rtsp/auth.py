"""Optional RTSP authentication: Basic, and Digest per RFC 2617 (what NVRs and ffmpeg speak).

Credentials live only in this object. Nothing here logs a header, a password or a digest.

Digest replay is what this guards against (a header captured off the LAN):

- a nonce is signed for one connection (a random key the connection holds, never sent), so a
  header replayed on another connection does not verify;
- a nonce must be answered within ``nonce_ttl`` (60 s) of being issued; once answered on its
  connection it stays good there, so a long session's keepalives need no new challenge;
- the ``uri=`` the client hashed must name the request's own URL, so a header for one stream
  does not open another;
- with ``qop=auth`` the ``nc`` count must grow, so a header cannot be replayed in its own
  connection either.

A right answer on an unusable nonce gets ``stale=TRUE``: real clients retry at once with the
new nonce, without asking the user. Every field is handled as text that may hold anything
(``é``, lone surrogates, no ``=``): a bad header is a refusal, never an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple
from urllib.parse import unquote, urlsplit

__all__ = [
    "AuthMode",
    "AuthResult",
    "Authenticator",
    "ConnectionAuth",
    "Verdict",
    "parse_digest_fields",
]

AuthMode = Literal["digest", "basic", "any"]
AuthResult = Literal["ok", "denied", "stale"]

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_MAX_HEADER = 4096  # longer than any honest Authorization header
_MAX_TRACKED_NONCES = 8  # answered nonces remembered per connection


def _bytes(text: str) -> bytes:
    # surrogatepass: a header or a decoded field may carry lone surrogates; they must compare
    # as unequal bytes, not raise UnicodeEncodeError in the middle of a check.
    return text.encode("utf-8", "surrogatepass")


def _md5(text: str) -> str:
    # RFC 2617 Digest is defined over MD5 and every RTSP client implements only that; the hash
    # protects the password in transit, it is not used to store anything.
    return hashlib.md5(_bytes(text), usedforsecurity=False).hexdigest()


def parse_digest_fields(text: str) -> dict[str, str]:
    """The ``name=value`` fields of a Digest header (after the scheme), names lower-cased."""
    fields: dict[str, str] = {}
    for match in _PARAM.finditer(text[:_MAX_HEADER]):
        value = match[2] if match[2] is not None else match[3]
        fields.setdefault(match[1].lower(), value)  # the first of a repeated field counts
    return fields


def _target(uri: str) -> str:
    """The path and query a URL or a bare path names, for comparing ``uri=`` with the request."""
    if "://" in uri:
        try:
            parts = urlsplit(uri)
        except ValueError:  # "rtsp://[x/": no path can be told apart, compare it whole
            return uri
        uri = parts.path + (f"?{parts.query}" if parts.query else "")
    return unquote(uri).rstrip("/") or "/"


class Verdict(NamedTuple):
    """The outcome of one check; ``username`` is None when no credential was offered at all."""

    result: AuthResult
    username: str | None


@dataclass
class ConnectionAuth:
    """One connection's Digest state: the key its nonces are signed with, and answered nonces."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    # nonce -> highest nc seen (0 for clients that send no qop); insertion-ordered, bounded.
    answered: dict[str, int] = field(default_factory=dict)


class Authenticator:
    """Checks a request's Authorization header and produces the challenges for a 401."""

    def __init__(
        self,
        username: str,
        password: str,
        mode: AuthMode = "digest",
        *,
        realm: str = "skybell-bridge",
        nonce_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in ("digest", "basic", "any"):
            raise ValueError(f"unknown auth mode {mode!r}")
        self.mode = mode
        self.realm = realm
        self._username = username
        self._password = password
        self._ha1 = _md5(f"{username}:{realm}:{password}")
        self._nonce_ttl = nonce_ttl
        self._clock = clock
        # Nonces are signed rather than stored: memory does not grow with challenges issued.
        self._secret = secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"Authenticator(mode={self.mode!r}, realm={self.realm!r})"

    def challenges(self, conn: ConnectionAuth, stale: bool = False) -> list[str]:
        """The ``WWW-Authenticate`` values for a 401 on ``conn``, strongest first."""
        out = []
        if self.mode in ("digest", "any"):
            value = f'Digest realm="{self.realm}", nonce="{self._nonce(conn)}", algorithm=MD5'
            if stale:
                value += ", stale=TRUE"
            out.append(value)
        if self.mode in ("basic", "any"):
            out.append(f'Basic realm="{self.realm}"')
        return out

    def check(
        self, method: str, url: str, authorization: str | None, conn: ConnectionAuth
    ) -> Verdict:
        """Whether ``authorization`` grants ``method`` on ``url`` over ``conn``."""
        if not authorization:
            return Verdict("denied", None)
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.mode in ("basic", "any"):
            return self._check_basic(rest.strip())
        if scheme == "digest" and self.mode in ("digest", "any"):
            return self._check_digest(method, url, rest, conn)
        return Verdict("denied", "")  # an unknown or disabled scheme still counts as a try

    def _check_basic(self, token: str) -> Verdict:
        try:
            decoded = base64.b64decode(_bytes(token[:_MAX_HEADER]), validate=True)
            user, sep, password = decoded.decode("utf-8").partition(":")
        except (binascii.Error, ValueError):  # not base64, or not UTF-8 inside
            return Verdict("denied", "")
        # Compare both halves every time, so timing reveals neither which one was wrong.
        user_ok = hmac.compare_digest(_bytes(user), _bytes(self._username))
        pass_ok = hmac.compare_digest(_bytes(password), _bytes(self._password))
        return Verdict("ok" if sep and user_ok and pass_ok else "denied", user)

    def _check_digest(self, method: str, url: str, rest: str, conn: ConnectionAuth) -> Verdict:
        params = parse_digest_fields(rest)
        user = params.get("username", "")
        needed = ("username", "realm", "nonce", "uri", "response")
        if any(k not in params for k in needed) or params["realm"] != self.realm:
            return Verdict("denied", user)
        if params.get("algorithm", "MD5").upper() != "MD5":
            return Verdict("denied", user)
        nonce, qop = params["nonce"], params.get("qop")
        ha2 = _md5(f"{method}:{params['uri']}")
        nc = 0
        if qop is None:
            expected = _md5(f"{self._ha1}:{nonce}:{ha2}")
        elif qop == "auth" and "nc" in params and "cnonce" in params:
            try:
                nc = int(params["nc"], 16)
            except ValueError:
                return Verdict("denied", user)
            expected = _md5(f"{self._ha1}:{nonce}:{params['nc']}:{params['cnonce']}:{qop}:{ha2}")
        else:
            return Verdict("denied", user)
        user_ok = hmac.compare_digest(_bytes(user), _bytes(self._username))
        response_ok = hmac.compare_digest(_bytes(params["response"].lower()), _bytes(expected))
        if not (user_ok and response_ok):
            return Verdict("denied", user)
        # Whoever sent this knows the password, or replays a header of someone who does. What
        # is left is whether this header may be used here and now.
        if _target(params["uri"]) != _target(url):
            return Verdict("denied", user)  # hashed for another stream or track
        if not self._usable(conn, nonce, qop is not None, nc):
            return Verdict("stale", user)
        return Verdict("ok", user)

    def _usable(self, conn: ConnectionAuth, nonce: str, counted: bool, nc: int) -> bool:
        last = conn.answered.get(nonce)
        if last is None:
            if not self._fresh(conn, nonce):
                return False
            while len(conn.answered) >= _MAX_TRACKED_NONCES:
                del conn.answered[next(iter(conn.answered))]
        elif counted and nc <= last:
            return False  # a replayed (or reordered) nc
        conn.answered[nonce] = nc
        return True

    def _nonce(self, conn: ConnectionAuth) -> str:
        stamp = f"{int(self._clock()):x}"
        return stamp + "." + self._sign(conn, stamp)

    def _sign(self, conn: ConnectionAuth, stamp: str) -> str:
        mac = hmac.new(self._secret, conn.key + _bytes(stamp), hashlib.sha256)
        return mac.hexdigest()[:32]

    def _fresh(self, conn: ConnectionAuth, nonce: str) -> bool:
        stamp, _, signature = nonce.partition(".")
        if len(stamp) > 16 or not hmac.compare_digest(
            _bytes(signature), _bytes(self._sign(conn, stamp))
        ):
            return False  # forged, or issued to another connection (or an earlier run)
        try:
            issued = int(stamp, 16)
        except ValueError:
            return False
        return 0 <= self._clock() - issued <= self._nonce_ttl
