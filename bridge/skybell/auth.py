"""The two ways to authenticate to the SkyBell cloud.

- ``ApiKeyAuth``: a personal API key (UUID) in ``x-skybell-user-api-key``; nothing expires.
- ``TokenAuth``: email/password login. The IdToken (not the AccessToken) goes in
  ``Authorization: Bearer``, with ``x-skybell-app``. Tokens are refreshed before they expire
  through ``PUT /token/``; when the refresh is refused we log in afresh.

Both take the client's unauthenticated call function, so this module never touches HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bridge.errors import AuthError, BadResponse
from bridge.redact import Secret

__all__ = ["ApiKeyAuth", "Auth", "Clock", "PublicCall", "TokenAuth"]

_LOGGER = logging.getLogger(__name__)

Clock = Callable[[], float]
# (endpoint name, json body) -> envelope data; raises the bridge's CloudError types.
PublicCall = Callable[[str, dict[str, Any]], Awaitable[Any]]

# Refresh this long before expiry, so a request never races the deadline.
_REFRESH_MARGIN_S = 120.0


class Auth(Protocol):
    """What the client needs from an authentication scheme."""

    async def headers(self) -> dict[str, str]:
        """Headers for the next request, refreshing credentials first if needed."""
        ...

    async def recover(self) -> bool:
        """Called after a 401; True when new credentials were obtained and a retry may help."""
        ...

    async def logout(self) -> None:
        """Forget credentials locally (the client calls the cloud's logout)."""
        ...


class ApiKeyAuth:
    """A personal API key; the cloud authenticates it on every request."""

    def __init__(self, api_key: Secret) -> None:
        self._key = api_key

    async def headers(self) -> dict[str, str]:
        return {"x-skybell-user-api-key": self._key.reveal()}

    async def recover(self) -> bool:
        # A refused key stays refused: retrying would only hammer the cloud.
        return False

    async def logout(self) -> None:
        return None


class TokenAuth:
    """Email/password login with refresh-before-expiry and re-login on a refused refresh."""

    def __init__(
        self,
        email: str,
        password: Secret,
        app_version: str,
        call: PublicCall,
        clock: Clock = time.time,
    ) -> None:
        self._email = email
        self._password = password
        self._app_version = app_version
        self._call = call
        self._clock = clock
        self._id_token: Secret | None = None
        self._refresh_token: Secret | None = None
        self._expires_at = 0.0
        # One refresh at a time: concurrent requests wait for it instead of each refreshing.
        self._lock = asyncio.Lock()

    @property
    def expires_at(self) -> float:
        """When the current IdToken expires (clock seconds), 0 before login."""
        return self._expires_at

    async def headers(self) -> dict[str, str]:
        async with self._lock:
            if self._id_token is None:
                await self._login()
            elif self._clock() >= self._expires_at - _REFRESH_MARGIN_S:
                await self._refresh_or_login()
        assert self._id_token is not None
        return {
            "Authorization": f"Bearer {self._id_token.reveal()}",
            "x-skybell-app": self._app_version,
        }

    async def recover(self) -> bool:
        async with self._lock:
            await self._refresh_or_login()
        return True

    async def logout(self) -> None:
        self._id_token = self._refresh_token = None
        self._expires_at = 0.0

    async def _login(self) -> None:
        data = await self._call(
            "login", {"username": self._email, "password": self._password.reveal()}
        )
        result = data.get("AuthenticationResult") if isinstance(data, dict) else None
        if not isinstance(result, dict):
            raise BadResponse("login response has no AuthenticationResult", path="/login/")
        self._store(result)
        _LOGGER.info("logged in to the SkyBell cloud as %s", self._email)

    async def _refresh_or_login(self) -> None:
        if self._refresh_token is None:
            await self._login()
            return
        try:
            data = await self._call("refresh", {"refresh_token": self._refresh_token.reveal()})
        except AuthError as err:
            _LOGGER.info("token refresh refused (%s); logging in again", err.message)
            await self._login()
            return
        if not isinstance(data, dict):
            raise BadResponse("refresh response has no data object", path="/token/")
        # The refresh answer sometimes nests the tokens like login does; accept both shapes.
        self._store(data.get("AuthenticationResult", data))

    def _store(self, result: dict[str, Any]) -> None:
        id_token = result.get("IdToken")
        if not id_token:
            raise BadResponse("authentication result has no IdToken")
        self._id_token = Secret(str(id_token))
        if result.get("RefreshToken"):
            self._refresh_token = Secret(str(result["RefreshToken"]))
        try:
            lifetime = float(result.get("ExpiresIn", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._expires_at = self._clock() + lifetime
