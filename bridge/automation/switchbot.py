"""Async client for the SwitchBot API v1.1: devices, commands, scenes and webhooks.

Every request goes through ``_call``, the one place that signs it, spends the daily budget,
retries transient failures with capped backoff, and turns HTTP statuses and the
``{statusCode, message, body}`` envelope into ``bridge.automation.switchbot_errors`` types.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.automation.budget import BudgetUsage, CallBudget
from bridge.automation.switchbot_errors import (
    STATUS_ERRORS,
    SwitchBotAuthError,
    SwitchBotBadResponse,
    SwitchBotError,
    SwitchBotRateLimited,
    SwitchBotUnavailable,
)
from bridge.automation.switchbot_models import (
    Scene,
    SwitchBotDevice,
    SwitchBotDeviceStatus,
    Webhook,
)
from bridge.redact import Secret

__all__ = ["DEFAULT_API_URL", "SwitchBotClient", "sign", "signed_headers"]

_LOGGER = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.switch-bot.com"
_PREFIX = "/v1.1"
_OK = 100


def sign(token: str, secret: str, t_ms: int, nonce: str) -> str:
    """The v1.1 signature: base64(HMAC-SHA256(key=secret, msg=token + t + nonce))."""
    # The prose of the API document says "convert to upper case", but its own code samples, and
    # every client known to work, send the base64 text as is; upper-casing base64 would change
    # the bytes it encodes, so the server could not verify it.
    digest = hmac.new(secret.encode(), f"{token}{t_ms}{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(token: str, secret: str, t_ms: int, nonce: str) -> dict[str, str]:
    """The five headers every v1.1 request carries."""
    return {
        "Authorization": token,
        "sign": sign(token, secret, t_ms, nonce),
        "t": str(t_ms),
        "nonce": nonce,
        "Content-Type": "application/json; charset=utf8",
    }


class SwitchBotClient:
    """The SwitchBot cloud, on an injected ``aiohttp.ClientSession``.

    ``attempts`` bounds tries per call for transient failures (5xx, 429, timeouts, no
    connection); every try, retries included, is signed afresh and spends one budget call.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token: Secret,
        secret: Secret,
        base_url: str = DEFAULT_API_URL,
        budget: CallBudget | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
    ) -> None:
        if not token or not secret:
            raise SwitchBotAuthError("no SwitchBot credentials: set both the token and the secret")
        self._session = session
        self._token = token
        self._secret = secret
        self._base = base_url.rstrip("/")
        self._clock = clock
        self.budget = budget if budget is not None else CallBudget(clock=clock)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._down_since: float | None = None  # clock() of the first transient failure

    # -- devices -----------------------------------------------------------------------------

    async def devices(self) -> list[SwitchBotDevice]:
        """Physical devices, then virtual infrared remotes (``SwitchBotDevice.remote``)."""
        body = _dict(await self._call("GET", "/devices"), "/devices")
        physical = _list(body.get("deviceList", []), "deviceList")
        remotes = _list(body.get("infraredRemoteList", []), "infraredRemoteList")
        return [SwitchBotDevice.from_api(row, remote=False) for row in physical] + [
            SwitchBotDevice.from_api(row, remote=True) for row in remotes
        ]

    async def status(self, device_id: str) -> SwitchBotDeviceStatus:
        """The state a physical device last reported."""
        path = f"/devices/{quote(device_id, safe='')}/status"
        return SwitchBotDeviceStatus.from_api(_dict(await self._call("GET", path), path))

    async def command(
        self,
        device_id: str,
        command: str,
        parameter: str | int | dict[str, Any] = "default",
        *,
        command_type: str = "command",
    ) -> dict[str, Any]:
        """Send one control command; ``command_type="customize"`` for user-made IR buttons."""
        # Retrying a command after a 5xx or a timeout may run it twice. Harmless for turnOn and
        # turnOff; a Bot's "press" or a plug's "toggle" could flip back, so rules prefer on/off.
        path = f"/devices/{quote(device_id, safe='')}/commands"
        body = {"command": command, "parameter": parameter, "commandType": command_type}
        result = await self._call("POST", path, body)
        return result if isinstance(result, dict) else {}

    # -- scenes ------------------------------------------------------------------------------

    async def scenes(self) -> list[Scene]:
        """The account's manual scenes."""
        return [Scene.from_api(row) for row in _list(await self._call("GET", "/scenes"), "scenes")]

    async def execute_scene(self, scene_id: str) -> None:
        """Run a manual scene."""
        await self._call("POST", f"/scenes/{quote(scene_id, safe='')}/execute")

    # -- webhooks ----------------------------------------------------------------------------

    async def setup_webhook(self, url: str, *, device_list: str = "ALL") -> None:
        """Ask SwitchBot to POST device events to ``url``."""
        body = {"action": "setupWebhook", "url": url, "deviceList": device_list}
        await self._call("POST", "/webhook/setupWebhook", body)

    async def webhook_urls(self) -> list[str]:
        """The webhook URLs configured on the account."""
        body = _dict(
            await self._call("POST", "/webhook/queryWebhook", {"action": "queryUrl"}), "queryUrl"
        )
        return [u for u in _list(body.get("urls", []), "urls", of=str)]

    async def webhook_details(self, urls: list[str]) -> list[Webhook]:
        """Configuration of the given webhook URLs."""
        body = {"action": "queryDetails", "urls": urls}
        rows = _list(await self._call("POST", "/webhook/queryWebhook", body), "queryDetails")
        return [Webhook.from_api(row) for row in rows]

    async def update_webhook(self, url: str, *, enable: bool) -> None:
        """Enable or disable a configured webhook."""
        body = {"action": "updateWebhook", "config": {"url": url, "enable": enable}}
        await self._call("POST", "/webhook/updateWebhook", body)

    async def delete_webhook(self, url: str) -> None:
        """Remove a webhook."""
        await self._call("POST", "/webhook/deleteWebhook", {"action": "deleteWebhook", "url": url})

    # -- budget ------------------------------------------------------------------------------

    def usage(self) -> BudgetUsage:
        """Calls spent today against the daily limit, for the status page."""
        return self.budget.usage()

    # -- transport ---------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            self.budget.take(path)  # raises BudgetExhausted before anything is sent
            try:
                result = await self._once(method, path, body)
            except SwitchBotError as err:
                if not err.transient:
                    raise
                self._note_down(err)
                if attempt >= self._attempts:
                    raise
                delay = self._delay(attempt, err)
                _LOGGER.debug(
                    "%s %s failed (%s); try %d of %d in %.2f s",
                    method,
                    path,
                    err,
                    attempt + 1,
                    self._attempts,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._note_up()
            return result

    def _delay(self, attempt: int, err: SwitchBotError) -> float:
        ceiling = min(self._backoff_cap, self._backoff * 2.0 ** (attempt - 1))
        retry_after = err.retry_after if isinstance(err, SwitchBotUnavailable) else None
        if retry_after is not None:
            return min(self._backoff_cap, max(retry_after, ceiling))
        # Jitter, so several bridges (or rules) that failed together do not retry together.
        return random.uniform(ceiling / 2, ceiling)

    def _note_down(self, err: SwitchBotError) -> None:
        # Log the start of an outage once, and its end once, not every retry.
        if self._down_since is None:
            self._down_since = self._clock()
            _LOGGER.warning("SwitchBot API unavailable: %s", err)

    def _note_up(self) -> None:
        if self._down_since is not None:
            _LOGGER.info("SwitchBot API back after %.1f s", self._clock() - self._down_since)
            self._down_since = None

    async def _once(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        url = self._base + _PREFIX + path
        t_ms = int(self._clock() * 1000)
        headers = signed_headers(
            self._token.reveal(), self._secret.reveal(), t_ms, str(uuid.uuid4())
        )
        data = json.dumps(body).encode() if body is not None else None
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError as err:
            raise SwitchBotUnavailable("no answer in time", path=path) from err
        except aiohttp.ClientError as err:
            raise SwitchBotUnavailable(f"cannot reach the API: {err}", path=path) from err
        envelope = _parse(text)
        message = str(envelope.get("message") or "") if envelope else ""
        code = envelope.get("statusCode") if envelope else None
        _LOGGER.debug("%s %s -> HTTP %d, statusCode %s", method, path, status, code)
        if status in (401, 403):
            raise SwitchBotAuthError(
                "unauthorized: check the token, the secret and this computer's clock; the API "
                "also answers this once the account's 10,000 calls for the day are spent",
                http_status=status,
                path=path,
            )
        if status == 429:
            limited = SwitchBotRateLimited("too many requests", http_status=status, path=path)
            limited.retry_after = _seconds(retry_after)
            raise limited
        if status >= 500:
            raise SwitchBotUnavailable(message or "server error", http_status=status, path=path)
        if status >= 400:
            raise SwitchBotError(message or "request refused", http_status=status, path=path)
        if envelope is None or not isinstance(code, int):
            raise SwitchBotBadResponse(
                f"expected the JSON envelope, got {text[:80]!r}", http_status=status, path=path
            )
        if code == _OK:
            return envelope.get("body")
        cls, meaning = STATUS_ERRORS.get(code, (SwitchBotError, "unexpected status"))
        detail = f"{meaning} ({message})" if message and message.lower() not in meaning else meaning
        raise cls(detail, status_code=code, path=path)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the backoff ceiling is good enough then


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SwitchBotBadResponse(f"expected an object in the {what} answer")
    return value


def _list(value: Any, what: str, *, of: type = dict) -> list[Any]:
    if not isinstance(value, list):
        raise SwitchBotBadResponse(f"expected a list in the {what} answer")
    return [item for item in value if isinstance(item, of)]
