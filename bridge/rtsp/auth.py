"""Optional RTSP authentication: Basic, and Digest per RFC 2617 (what NVRs and ffmpeg speak).

Credentials live only in this object. Nothing here logs a header, a password or a digest.
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
from typing import Literal

__all__ = ["AuthMode", "AuthResult", "Authenticator"]

AuthMode = Literal["digest", "basic", "any"]
AuthResult = Literal["ok", "denied", "stale"]

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def _md5(text: str) -> str:
    # RFC 2617 Digest is defined over MD5 and every RTSP client implements only that; the hash
    # protects the password in transit, it is not used to store anything.
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class Authenticator:
    """Checks a request's Authorization header and produces the challenges for a 401."""

    def __init__(
        self,
        username: str,
        password: str,
        mode: AuthMode = "digest",
        *,
        realm: str = "skybell-bridge",
        nonce_ttl: float = 3600.0,
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
        # Nonces are signed rather than stored: any nonce this process issued stays valid for
        # its lifetime on any connection, and memory does not grow with clients.
        self._secret = secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"Authenticator(mode={self.mode!r}, realm={self.realm!r})"

    def challenges(self, stale: bool = False) -> list[str]:
        """The ``WWW-Authenticate`` values for a 401, strongest first."""
        out = []
        if self.mode in ("digest", "any"):
            value = f'Digest realm="{self.realm}", nonce="{self._nonce()}", algorithm=MD5'
            if stale:
                value += ", stale=TRUE"
            out.append(value)
        if self.mode in ("basic", "any"):
            out.append(f'Basic realm="{self.realm}"')
        return out

    def check(self, method: str, authorization: str | None) -> AuthResult:
        """Whether ``authorization`` grants ``method``; "stale" asks the client to retry."""
        if not authorization:
            return "denied"
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.mode in ("basic", "any"):
            return "ok" if self._check_basic(rest.strip()) else "denied"
        if scheme == "digest" and self.mode in ("digest", "any"):
            return self._check_digest(method, rest)
        return "denied"

    def _check_basic(self, token: str) -> bool:
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        # Compare both halves every time, so timing reveals neither which one was wrong.
        user_ok = hmac.compare_digest(user.encode(), self._username.encode())
        pass_ok = hmac.compare_digest(password.encode(), self._password.encode())
        return bool(sep) and user_ok and pass_ok

    def _check_digest(self, method: str, rest: str) -> AuthResult:
        params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _PARAM.finditer(rest)}
        needed = ("username", "realm", "nonce", "uri", "response")
        if any(k not in params for k in needed) or params["realm"] != self.realm:
            return "denied"
        if params.get("algorithm", "MD5").upper() != "MD5":
            return "denied"
        nonce_state = self._nonce_state(params["nonce"])
        if nonce_state == "denied":
            return "denied"
        ha2 = _md5(f"{method}:{params['uri']}")
        qop = params.get("qop")
        if qop is None:
            expected = _md5(f"{self._ha1}:{params['nonce']}:{ha2}")
        elif qop == "auth" and "nc" in params and "cnonce" in params:
            nonce, nc, cnonce = params["nonce"], params["nc"], params["cnonce"]
            expected = _md5(f"{self._ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        else:
            return "denied"
        user_ok = hmac.compare_digest(params["username"].encode(), self._username.encode())
        response_ok = hmac.compare_digest(params["response"].lower().encode(), expected.encode())
        if not (user_ok and response_ok):
            return "denied"
        # Right credentials on an old nonce: "stale" makes clients retry without asking the user.
        return "stale" if nonce_state == "stale" else "ok"

    def _nonce(self) -> str:
        stamp = f"{int(self._clock()):x}"
        return stamp + "." + self._sign(stamp)

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce_state(self, nonce: str) -> AuthResult:
        stamp, _, signature = nonce.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(stamp).encode()):
            return "denied"
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "denied"
        return "ok" if self._clock() - issued <= self._nonce_ttl else "stale"
