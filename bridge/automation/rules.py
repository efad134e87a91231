"""Automation rules: which events, which doorbells, when, and what to do; parsed from TOML.

A rule is one ``[[rules]]`` table::

    [[rules]]
    name = "porch light at night"
    on = ["doorbell"]
    devices = ["front-door"]
    when = { after = "18:00", before = "07:00", timezone = "Europe/London" }
    cooldown = 60
    do = [{ scene = "Porch light on" }, { warm = 120 }]

``parse_rules`` checks every key once, at start, and raises ``ConfigError`` naming the first bad
one (``rules[0].do[1].scene``), so a typo stops the bridge with one line instead of a rule that
silently never fires.

SwitchBot events (``on = ["switchbot.motion"]``) fire rules too. Such an event happened at no
doorbell, so for it ``devices`` does not filter: it names the doorbells the doorbell actions
(record, warm, say, tone, led, stop_recording) act on, and is required when there are any.
``switchbot_devices`` (names or ids) narrows which SwitchBot devices fire the rule.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bridge.automation.audio_check import audio_seconds
from bridge.automation.switchbot_events import SWITCHBOT_EVENT_TYPES, is_switchbot_event
from bridge.automation.zones import parse_zone
from bridge.errors import ConfigError
from bridge.skybell.models import slugify
from bridge.skybell.payloads import EVENT_TYPES
from bridge.skybell.settings import SettingsError, validate_settings
from bridge.skybell.tones import TONES

if TYPE_CHECKING:  # matching reads an event's fields; the config loads rules without the bus
    from bridge.skybell.payloads import Event

__all__ = [
    "DOORBELL_ACTIONS",
    "Action",
    "ChimeAction",
    "CommandAction",
    "LedAction",
    "RecordAction",
    "Rule",
    "SayAction",
    "SceneAction",
    "StopRecordingAction",
    "TimeWindow",
    "ToneAction",
    "WarmAction",
    "WebhookAction",
    "parse_rules",
]

_RULE_KEYS = frozenset(
    {"name", "on", "devices", "switchbot_devices", "when", "cooldown", "do", "enabled"}
)
_MAX_LED = 3600.0  # an LED colour held longer than an hour is a setting, not an action
_MAX_SAY = 600.0  # seconds of audio a rule may play: ten minutes is no message
BROADCAST = "255.255.255.255"
_WHEN_KEYS = frozenset({"after", "before", "timezone"})
_MAX_WARM = 3600.0  # the hub keeps a call alive this long at most per request; longer is a typo
_METHODS = ("POST", "GET")


@dataclass(frozen=True)
class TimeWindow:
    """Wall-clock hours a rule is active; ``after`` > ``before`` means it spans midnight."""

    after: dtime | None = None  # None: from midnight
    before: dtime | None = None  # None: until midnight
    timezone: str | None = None  # None: the doorbell's own zone, else this machine's

    def contains(self, local: dtime) -> bool:
        """Whether a local wall time falls inside the window (``after`` inclusive)."""
        start = self.after or dtime(0, 0)
        if self.before is None:
            return local >= start
        if start <= self.before:
            return start <= local < self.before
        return local >= start or local < self.before


@dataclass(frozen=True)
class SceneAction:
    """Run a SwitchBot manual scene, named by name or id."""

    scene: str

    @property
    def label(self) -> str:
        """How results name this action."""
        return f"scene {self.scene}"


@dataclass(frozen=True)
class CommandAction:
    """Send one command to a SwitchBot device, named by name or id."""

    device: str
    command: str
    parameter: str | int | dict[str, Any] = "default"
    command_type: str = "command"

    @property
    def label(self) -> str:
        """How results name this action."""
        return f"{self.device} {self.command}"


@dataclass(frozen=True)
class RecordAction:
    """Start a clip of the doorbell, or extend the one being recorded."""

    @property
    def label(self) -> str:
        """How results name this action."""
        return "record"


@dataclass(frozen=True)
class WarmAction:
    """Keep the doorbell's live session running for ``seconds`` so viewers start instantly."""

    seconds: float

    @property
    def label(self) -> str:
        """How results name this action."""
        return f"warm {self.seconds:g} s"


@dataclass(frozen=True)
class WebhookAction:
    """Call a URL with the event as JSON (POST) or as query parameters (GET)."""

    url: str = field(repr=False)  # may carry a secret (Home Assistant webhook ids do)
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """Scheme, host and port only: the path and query may be the secret."""
        parts = urlsplit(self.url)
        return f"webhook {self.method} {parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True)
class SayAction:
    """Play an audio file to the visitor through the doorbell's speaker (the talk service)."""

    path: Path
    seconds: float  # the file's length, measured at start: the action's time limit grows by it

    @property
    def label(self) -> str:
        """How results name this action."""
        return f"say {self.path.name}"


@dataclass(frozen=True)
class ToneAction:
    """Play one of the doorbell's own tones through the cloud's play-tone call."""

    tone: str

    @property
    def label(self) -> str:
        """How results name this action."""
        return f"tone {self.tone}"


@dataclass(frozen=True)
class LedAction:
    """Set the doorbell's LED colour for ``seconds``, then put the previous colour back."""

    colour: str
    seconds: float

    @property
    def label(self) -> str:
        """How results name this action."""
        return f"led {self.colour} {self.seconds:g} s"


@dataclass(frozen=True)
class ChimeAction:
    """Broadcast the seed's button packet on the LAN, so SkyBell chimes ring."""

    address: str = BROADCAST
    port: int | None = None  # None: events.udp_port (where SkyBells listen: 5000)

    @property
    def label(self) -> str:
        """How results name this action."""
        return "chime udp"


@dataclass(frozen=True)
class StopRecordingAction:
    """End the doorbell's running clip now (its post-roll is not waited for)."""

    @property
    def label(self) -> str:
        """How results name this action."""
        return "stop recording"


Action = (
    SceneAction
    | CommandAction
    | RecordAction
    | WarmAction
    | WebhookAction
    | SayAction
    | ToneAction
    | LedAction
    | ChimeAction
    | StopRecordingAction
)
SWITCHBOT_ACTIONS = (SceneAction, CommandAction)
# Actions done to one doorbell: for a SwitchBot event, the rule's ``devices`` says which.
DOORBELL_ACTIONS = (
    RecordAction,
    WarmAction,
    SayAction,
    ToneAction,
    LedAction,
    StopRecordingAction,
)


@dataclass(frozen=True)
class Rule:
    """One automation: events it reacts to, where and when, and its actions."""

    name: str
    on: frozenset[str]
    actions: tuple[Action, ...]
    devices: tuple[str, ...] = ()  # stream names, device names or ids; empty means every doorbell
    when: TimeWindow | None = None
    cooldown: float = 0.0  # seconds between firings for one doorbell
    enabled: bool = True
    switchbot_devices: tuple[str, ...] = ()  # SwitchBot names or ids; empty: any of them

    def wants(self, event: Event) -> bool:
        """Type and doorbell match (the window and cooldown are the engine's business)."""
        if not self.enabled or event.type not in self.on:
            return False
        if is_switchbot_event(event.type):
            return self._wants_switchbot(event)
        if not self.devices:
            # "Every doorbell" means the account's: an id the cloud does not know (a webhook
            # naming some other device) only fires a rule that lists it explicitly.
            return event.known_device
        return any(d == event.device_id or slugify(d) == event.device for d in self.devices)

    def _wants_switchbot(self, event: Event) -> bool:
        if not self.switchbot_devices:
            return True
        name = event.payload.get("name")
        names = {event.device_id.upper()}
        if isinstance(name, str) and name:
            names |= {name.casefold(), slugify(name)}
        for wanted in self.switchbot_devices:
            wanted_id = wanted.replace(":", "").replace("-", "").upper()
            if wanted_id in names or wanted.casefold() in names or slugify(wanted) in names:
                return True
        return False

    @property
    def on_switchbot(self) -> bool:
        """Whether SwitchBot events fire the rule."""
        return any(is_switchbot_event(kind) for kind in self.on)

    @property
    def needs_switchbot(self) -> bool:
        """Whether any action talks to SwitchBot."""
        return any(isinstance(a, SWITCHBOT_ACTIONS) for a in self.actions)


# -- parsing -------------------------------------------------------------------------------------


def _keys(table: Any, allowed: frozenset[str], key: str) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(key, f"expected a table, got {type(table).__name__}")
    for name in table:
        if name not in allowed:
            raise ConfigError(
                f"{key}.{name}", f"unknown key; accepted keys: {', '.join(sorted(allowed))}"
            )
    return table


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, "expected a non-empty string")
    return value.strip()


def _texts(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(key, "expected a string or a list of strings")
    return tuple(_text(item, f"{key}[{i}]") for i, item in enumerate(value))


def _number(value: Any, key: str, low: float, high: float, *, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, "expected a number")
    if value < low or value > high or (open_low and value == low):
        bound = f"more than {low:g}" if open_low else f"at least {low:g}"
        raise ConfigError(key, f"must be {bound} and at most {high:g}, got {value:g}")
    return float(value)


def _clock_time(value: Any, key: str) -> dtime:
    # TOML has a local-time type (after = 18:00:00) that tomllib hands over as datetime.time.
    if isinstance(value, dtime):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        hours, sep, minutes = value.strip().partition(":")
        digits = sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
        if digits and int(hours) < 24 and int(minutes) < 60:
            return dtime(int(hours), int(minutes))
    raise ConfigError(key, f'expected a time "HH:MM" (00:00 to 23:59), got {value!r}')


def _zone(value: Any, key: str) -> str:
    text = _text(value, key)
    try:
        parse_zone(text)
    except ValueError:
        raise ConfigError(
            key, f"unknown time zone {text!r}; use a tz database name such as Europe/London"
        ) from None
    return text


def _window(raw: Any, key: str) -> TimeWindow:
    table = _keys(raw, _WHEN_KEYS, key)
    after = _clock_time(table["after"], f"{key}.after") if "after" in table else None
    before = _clock_time(table["before"], f"{key}.before") if "before" in table else None
    if after is None and before is None:
        raise ConfigError(key, "give after, before or both")
    if after is not None and after == before:
        raise ConfigError(f"{key}.before", "must differ from after (omit 'when' for all day)")
    zone = _zone(table["timezone"], f"{key}.timezone") if "timezone" in table else None
    return TimeWindow(after, before, zone)


def _parameter(value: Any, key: str) -> str | int | dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, str | int | dict):
        raise ConfigError(key, "expected a string, an integer or a table")
    return value


def _webhook(table: Mapping[str, Any], key: str) -> WebhookAction:
    url = _text(table["webhook"], f"{key}.webhook")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Only the scheme is named: the URL itself may hold a secret token.
        raise ConfigError(f"{key}.webhook", "expected an http:// or https:// URL with a host")
    method = _text(table.get("method", "POST"), f"{key}.method").upper()
    if method not in _METHODS:
        raise ConfigError(f"{key}.method", f"expected POST or GET, got {method!r}")
    headers = table.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"{key}.headers", "expected a table of strings")
    return WebhookAction(url, method, dict(headers))


def _say(value: Any, key: str, base: Path | None) -> SayAction:
    path = Path(_text(value, key)).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path  # relative to the config file, as a person writing it would read it
    if not path.is_file():
        raise ConfigError(key, f"no audio file at {path}")
    try:
        seconds = audio_seconds(path)
    except ValueError as err:
        raise ConfigError(key, f"{path} is not audio the bridge can play: {err}") from None
    if seconds > _MAX_SAY:
        raise ConfigError(key, f"{path} lasts {seconds:.0f} s; at most {_MAX_SAY:g} s")
    return SayAction(path, seconds)


def _led(table: Mapping[str, Any], key: str) -> LedAction:
    colour = table["led"]
    try:
        validate_settings({"led_color": colour})
    except SettingsError as err:
        raise ConfigError(f"{key}.led", err.reason) from None
    if "seconds" not in table:
        raise ConfigError(f"{key}.seconds", "how long the colour stays, e.g. seconds = 30")
    seconds = _number(table["seconds"], f"{key}.seconds", 0, _MAX_LED, open_low=True)
    return LedAction(str(colour).upper(), seconds)


def _chime(table: Mapping[str, Any], key: str) -> ChimeAction:
    if table["chime"] != "udp":
        raise ConfigError(f"{key}.chime", 'expected "udp" (the LAN button packet)')
    address = _text(table.get("address", BROADCAST), f"{key}.address")
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ConfigError(f"{key}.address", f"expected an IPv4 address, got {address!r}") from None
    port = table.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise ConfigError(f"{key}.port", "expected a port number, 1 to 65535")
    return ChimeAction(address, port)


_KINDS: dict[str, frozenset[str]] = {
    "scene": frozenset({"scene"}),
    "device": frozenset({"device", "command", "parameter", "command_type"}),
    "record": frozenset({"record"}),
    "warm": frozenset({"warm"}),
    "webhook": frozenset({"webhook", "method", "headers"}),
    "say": frozenset({"say"}),
    "tone": frozenset({"tone"}),
    "led": frozenset({"led", "seconds"}),
    "chime": frozenset({"chime", "address", "port"}),
    "stop_recording": frozenset({"stop_recording"}),
}


def _action(raw: Any, key: str, base: Path | None = None) -> Action:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, 'expected a table such as { scene = "Porch light on" }')
    kinds = [k for k in _KINDS if k in raw]
    if len(kinds) != 1:
        found = f"got {', '.join(kinds)}" if kinds else "found none"
        raise ConfigError(key, f"give exactly one of {', '.join(_KINDS)}; {found}")
    kind = kinds[0]
    table = _keys(raw, _KINDS[kind], key)
    if kind == "scene":
        return SceneAction(_text(table["scene"], f"{key}.scene"))
    if kind == "device":
        if "command" not in table:
            raise ConfigError(f"{key}.command", "a device action needs a command, e.g. turnOn")
        command_type = _text(table.get("command_type", "command"), f"{key}.command_type")
        if command_type not in ("command", "customize"):
            raise ConfigError(f"{key}.command_type", "expected command or customize")
        return CommandAction(
            _text(table["device"], f"{key}.device"),
            _text(table["command"], f"{key}.command"),
            _parameter(table.get("parameter", "default"), f"{key}.parameter"),
            command_type,
        )
    if kind == "record":
        if table["record"] is not True:
            raise ConfigError(f"{key}.record", "expected true (leave the action out otherwise)")
        return RecordAction()
    if kind == "warm":
        return WarmAction(_number(table["warm"], f"{key}.warm", 0, _MAX_WARM, open_low=True))
    if kind == "webhook":
        return _webhook(table, key)
    return _doorbell_action(kind, table, key, base)


def _doorbell_action(
    kind: str, table: Mapping[str, Any], key: str, base: Path | None
) -> SayAction | ToneAction | LedAction | ChimeAction | StopRecordingAction:
    if kind == "say":
        return _say(table["say"], f"{key}.say", base)
    if kind == "tone":
        tone = table["tone"]
        if tone not in TONES:
            raise ConfigError(f"{key}.tone", f"unknown tone {tone!r}; known: {', '.join(TONES)}")
        return ToneAction(tone)
    if kind == "led":
        return _led(table, key)
    if kind == "chime":
        return _chime(table, key)
    if table["stop_recording"] is not True:
        raise ConfigError(f"{key}.stop_recording", "expected true (leave the action out otherwise)")
    return StopRecordingAction()


def _rule(raw: Any, index: int, base: Path | None = None) -> Rule:
    key = f"rules[{index}]"
    table = _keys(raw, _RULE_KEYS, key)
    name = _text(table["name"], f"{key}.name") if "name" in table else f"rule {index + 1}"
    if "on" not in table:
        raise ConfigError(
            f"{key}.on", 'missing: which events fire the rule, e.g. on = ["doorbell"]'
        )
    on = _texts(table["on"], f"{key}.on")
    if not on:
        raise ConfigError(f"{key}.on", "give at least one event type")
    for i, kind in enumerate(on):
        if kind not in EVENT_TYPES and kind not in SWITCHBOT_EVENT_TYPES:
            known = ", ".join((*EVENT_TYPES, *SWITCHBOT_EVENT_TYPES))
            raise ConfigError(f"{key}.on[{i}]", f"unknown event {kind!r}; known: {known}")
    devices = _texts(table.get("devices", []), f"{key}.devices")
    switchbot_devices = _texts(table.get("switchbot_devices", []), f"{key}.switchbot_devices")
    from_switchbot = any(is_switchbot_event(kind) for kind in on)
    if switchbot_devices and not from_switchbot:
        raise ConfigError(
            f"{key}.switchbot_devices", "only for rules fired by switchbot.* events (see 'on')"
        )
    when = _window(table["when"], f"{key}.when") if "when" in table else None
    cooldown = _number(table.get("cooldown", 0), f"{key}.cooldown", 0, 86400)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{key}.enabled", "expected true or false")
    do = table.get("do")
    if not isinstance(do, list) or not do:
        raise ConfigError(f"{key}.do", "expected a non-empty list of actions")
    actions = tuple(_action(item, f"{key}.do[{i}]", base) for i, item in enumerate(do))
    if from_switchbot and not devices and any(isinstance(a, DOORBELL_ACTIONS) for a in actions):
        raise ConfigError(
            f"{key}.devices",
            "a SwitchBot event happens at no doorbell: name the doorbells its actions are for, "
            'e.g. devices = ["front-door"]',
        )
    return Rule(name, frozenset(on), actions, devices, when, cooldown, enabled, switchbot_devices)


def parse_rules(raw: Any, *, base: Path | None = None) -> list[Rule]:
    """Validate the ``[[rules]]`` array of tables; raises ConfigError naming the bad key.

    ``base`` is the config file's folder: relative ``say`` paths are read from there."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("rules", "expected an array of tables ([[rules]])")
    rules = [_rule(item, i, base) for i, item in enumerate(raw)]
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise ConfigError(
                f"rules[{i}].name", f"{rule.name!r} is already the name of rules[{seen[rule.name]}]"
            )
        seen[rule.name] = i
    return rules
