"""A simulated SwitchBot API v1.1: a real aiohttp app with signed requests, devices and scenes.

It checks each request's signature and timestamp the way the real service does (401 with
``{"message": "Unauthorized"}``), keeps a Bot, a Plug Mini, a Color Bulb, a Hub Mini and an
infrared light, runs two scenes, and keeps webhooks in memory. Tests arrange and inspect plain
state (``devices``, ``scenes``, ``webhooks``), read what ran from ``executed`` (each entry stamped
with ``time.monotonic()`` on arrival, for latency benchmarks), count attempts in ``calls``, and
break things through ``faults``; the faults are also reachable over HTTP at ``/_sim/faults``.

The signature is verified with the sim's own few lines, not the client's ``sign``, so a mistake
in the client cannot be mirrored here and pass unnoticed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.sim.switchbot_events import ALIASES, SIM_EVENTS, Delivery, deliver, webhook_body

__all__ = [
    "DEFAULT_SECRET",
    "DEFAULT_TOKEN",
    "Call",
    "Executed",
    "Faults",
    "SimScene",
    "SimSwitchBot",
    "SimSwitchDevice",
]

DEFAULT_TOKEN = "sim0switchbot0token0c8e4f1d2b7a9e3f5d6c0b1a2e8f7d9c4b3a"  # noqa: S105 - demo
DEFAULT_SECRET = "sim0secret0a1b2c3d4e5f"  # noqa: S105 - the simulator's published demo secret
_API = "/v1.1"
T_WINDOW_MS = 5 * 60 * 1000  # how far a request's t may be from the sim's clock
_NO_HUB = "000000000000"
_HUB = "E4B0C1D2A3F4"
_BOT = "F1D2C3B4A596"
_PLUG = "6055F9A1B2C3"
_BULB = "84F70312AB6C"
_IR_LIGHT = "02-202604121530-48813025"
_MOTION = "C01D4E5F6071"
_CONTACT = "C01D4E5F6072"
_LOCK = "C01D4E5F6073"
_KEYPAD = "C01D4E5F6074"
_ON_OFF = frozenset({"turnOn", "turnOff"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class SimSwitchDevice:
    """One physical device or infrared remote on the simulated account."""

    id: str
    name: str
    type: str  # deviceType, or remoteType for a remote
    commands: frozenset[str]
    hub_id: str = _NO_HUB
    remote: bool = False
    state: dict[str, Any] = field(default_factory=dict)  # the model-specific status keys

    def as_list_entry(self) -> dict[str, Any]:
        """The entry of ``deviceList`` or ``infraredRemoteList``."""
        kind = "remoteType" if self.remote else "deviceType"
        entry: dict[str, Any] = {"deviceId": self.id, "deviceName": self.name, kind: self.type}
        if not self.remote:
            entry["enableCloudService"] = True
        entry["hubDeviceId"] = self.hub_id
        return entry


@dataclass
class SimScene:
    """A manual scene and the commands it sends when run."""

    id: str
    name: str
    actions: list[tuple[str, str]] = field(default_factory=list)  # (device id, command)


@dataclass(frozen=True)
class Executed:
    """A scene run or a command accepted by the sim, with its monotonic arrival time."""

    kind: str  # "scene" or "command"
    target_id: str
    name: str
    received_at: float
    command: str = ""
    parameter: Any = None
    command_type: str = ""


@dataclass(frozen=True)
class Call:
    """One request as the sim saw it (authorized or not)."""

    method: str
    path: str
    status: int  # the HTTP status answered


@dataclass
class Faults:
    """Switches that make the simulated service misbehave the way the real one can."""

    offline: set[str] = field(default_factory=set)  # device ids answering statusCode 161
    hubs_offline: set[str] = field(default_factory=set)  # hub ids: devices behind answer 171
    system_errors: int = 0  # the next N device or scene calls answer statusCode 190
    server_errors: int = 0  # the next N requests get HTTP 500
    rate_limited: int = 0  # the next N requests get HTTP 429
    daily_limit: int | None = None  # calls per UTC day; beyond it HTTP 401, like the real API
    delay: float = 0.0  # seconds added before every answer

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        out = asdict(self)
        out["offline"] = sorted(self.offline)
        out["hubs_offline"] = sorted(self.hubs_offline)
        return out


def default_devices() -> list[SimSwitchDevice]:
    """A Hub Mini, the Bot behind it, a Plug Mini, a Color Bulb, an infrared light, and a
    motion sensor, a contact sensor, a lock and a keypad that send webhook events."""
    return [
        SimSwitchDevice(_HUB, "Hallway Hub", "Hub Mini", frozenset()),
        SimSwitchDevice(
            _BOT,
            "Porch Light Bot",
            "Bot",
            _ON_OFF | {"press"},
            hub_id=_HUB,
            state={"power": "off", "battery": 92, "deviceMode": "switchMode"},
        ),
        SimSwitchDevice(
            _PLUG,
            "Porch Plug",
            "Plug Mini (US)",
            _ON_OFF | {"toggle"},
            state={"power": "off", "voltage": 120.1, "weight": 0, "electricCurrent": 0},
        ),
        SimSwitchDevice(
            _BULB,
            "Hallway Bulb",
            "Color Bulb",
            _ON_OFF | {"toggle", "setBrightness", "setColor"},
            state={"power": "off", "brightness": 100, "color": "255:255:255"},
        ),
        SimSwitchDevice(
            _IR_LIGHT,
            "Entry Light",
            "Light",
            _ON_OFF | {"brightnessUp", "brightnessDown"},
            hub_id=_HUB,
            remote=True,
        ),
        # Devices that send webhook events (see bridge.sim.switchbot_events).
        SimSwitchDevice(_MOTION, "Path Sensor", "Motion Sensor", frozenset(), hub_id=_HUB),
        SimSwitchDevice(_CONTACT, "Front Door Contact", "Contact Sensor", frozenset(), hub_id=_HUB),
        SimSwitchDevice(
            _LOCK, "Front Door Lock", "Smart Lock", frozenset({"lock", "unlock"}), hub_id=_HUB
        ),
        SimSwitchDevice(_KEYPAD, "Front Door Keypad", "Keypad", frozenset(), hub_id=_HUB),
    ]


def default_scenes() -> list[SimScene]:
    """ "Porch light on" and "All off"."""
    return [
        SimScene("T02-202604121530-11112222", "Porch light on", [(_BOT, "turnOn")]),
        SimScene(
            "T02-202604121531-33334444",
            "All off",
            [(_BOT, "turnOff"), (_PLUG, "turnOff"), (_BULB, "turnOff")],
        ),
    ]


def _answer(status_code: int, body: Any = None, message: str = "success") -> web.Response:
    payload = {"statusCode": status_code, "body": {} if body is None else body, "message": message}
    return web.json_response(payload)


def _bare(http_status: int, message: str) -> web.Response:
    # The API gateway in front of the real service answers these without the envelope.
    return web.json_response({"message": message}, status=http_status)


class SimSwitchBot:
    """State and HTTP handlers of the simulated SwitchBot service."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        secret: str = DEFAULT_SECRET,
        devices: list[SimSwitchDevice] | None = None,
        scenes: list[SimScene] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.secret = secret
        self.clock = clock
        self.devices = {d.id: d for d in (devices if devices is not None else default_devices())}
        self.scenes = {s.id: s for s in (scenes if scenes is not None else default_scenes())}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.sent_events: list[dict[str, Any]] = []  # webhook bodies sent, for tests
        self.faults = Faults()
        self.executed: list[Executed] = []
        self.calls: list[Call] = []
        self._changed = asyncio.Event()
        self._nonces: dict[str, int] = {}  # nonce -> t, to refuse a replayed request
        self._day = ""
        self._today = 0  # authorized calls on self._day

    # -- app -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application: API under ``/v1.1``, control under ``/_sim``."""
        app = web.Application(middlewares=[self._record_mw, self._auth_mw])
        p = _API
        app.add_routes(
            [
                web.get(p + "/devices", self._devices),
                web.get(p + "/devices/{device_id}/status", self._status),
                web.post(p + "/devices/{device_id}/commands", self._command),
                web.get(p + "/scenes", self._scenes),
                web.post(p + "/scenes/{scene_id}/execute", self._execute),
                web.post(p + "/webhook/{action}", self._webhook),
                web.get("/_sim/faults", self._get_faults),
                web.post("/_sim/faults", self._set_faults),
                web.get("/_sim/executed", self._get_executed),
                web.post("/_sim/event", self._post_event),
            ]
        )
        return app

    def calls_to(self, path_end: str) -> int:
        """How many requests (any outcome) reached a path ending with ``path_end``."""
        return sum(1 for call in self.calls if call.path.endswith(path_end))

    async def wait_executed(self, count: int = 1, timeout: float = 5.0) -> list[Executed]:
        """Wait until at least ``count`` scenes or commands have run; return the first ones."""
        async with asyncio.timeout(timeout):
            while len(self.executed) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.executed[:count]

    def _ran(self, entry: Executed) -> None:
        self.executed.append(entry)
        self._changed.set()

    # -- middlewares ---------------------------------------------------------------------------

    @web.middleware
    async def _record_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as err:
            response = err
        if _is_api(request):
            self.calls.append(Call(request.method, request.path, response.status))
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_api(request):
            return await handler(request)  # control routes are not signed
        if not self._signed(request):
            return _bare(401, "Unauthorized")
        if self._over_daily_limit():
            return _bare(401, "Unauthorized")
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        if self.faults.server_errors > 0:
            self.faults.server_errors -= 1
            return _bare(500, "Internal server error")
        if self.faults.rate_limited > 0:
            self.faults.rate_limited -= 1
            return _bare(429, "Too Many Requests")
        return await handler(request)

    def _signed(self, request: web.Request) -> bool:
        token = request.headers.get("Authorization", "")
        t = request.headers.get("t", "")
        nonce = request.headers.get("nonce", "")
        given = request.headers.get("sign", "")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return False
        if len(t) != 13 or not t.isdigit() or not nonce:
            return False
        now = int(self.clock() * 1000)
        if abs(int(t) - now) > T_WINDOW_MS:
            return False
        mac = hmac.new(self.secret.encode(), f"{token}{t}{nonce}".encode(), hashlib.sha256)
        if not hmac.compare_digest(given.encode(), base64.b64encode(mac.digest())):
            return False
        # A nonce seen within the window means a replayed request. Stricter than anything the
        # real API documents, on purpose: it proves the client signs every try afresh.
        self._nonces = {n: seen for n, seen in self._nonces.items() if now - seen <= T_WINDOW_MS}
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = int(t)
        return True

    def _over_daily_limit(self) -> bool:
        day = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")
        if day != self._day:
            self._day, self._today = day, 0
        self._today += 1
        return self.faults.daily_limit is not None and self._today > self.faults.daily_limit

    def _device_fault(self, device: SimSwitchDevice) -> web.Response | None:
        if self.faults.system_errors > 0:
            self.faults.system_errors -= 1
            return _answer(190, message="System error")
        if device.hub_id in self.faults.hubs_offline:
            return _answer(171, message="hub device is offline")
        if device.id in self.faults.offline:
            return _answer(161, message="device offline")
        return None

    # -- devices -------------------------------------------------------------------------------

    async def _devices(self, request: web.Request) -> web.Response:
        physical = [d.as_list_entry() for d in self.devices.values() if not d.remote]
        remotes = [d.as_list_entry() for d in self.devices.values() if d.remote]
        return _answer(100, {"deviceList": physical, "infraredRemoteList": remotes})

    async def _status(self, request: web.Request) -> web.Response:
        device = self.devices.get(request.match_info["device_id"])
        if device is None:
            return _answer(152, message="device not found")
        if device.remote:
            return _answer(151, message="device type error")
        fault = self._device_fault(device)
        if fault is not None:
            return fault
        base = {"deviceId": device.id, "deviceType": device.type, "hubDeviceId": device.hub_id}
        return _answer(100, {**base, **device.state})

    async def _command(self, request: web.Request) -> web.Response:
        device = self.devices.get(request.match_info["device_id"])
        if device is None:
            return _answer(152, message="device not found")
        body = await _json_body(request)
        if body is None or not isinstance(body.get("command"), str):
            return _answer(190, message="wrong parameters")
        command, parameter = body["command"], body.get("parameter", "default")
        command_type = body.get("commandType", "command")
        if command_type != "command" or command not in device.commands:
            return _answer(160, message="command is not supported")
        fault = self._device_fault(device)
        if fault is not None:
            return fault
        if not _apply(device, command, parameter):
            return _answer(190, message="wrong parameters")
        entry = Executed(
            "command",
            device.id,
            device.name,
            time.monotonic(),
            command=command,
            parameter=parameter,
            command_type=command_type,
        )
        self._ran(entry)
        return _answer(100)

    # -- scenes --------------------------------------------------------------------------------

    async def _scenes(self, request: web.Request) -> web.Response:
        return _answer(100, [{"sceneId": s.id, "sceneName": s.name} for s in self.scenes.values()])

    async def _execute(self, request: web.Request) -> web.Response:
        scene = self.scenes.get(request.match_info["scene_id"])
        if scene is None:
            # Undocumented; the closest documented code for "no such scene".
            return _answer(190, message="scene not found")
        if self.faults.system_errors > 0:
            self.faults.system_errors -= 1
            return _answer(190, message="System error")
        arrived = time.monotonic()
        for device_id, command in scene.actions:
            device = self.devices.get(device_id)
            if device is not None and self._device_fault(device) is None:
                _apply(device, command, "default")
        self._ran(Executed("scene", scene.id, scene.name, arrived))
        return _answer(100)

    # -- webhooks ------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        body = await _json_body(request) or {}
        now = int(self.clock() * 1000)
        if action == "setupWebhook" and body.get("action") == action:
            url = body.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                return _answer(190, message="url must be an http(s) URL")
            device_list = body.get("deviceList", "ALL")
            self.webhooks[url] = {
                "url": url,
                "deviceList": device_list,
                "enable": True,
                "createTime": now,
                "lastUpdateTime": now,
            }
            return _answer(100, message="")
        if action == "queryWebhook" and body.get("action") == "queryUrl":
            return _answer(100, {"urls": list(self.webhooks)}, message="")
        if action == "queryWebhook" and body.get("action") == "queryDetails":
            urls = body.get("urls")
            wanted = [u for u in urls if isinstance(u, str)] if isinstance(urls, list) else []
            rows = [dict(self.webhooks[u]) for u in wanted if u in self.webhooks]
            return _answer(100, rows, message="")
        if action == "updateWebhook" and body.get("action") == action:
            config = body.get("config")
            config = config if isinstance(config, dict) else {}
            hook = self.webhooks.get(str(config.get("url", "")))
            if hook is None:
                return _answer(190, message="webhook not found")
            hook["enable"] = bool(config.get("enable", hook["enable"]))
            hook["lastUpdateTime"] = now
            return _answer(100, message="")
        if action == "deleteWebhook" and body.get("action") == action:
            if self.webhooks.pop(str(body.get("url", "")), None) is None:
                return _answer(190, message="webhook not found")
            return _answer(100, message="")
        return _answer(190, message="wrong parameters")

    async def send_event(self, event: str, device: str | None = None) -> list[Delivery]:
        """Post ``event`` (a key of ``SIM_EVENTS``: motion, open, unlocked, ...) from ``device``
        (name or id; default the first of its kind) to every enabled webhook; ValueError for
        an unknown event or device."""
        event = ALIASES.get(event, event)
        if event not in SIM_EVENTS:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(SIM_EVENTS)}")
        kind = SIM_EVENTS[event][0]
        found = [
            d
            for d in self.devices.values()
            if d.type == kind and (device is None or device in (d.id, d.name))
        ]
        if not found:
            raise ValueError(f"no {kind} named {device!r}" if device else f"no {kind}")
        urls = [url for url, hook in self.webhooks.items() if hook.get("enable")]
        body = webhook_body(event, found[0].id, now=self.clock())
        self.sent_events.append(body)
        return await deliver(urls, body)

    # -- control -------------------------------------------------------------------------------

    async def _post_event(self, request: web.Request) -> web.Response:
        body = await _json_body(request) or {}
        event, device = body.get("event"), body.get("device")
        if not isinstance(event, str) or not (device is None or isinstance(device, str)):
            return web.json_response({"error": "give event (and device) as strings"}, status=400)
        try:
            deliveries = await self.send_event(event, device)
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response(
            {"sent": [{"url": url, "status": status} for url, status in deliveries]}
        )

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_dict())

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await _json_body(request) or {}
        for key, value in body.items():
            if not hasattr(self.faults, key):
                return web.json_response({"error": f"unknown fault {key!r}"}, status=400)
            setattr(self.faults, key, set(value) if key in ("offline", "hubs_offline") else value)
        return web.json_response(self.faults.as_dict())

    async def _get_executed(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(e) for e in self.executed])


def _is_api(request: web.Request) -> bool:
    # A substring test, so the app also works mounted under a prefix (add_subapp) next to the
    # simulated SkyBell cloud in a standalone simulator.
    return f"{_API}/" in request.path


def _apply(device: SimSwitchDevice, command: str, parameter: Any) -> bool:
    """Change the device's state as the command would; False for a malformed parameter."""
    state = device.state
    if command in ("turnOn", "turnOff"):
        state["power"] = "on" if command == "turnOn" else "off"
    elif command == "toggle":
        state["power"] = "off" if state.get("power") == "on" else "on"
    elif command == "setBrightness":
        level = _int(parameter)
        if level is None or not 1 <= level <= 100:
            return False
        state["brightness"] = level
    elif command == "setColor":
        parts = [_int(p) for p in str(parameter).split(":")]
        if len(parts) != 3 or any(p is None or not 0 <= p <= 255 for p in parts):
            return False
        state["color"] = str(parameter)
    return True


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    if not request.can_read_body:
        return None
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
