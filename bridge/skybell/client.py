"""Async client for the SkyBell Gen5 cloud API.

Every call goes through ``_call``, the one place where aiohttp exceptions, HTTP statuses and the
``{error, message, data}`` envelope become the bridge's error types (see ``bridge.errors``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.errors import (
    ApiError,
    AuthError,
    BadResponse,
    CloudConnectionError,
    CloudError,
    CloudTimeout,
    DeviceUnreachable,
    NotFound,
    ServerError,
)
from bridge.redact import Secret
from bridge.skybell.auth import ApiKeyAuth, Auth, Clock, TokenAuth
from bridge.skybell.models import Activity, Device, LiveCall, Snapshot, Trigger, User
from bridge.skybell.paths import ACTIVITY_DEVICE_PARAM, FALSE_DATA_OK, PATHS, PUBLIC
from bridge.skybell.share import DeviceShare

__all__ = ["SkyBellClient"]

_LOGGER = logging.getLogger(__name__)
_PAGE = 50


class SkyBellClient:
    """The SkyBell cloud, on an injected ``aiohttp.ClientSession``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: Secret | None = None,
        email: str = "",
        password: Secret | None = None,
        app_version: str = "2.9.1",
        timeout: float = 35.0,
        clock: Clock = time.time,
        retry_unreachable: int = 1,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry_unreachable = retry_unreachable
        # skybell.devices: this bridge's share of the account (None: every doorbell).
        self.share: DeviceShare | None = None
        self.auth: Auth
        if api_key:
            self.auth = ApiKeyAuth(api_key)
        elif email and password:
            self.auth = TokenAuth(email, password, app_version, self._public_call, clock)
        else:
            raise AuthError("no SkyBell credentials: set an API key, or an email and password")

    # -- account -----------------------------------------------------------------------------

    async def user(self) -> User:
        """The account behind the credentials."""
        return User.from_api(await self._call("user"))

    async def logout(self) -> None:
        """Revoke every token of the user (JWT auth) and forget them locally."""
        if isinstance(self.auth, TokenAuth) and self.auth.expires_at:
            await self._call("logout")
        await self.auth.logout()

    async def health(self) -> dict[str, Any]:
        """The cloud's status and versions; needs no authentication."""
        data = await self._call("health")
        return data if isinstance(data, dict) else {"data": data}

    # -- devices -----------------------------------------------------------------------------

    async def devices(self) -> list[Device]:
        """The account's devices, or this bridge's share of them when ``share`` is set."""
        devices = await self.account_devices()
        return devices if self.share is None else self.share.select(devices)

    async def account_devices(self) -> list[Device]:
        """Every device on the account, following pagination."""
        devices: list[Device] = []
        offset = 0
        while True:
            data = await self._call("devices", params={"limit": _PAGE, "offset": offset})
            rows = _rows(data, "devices")
            devices.extend(Device.from_api(row) for row in rows)
            offset += len(rows)
            total = data.get("count") if isinstance(data, dict) else None
            if len(rows) < _PAGE or (isinstance(total, int) and offset >= total) or not rows:
                return devices

    async def device(self, device_id: str) -> Device:
        """One device with its settings and telemetry."""
        return Device.from_api(await self._call("device", device_id=device_id))

    async def update_settings(self, device_id: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Change some settings; only the keys given are sent."""
        data = await self._call("settings", device_id=device_id, body=settings)
        return data if isinstance(data, dict) else {}

    async def snapshot(self, device_id: str) -> Snapshot:
        """A fresh still picture, as JPEG bytes."""
        data = await self._call("snapshot", device_id=device_id)
        preview = data.get("preview") if isinstance(data, dict) else None
        if not isinstance(preview, str):
            raise BadResponse("snapshot response has no preview", path="snapshot")
        try:
            jpeg = base64.b64decode(preview, validate=False)
        except (binascii.Error, ValueError) as err:
            raise BadResponse("snapshot preview is not base64", path="snapshot") from err
        if not jpeg.startswith(b"\xff\xd8"):
            raise BadResponse("snapshot preview is not a JPEG", path="snapshot")
        taken = data.get("date_time")
        when = datetime.fromisoformat(taken.replace("Z", "+00:00")) if taken else None
        return Snapshot(jpeg=jpeg, taken_at=when)

    async def reboot(self, device_id: str) -> None:
        """Ask the device to reboot (it does so 10 to 60 s later)."""
        await self._call("reboot", device_id=device_id)

    async def play_tone(self, device_id: str, file_name: str) -> None:
        """Play one of the doorbell's tones (``bridge.skybell.tones.TONES``) on its speaker."""
        await self._call("play_tone", device_id=device_id, body={"file_name": file_name})

    async def start_live_call(self, device_id: str, *, force: bool = False) -> LiveCall:
        """Ask the cloud for a live stream and return the KVS signaling information."""
        data = await self._call("live_start", device_id=device_id, body={"force": force})
        return LiveCall.from_api(device_id, data)

    async def stop_live_call(self, device_id: str) -> None:
        """End any live stream or recording on the device."""
        await self._call("live_stop", device_id=device_id)

    # -- activities --------------------------------------------------------------------------

    async def activities(
        self,
        *,
        device_id: str | None = None,
        event_type: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        previews: bool = False,
    ) -> list[Activity]:
        """One page of the activity history, newest first."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if device_id:
            params[ACTIVITY_DEVICE_PARAM] = device_id
        if event_type:
            params["type"] = event_type
        if start:
            params["start"] = int(start.timestamp() * 1000)
        if end:
            params["end"] = int(end.timestamp() * 1000)
        if not previews:
            params["nopreviews"] = 1
        data = await self._call("activities", params=params)
        return [Activity.from_api(row) for row in _rows(data, "activities")]

    async def iter_activities(self, *, page: int = 100, **filters: Any) -> AsyncIterator[Activity]:
        """Every matching activity, following pagination."""
        offset = 0
        while True:
            batch = await self.activities(limit=page, offset=offset, **filters)
            for activity in batch:
                yield activity
            if len(batch) < page:
                return
            offset += len(batch)

    async def activity_video_url(self, activity_id: str) -> str:
        """A short-lived presigned URL for the activity's MP4."""
        data = await self._call("activity_video", activity_id=activity_id)
        url = data.get("download_url") if isinstance(data, dict) else None
        if not isinstance(url, str):
            raise BadResponse("activity video response has no download_url")
        return url

    async def delete_activity(self, activity_id: str) -> None:
        """Delete one activity from the history (not reversible)."""
        await self._call("activity_delete", activity_id=activity_id)

    # -- triggers ----------------------------------------------------------------------------

    async def create_trigger(
        self,
        device_id: str,
        url: str,
        events: list[str],
        *,
        method: str = "post",
        header_name: str | None = None,
        header_value: Secret | None = None,
    ) -> Trigger:
        """Register a webhook the cloud calls on the given events."""
        body: dict[str, Any] = {"type": "webhook", "url": url, "method": method, "events": events}
        if header_name and header_value:
            body["header_name"] = header_name
            body["header_value"] = header_value.reveal()
        return Trigger.from_api(await self._call("trigger_create", device_id=device_id, body=body))

    async def triggers(self, device_id: str) -> list[Trigger]:
        """The triggers registered for a device."""
        data = await self._call("triggers", device_id=device_id)
        rows = data if isinstance(data, list) else _rows(data, "triggers")
        return [Trigger.from_api(row) for row in rows]

    async def delete_trigger(self, device_id: str, trigger_id: str) -> None:
        """Remove a trigger."""
        await self._call("trigger_delete", device_id=device_id, trigger_id=trigger_id)

    # -- transport ---------------------------------------------------------------------------

    async def _public_call(self, name: str, body: dict[str, Any]) -> Any:
        return await self._call(name, body=body)

    async def _call(
        self,
        name: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        **path_args: str,
    ) -> Any:
        method, template = PATHS[name]
        path = template.format(**{k: quote(v, safe="") for k, v in path_args.items()})
        unauthorized_retry = name not in PUBLIC
        unreachable_retries = self._retry_unreachable
        while True:
            headers = {} if name in PUBLIC else await self.auth.headers()
            try:
                return await self._once(name, method, path, headers, body, params)
            except AuthError:
                if unauthorized_retry and await self.auth.recover():
                    unauthorized_retry = False
                    continue
                raise
            except DeviceUnreachable:
                if unreachable_retries > 0:
                    unreachable_retries -= 1
                    _LOGGER.info("device did not answer the cloud (%s); retrying once", path)
                    continue
                raise

    async def _once(
        self,
        name: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
    ) -> Any:
        url = self._base + path
        try:
            async with self._session.request(
                method, url, json=body, params=params, headers=headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
        except TimeoutError as err:
            raise CloudTimeout("the SkyBell cloud did not answer in time", path=path) from err
        except aiohttp.ClientError as err:
            raise CloudConnectionError(f"cannot reach the SkyBell cloud: {err}", path=path) from err
        envelope = _parse_envelope(text)
        message = str(envelope.get("message") or "") if envelope else ""
        if status == 599:
            raise DeviceUnreachable(
                message or "the device did not answer", status=status, path=path
            )
        if status in (401, 403):
            raise AuthError(message or "credentials refused", status=status, path=path)
        if status == 404:
            raise NotFound(message or "not found", status=status, path=path)
        if 400 <= status < 500:
            raise ApiError(message or "request refused", status=status, path=path)
        if status >= 500:
            raise ServerError(message or "cloud error", status=status, path=path)
        if envelope is None:
            raise BadResponse(
                f"expected the JSON envelope, got {text[:80]!r}", status=status, path=path
            )
        if envelope.get("error") is True:
            raise ApiError(message or "the cloud reported an error", status=status, path=path)
        data = envelope.get("data")
        if data is False and name not in FALSE_DATA_OK:
            cls: type[CloudError] = NotFound if "not your" in message.lower() else ApiError
            raise cls(message or "request refused", status=status, path=path)
        return data


def _parse_envelope(text: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or ("data" not in parsed and "error" not in parsed):
        return None
    return parsed


def _rows(data: Any, what: str) -> list[dict[str, Any]]:
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise BadResponse(f"{what} response has no rows list")
    return [r for r in rows if isinstance(r, dict)]
