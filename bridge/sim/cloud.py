"""A simulated SkyBell Gen5 cloud: a real aiohttp app with the documented envelope and data.

It backs the CLI when no credentials are configured, and every test. State is plain Python
(``SimCloud.devices``, ``.activities``, ``.triggers``) so tests can arrange and inspect it, and the
fault switches (``SimCloud.faults``) are also reachable over HTTP at ``/_sim/faults`` for a
standalone ``skybell-bridge sim``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.sim.device_settings import default_settings, settings_problem
from bridge.skybell.tones import TONES

__all__ = [
    "API_PREFIX",
    "DEFAULT_API_KEY",
    "DEFAULT_EMAIL",
    "DEFAULT_PASSWORD",
    "Faults",
    "LiveProvider",
    "SimCloud",
    "SimDevice",
]

_LOGGER = logging.getLogger(__name__)

API_PREFIX = "/api/v5"
DEFAULT_API_KEY = "5e1b2c8e-0d3f-4a7e-9b1c-2f6d8a4c3e10"
DEFAULT_EMAIL = "demo@skybell.example"
DEFAULT_PASSWORD = "ring-ring-2026"  # noqa: S105 - the simulator's published demo login
_ACCOUNT_ID = "33dae2fb-499a-496c-88b5-897da608a04a"
_TRIGGER_EVENTS = frozenset(
    {
        "lstream",
        "doorbell",
        "motion",
        "telemetry",
        "availability",
        "ota",
        "vready",
        "devicedeleted",
        "sound",
    }
)

# (device, the sim's own base URL) -> the live-call data object. Issue-3 signaling plugs in here.
LiveProvider = Callable[["SimDevice", str], Awaitable[dict[str, Any]]]


@dataclass
class SimDevice:
    """One simulated doorbell's cloud record."""

    id: str
    name: str
    serial: str
    model: str = "SB_SLIM2_0001"
    firmware: str = "1.4.12"
    ip_address: str = "127.0.0.1"
    online: bool = True
    battery: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def as_api(self, now_ms: int) -> dict[str, Any]:
        """The device object as ``/devices/{id}/`` returns it."""
        connected = datetime.fromtimestamp(now_ms / 1000 - 3600, UTC).isoformat()
        disconnected = datetime.fromtimestamp(now_ms / 1000 - 7200, UTC).isoformat()
        telemetry: dict[str, Any] = {
            "uptime": 12674,
            "timestamp": now_ms,
            "link_quality": "89/100",
            "signal_level": "-38",
            "ip_address": self.ip_address,
        }
        if self.battery is not None:
            telemetry["battery_percentage"] = self.battery
        return {
            "device_id": self.id,
            "client_id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)),
            "account_id": _ACCOUNT_ID,
            "serial": self.serial,
            "hardware": f"Ver A:{self.model}",
            "firmware": self.firmware,
            "last_event": None,
            "last_connected": connected,
            "last_disconnected": disconnected if self.online else _iso(now_ms),
            "name": self.name,
            # The seed's defaults for what was never changed, as the real object has them all.
            "settings": {"device_name": self.name, **default_settings(), **self.settings},
            "device_settings": {
                "model_rev": self.model,
                "serial_number": self.serial,
                "firmware_version": self.firmware,
                "MAC_address": "9C:54:DA:10:D7:7E",
            },
            "created_at": "2025-04-12T14:28:40.672Z",
            "updated_at": _iso(now_ms),
            "telemetry": telemetry,
        }


@dataclass
class Faults:
    """Switches that make the simulated cloud misbehave the way the real one can."""

    unreachable: set[str] = field(default_factory=set)  # device ids answering HTTP 599
    # The next live-call requests answer these HTTP statuses in turn, then the call works again:
    # [599, 500] is a doorbell that misses its wake-up, then a cloud that fails, then recovery.
    live_call_statuses: list[int] = field(default_factory=list)
    server_errors: int = 0  # the next N requests get HTTP ``server_error_status``
    server_error_status: int = 503  # 500 for a cloud that fails outright rather than sheds load
    malformed: int = 0  # the next N requests get a non-JSON body
    delay: float = 0.0  # seconds added before every answer
    expire_tokens: bool = False  # every issued JWT is refused as expired
    refuse_refresh: bool = False  # PUT /token/ answers 401

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        out = asdict(self)
        out["unreachable"] = sorted(self.unreachable)
        return out


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )


_STATUS_MESSAGES = {599: "Device did not respond in time", 503: "Service Unavailable"}


def _ok(data: Any, message: str = "OK", status: int = 200) -> web.Response:
    return web.json_response({"error": False, "message": message, "data": data}, status=status)


def _fail(status: int, message: str) -> web.Response:
    return web.json_response({"error": True, "message": message, "data": None}, status=status)


def default_devices() -> list[SimDevice]:
    """Two doorbells with different names and models; the first is "Front Door"."""
    return [
        SimDevice(
            id="0579ce92-72a5-4b1f-8191-e360876705c3",
            name="Front Door",
            serial="A3BAB00473",
            model="SB_SLIM2_0001",
            # Distinct loopback addresses, so local UDP events can be told apart on one machine.
            ip_address="127.0.0.21",
            settings={
                "image_quality": 1,
                "motion_detection": True,
                "time_zone": "EST5EDT,M3.2.0,M11.1.0",
            },
        ),
        SimDevice(
            id="be0e3ef1-cf12-4350-bdc2-ce5266bdb838",
            name="Back Garden",
            serial="A5DCA00912",
            model="SB_TRIM2_0001",
            firmware="1.4.9",
            ip_address="127.0.0.22",
            battery=87,
            settings={
                "image_quality": 0,
                "motion_detection": True,
                "time_zone": "EST5EDT,M3.2.0,M11.1.0",
            },
        ),
    ]


class SimCloud:
    """State and HTTP handlers of the simulated cloud."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        email: str = DEFAULT_EMAIL,
        password: str = DEFAULT_PASSWORD,
        token_ttl: float = 3600.0,
        devices: list[SimDevice] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.email = email
        self.password = password
        self.token_ttl = token_ttl
        self.clock = clock
        self.devices = {d.id: d for d in (devices if devices is not None else default_devices())}
        self.faults = Faults()
        self.activities: list[dict[str, Any]] = []
        self.triggers: dict[str, dict[str, Any]] = {}
        self.live_provider: LiveProvider | None = None
        self.on_live_stop: Callable[[SimDevice], Awaitable[None]] | None = None
        self.live_sessions: dict[str, int] = {}  # device id -> live calls started and not stopped
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request, for tests
        self.tones_played: list[tuple[str, str]] = []  # (device id, file_name), in order
        self._id_tokens: dict[str, float] = {}  # IdToken -> expiry
        self._refresh_tokens: set[str] = set()
        self._seed_history()

    # -- app -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application: API under ``/api/v5``, control under ``/_sim``."""
        app = web.Application(middlewares=[self._faults_mw, self._auth_mw])
        p = API_PREFIX
        app.add_routes(
            [
                web.get(p + "/health", self._health),
                web.post(p + "/login/", self._login),
                web.put(p + "/token/", self._refresh),
                web.get(p + "/logout/", self._logout),
                web.post(p + "/logout/", self._logout),
                web.get(p + "/user/", self._user),
                web.get(p + "/devices/", self._devices),
                web.get(p + "/devices/{device_id}/", self._device),
                web.post(p + "/devices/{device_id}/settings/", self._settings),
                web.get(p + "/devices/{device_id}/snapshot/", self._snapshot),
                web.post(p + "/devices/{device_id}/reboot/", self._reboot),
                web.post(p + "/devices/{device_id}/tones/test/", self._play_tone),
                web.post(p + "/devices/{device_id}/videostream/", self._live_start),
                web.delete(p + "/devices/{device_id}/videostream/", self._live_stop),
                web.get(p + "/activity", self._activities),
                web.get(p + "/activity/{activity_id}/video", self._activity_video),
                web.delete(p + "/activity/{activity_id}", self._activity_delete),
                web.get(p + "/devices/{device_id}/triggers", self._triggers),
                web.post(p + "/devices/{device_id}/triggers", self._trigger_create),
                web.delete(p + "/devices/{device_id}/triggers/{trigger_id}", self._trigger_delete),
                web.get("/_sim/faults", self._get_faults),
                web.post("/_sim/faults", self._set_faults),
            ]
        )
        return app

    def now_ms(self) -> int:
        """The sim's clock in JS milliseconds."""
        return int(self.clock() * 1000)

    def add_activity(
        self, device: SimDevice, event_type: str, when_ms: int | None = None
    ) -> dict[str, Any]:
        """Record an activity as the real cloud does after a press, motion or live stream."""
        when = self.now_ms() if when_ms is None else when_ms
        activity_id = str(uuid.uuid4())
        row = {
            "event_time": when,
            "account_id": _ACCOUNT_ID,
            "device_id": device.id,
            "device_name": device.name,
            "activity_id": activity_id,
            "event_type": event_type,
            "date": datetime.fromtimestamp(when / 1000, UTC).strftime("%m/%d/%Y"),
            "video_url": None,
            "image": None,
            "edge_tags": None,
            "ai_ppe": None,
        }
        self.activities.insert(0, row)
        return row

    def _seed_history(self) -> None:
        now = self.now_ms()
        for n, device in enumerate(self.devices.values()):
            for k, kind in enumerate(("doorbell", "motion", "lstream", "motion")):
                self.add_activity(device, kind, now - (k + 1) * 3_600_000 * 7 - n * 60_000)
        self.activities.sort(key=lambda a: a["event_time"], reverse=True)

    # -- middlewares ---------------------------------------------------------------------------

    @web.middleware
    async def _faults_mw(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)  # control routes and mounted services (KVS)
        self.calls.append((request.method, request.path))
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        if self.faults.server_errors > 0:
            self.faults.server_errors -= 1
            status = self.faults.server_error_status
            return _fail(status, _STATUS_MESSAGES.get(status, "Server Error"))
        if self.faults.malformed > 0:
            self.faults.malformed -= 1
            return web.Response(
                text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
            )
        return await handler(request)

    @web.middleware
    async def _auth_mw(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        public = {API_PREFIX + "/health", API_PREFIX + "/login/", API_PREFIX + "/token/"}
        if request.path in public or not request.path.startswith(API_PREFIX):
            return await handler(request)
        key = request.headers.get("x-skybell-user-api-key")
        if key is not None:
            if not secrets.compare_digest(key, self.api_key):
                return _fail(401, "Unauthorized: invalid API key")
            return await handler(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return _fail(401, "Unauthorized: no credentials")
        expiry = self._id_tokens.get(auth.removeprefix("Bearer "))
        if expiry is None or self.faults.expire_tokens or expiry <= self.clock():
            return _fail(401, "The incoming token has expired")
        if not request.headers.get("x-skybell-app"):
            return _fail(400, "Missing x-skybell-app header")
        return await handler(request)

    # -- auth ----------------------------------------------------------------------------------

    def _issue(self, refresh: bool) -> dict[str, Any]:
        id_token = "sim-id-" + secrets.token_urlsafe(24)
        self._id_tokens[id_token] = self.clock() + self.token_ttl
        result: dict[str, Any] = {
            "AccessToken": "sim-access-" + secrets.token_urlsafe(24),
            "ExpiresIn": int(self.token_ttl),
            "TokenType": "Bearer",
            "IdToken": id_token,
        }
        if refresh:
            result["RefreshToken"] = "sim-refresh-" + secrets.token_urlsafe(32)
            self._refresh_tokens.add(result["RefreshToken"])
        return result

    async def _login(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body.get("username") != self.email or body.get("password") != self.password:
            return _fail(401, "Incorrect username or password.")
        self.faults.expire_tokens = False
        return _ok({"ChallengeParameters": {}, "AuthenticationResult": self._issue(refresh=True)})

    async def _refresh(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if self.faults.refuse_refresh or body.get("refresh_token") not in self._refresh_tokens:
            return _fail(401, "Invalid Refresh Token")
        self.faults.expire_tokens = False
        return _ok(self._issue(refresh=False), "Refreshed")

    async def _logout(self, request: web.Request) -> web.Response:
        self._id_tokens.clear()
        self._refresh_tokens.clear()
        return web.json_response({"error": False, "message": "OK"})

    async def _user(self, request: web.Request) -> web.Response:
        premium = {
            "renewing": True,
            "term": 1,
            "started_at": "2025-10-27T20:20:47.506Z",
            "ended_at": None,
        }
        return _ok(
            {
                "email": self.email,
                "account_id": _ACCOUNT_ID,
                "premium_status": "premium",
                "premium": premium,
            }
        )

    async def _health(self, request: web.Request) -> web.Response:
        return _ok({"ENV": "sim", "SKYBELL_API_VER": "1.4.0", "UPTIME": 3994, "MOBILE_BETA": True})

    # -- devices -------------------------------------------------------------------------------

    def _find(self, request: web.Request, *, needs_device: bool) -> SimDevice | web.Response:
        device = self.devices.get(request.match_info["device_id"])
        if device is None:
            # The real cloud answers 200 with data false for a device that is not yours.
            return web.json_response({"error": False, "message": "Not your device", "data": False})
        if needs_device and device.id in self.faults.unreachable:
            return _fail(599, "Device did not respond in time")
        return device

    async def _devices(self, request: web.Request) -> web.Response:
        limit, offset = _int_param(request, "limit", 50), _int_param(request, "offset", 0)
        rows = [d.as_api(self.now_ms()) for d in self.devices.values()]
        return _ok(
            {
                "count": len(rows),
                "rows": rows[offset : offset + limit],
                "limit": limit,
                "offset": offset,
            }
        )

    async def _device(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=False)
        return found if isinstance(found, web.Response) else _ok(found.as_api(self.now_ms()))

    async def _settings(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=True)
        if isinstance(found, web.Response):
            return found
        body = await _json_body(request)
        problem = settings_problem(body)
        if problem is not None:
            return _fail(400, problem)
        if "device_name" in body:
            found.name = str(body["device_name"])
        found.settings.update(body)
        return _ok({})

    async def _snapshot(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=True)
        if isinstance(found, web.Response):
            return found
        # Imported here: PyAV is heavy, and most uses of the cloud never take a snapshot.
        from bridge.sim.picture import snapshot_jpeg

        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        jpeg = await asyncio.to_thread(snapshot_jpeg, 640, 360, f"{found.name} {stamp}")
        return _ok({"date_time": _iso(self.now_ms()), "preview": base64.b64encode(jpeg).decode()})

    async def _reboot(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=True)
        return found if isinstance(found, web.Response) else _ok({}, "OK, sent reboot command.")

    async def _play_tone(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=True)
        if isinstance(found, web.Response):
            return found
        try:
            body = await request.json()
        except ValueError:
            body = None
        name = body.get("file_name") if isinstance(body, dict) else None
        if name not in TONES:
            return _fail(400, f"file_name must be one of {', '.join(TONES)}")
        self.tones_played.append((found.id, name))
        # The seed's answer: data false, which elsewhere means "not your device".
        return _ok(False, "Tested tone")

    async def _live_start(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=True)
        if isinstance(found, web.Response):
            return found
        if self.faults.live_call_statuses:
            status = self.faults.live_call_statuses.pop(0)
            return _fail(status, _STATUS_MESSAGES.get(status, "Server Error"))
        base = f"{request.scheme}://{request.host}"
        data = (
            await self.live_provider(found, base)
            if self.live_provider
            else _placeholder_live(found, base)
        )
        self.live_sessions[found.id] = self.live_sessions.get(found.id, 0) + 1
        self.add_activity(found, "lstream")
        return _ok({"state": True, **data})

    async def _live_stop(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=False)
        if isinstance(found, web.Response):
            return found
        self.live_sessions[found.id] = 0
        if self.on_live_stop is not None:
            await self.on_live_stop(found)
        return web.json_response({"error": False, "message": "Ended stream", "data": False})

    # -- activities ----------------------------------------------------------------------------

    async def _activities(self, request: web.Request) -> web.Response:
        q = request.query
        rows = self.activities
        device = q.get("device") or q.get("device_id")
        if device:
            rows = [a for a in rows if a["device_id"] == device]
        if q.get("type"):
            rows = [a for a in rows if a["event_type"] == q["type"]]
        start, end = _int_param(request, "start", 0), _int_param(request, "end", 0)
        if start:
            rows = [a for a in rows if a["event_time"] >= start]
        if end:
            rows = [a for a in rows if a["event_time"] <= end]
        limit, offset = _int_param(request, "limit", 500), _int_param(request, "offset", 0)
        page = [dict(a) for a in rows[offset : offset + limit]]
        if q.get("nopreviews") not in ("1", "true"):
            for row in page:
                row["image"] = base64.b64encode(b"\xff\xd8 sim preview \xff\xd9").decode()
        return _ok(
            {"count": len(rows), "start": _iso(start) if start else None, "end": None, "rows": page}
        )

    def _activity(self, request: web.Request) -> dict[str, Any] | None:
        wanted = request.match_info["activity_id"]
        return next((a for a in self.activities if a["activity_id"] == wanted), None)

    async def _activity_video(self, request: web.Request) -> web.Response:
        activity = self._activity(request)
        if activity is None:
            return _fail(404, "Activity not found")
        expires = int(self.clock()) + 300
        sig = secrets.token_urlsafe(18)
        url = (
            f"{request.scheme}://{request.host}/_sim/videos/{activity['activity_id']}.mp4"
            f"?AWSAccessKeyId=AKIASIMULATED&Expires={expires}&Signature={sig}"
        )
        return _ok({"download_url": url})

    async def _activity_delete(self, request: web.Request) -> web.Response:
        activity = self._activity(request)
        if activity is None:
            return _fail(404, "Activity not found")
        self.activities.remove(activity)
        return _ok(True)

    # -- triggers ------------------------------------------------------------------------------

    async def _triggers(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=False)
        if isinstance(found, web.Response):
            return found
        rows = [_public_trigger(t) for t in self.triggers.values() if t["device_id"] == found.id]
        return _ok(rows)

    async def _trigger_create(self, request: web.Request) -> web.Response:
        found = self._find(request, needs_device=False)
        if isinstance(found, web.Response):
            return found
        body = await _json_body(request)
        events = body.get("events") or sorted(_TRIGGER_EVENTS - {"sound"})
        problem = _trigger_problem(body, events)
        if problem:
            return _fail(400, problem)
        trigger_id = str(uuid.uuid4())
        trigger: dict[str, Any] = {
            "trigger_id": trigger_id,
            "client_id": str(uuid.uuid5(uuid.NAMESPACE_URL, found.id)),
            "account_id": _ACCOUNT_ID,
            "enabled": True,
            "fail_count": 0,
            "device_id": found.id,
            "type": "webhook",
            "meta_config": {
                "url": body["url"],
                "method": body.get("method", "post"),
                "header_name": body.get("header_name"),
                "header_value": body.get("header_value"),
            },
            "on_events": list(events),
            "created_at": _iso(self.now_ms()),
            "updated_at": _iso(self.now_ms()),
        }
        self.triggers[trigger_id] = trigger
        return _ok(trigger, "Webhook trigger created.")

    async def _trigger_delete(self, request: web.Request) -> web.Response:
        trigger = self.triggers.get(request.match_info["trigger_id"])
        if trigger is None or trigger["device_id"] != request.match_info["device_id"]:
            return _fail(404, "Trigger not found")
        del self.triggers[trigger["trigger_id"]]
        return _ok(True, "OK - trigger deleted")

    # -- control -------------------------------------------------------------------------------

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_dict())

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        for key, value in body.items():
            if not hasattr(self.faults, key):
                return web.json_response({"error": f"unknown fault {key!r}"}, status=400)
            setattr(self.faults, key, set(value) if key == "unreachable" else value)
        return web.json_response(self.faults.as_dict())


def _public_trigger(trigger: dict[str, Any]) -> dict[str, Any]:
    # The list endpoint omits meta_config, which holds the shared secret.
    return {k: v for k, v in trigger.items() if k != "meta_config"}


def _trigger_problem(body: dict[str, Any], events: Any) -> str | None:
    if body.get("type") != "webhook":
        return "type must be one of: webhook, ifttt, google, amazon (only webhook is simulated)"
    if not isinstance(body.get("url"), str) or not body["url"].startswith(("http://", "https://")):
        return "url must be an http(s) URL"
    if body.get("method", "post") not in ("get", "post"):
        return "method must be get or post"
    if not isinstance(events, list) or not events or not set(events) <= _TRIGGER_EVENTS:
        return "events must be a non-empty list of: " + ", ".join(sorted(_TRIGGER_EVENTS))
    return None


def _placeholder_live(device: SimDevice, base: str) -> dict[str, Any]:
    """The documented shape, for when no simulated signaling service is attached."""
    arn = f"arn:aws:kinesisvideo:us-east-1:000000000000:channel/{device.serial}_{device.id}/1"
    ws = base.replace("http", "ws", 1) + "/kvs"
    return {
        "ice": [],
        "endpoints": [
            {"Protocol": "HTTPS", "ResourceEndpoint": base + "/kvs"},
            {"Protocol": "WSS", "ResourceEndpoint": ws},
        ],
        "signed": [],
        "channelARN": arn,
        "credentials": {
            "AccessKeyId": "ASIASIMULATED",
            "SecretAccessKey": secrets.token_urlsafe(30),
            "SessionToken": secrets.token_urlsafe(60),
            "Expiration": _iso(int(time.time() * 1000) + 3_600_000),
        },
        "aws_region": "us-east-1",
        "signedWSS": None,
    }


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": true, "message": "Malformed JSON body", "data": null}',
            content_type="application/json",
        ) from None
    return body if isinstance(body, dict) else {}


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": true, "message": "{name} must be a number", "data": null}}',
            content_type="application/json",
        ) from None
