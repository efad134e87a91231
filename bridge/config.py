"""Settings: frozen dataclasses read from one TOML file, each key overridable by environment.

Each section is a frozen dataclass and each field a key. Sections that configure a package are
that package's own options (``[record]`` is ``bridge.record.options.RecordOptions``, the very
object the recorder takes); the rest are defined here. The loader is generic, driven by each
field's type and metadata (``bridge.options``: ``bounds``, and ``INTERNAL`` for tuning values
that are not keys), so adding a key is adding a field, and its line in bridge.example.toml.
This module imports only the packages' options modules, never code that runs. For a key
``port`` in section ``server``:

- TOML: ``[server]`` ``port = 8554``
- env:  ``SKYBELL_BRIDGE_SERVER_PORT=8554`` (wins over the file)
- a ``Secret`` key also reads a file: ``password_file = "/run/secrets/pw"`` in TOML, or
  ``SKYBELL_BRIDGE_SKYBELL_PASSWORD_FILE``. Secrets never come from the command line.

Everything is validated once, at start; the first problem raises ``ConfigError`` naming the key,
the accepted values and where the bad value came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bridge.automation.rules import Rule, parse_rules
from bridge.errors import ConfigError
from bridge.events.options import EventOptions
from bridge.hls.options import HlsOptions
from bridge.media.options import StreamOptions
from bridge.mjpeg.options import MjpegOptions
from bridge.mqtt.options import MqttOptions
from bridge.mqtt.options import problems as mqtt_problems
from bridge.options import bounds, config_fields
from bridge.publish.options import PublishTarget, parse_publish
from bridge.record.options import RecordOptions, S3Options
from bridge.redact import Secret
from bridge.talk.options import TalkOptions
from bridge.webrtc.options import WebRtcOptions

__all__ = ["ENV_CONFIG", "ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "SKYBELL_BRIDGE_"
ENV_CONFIG = "SKYBELL_BRIDGE_CONFIG"
DEFAULT_API_URL = "https://api.skybell.network/api/v5"
# An S3 key prefix and an MQTT topic level: nothing that needs escaping in either.
_INSTANCE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
RtspAuth = Literal["digest", "basic", "any"]
RtspAudio = Literal["aac", "passthrough"]


@dataclass(frozen=True)
class SkyBellSettings:
    """How to reach and authenticate to the SkyBell cloud."""

    api_url: str = DEFAULT_API_URL
    api_key: Secret | None = None
    email: str = ""
    password: Secret | None = None
    # Sent as x-skybell-app with JWT auth; the cloud may refuse requests without it.
    app_version: str = "2.9.1"
    # Longer than the cloud's own 30 s device wait, so a 599 arrives before we give up.
    timeout: float = field(default=35.0, metadata=bounds(1, 300))
    # This bridge's share of the account's doorbells (names, stream names or ids), when several
    # bridges split one account; empty: every doorbell. Env: comma-separated.
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class BridgeSettings:
    """Which bridge this is, when several serve one account."""

    # Goes into S3 clip keys and MQTT topics and ids, so instances never collide; empty: the
    # only bridge. Lowercase letters, digits and dashes.
    instance: str = ""


@dataclass(frozen=True)
class ServerSettings:
    """Where the bridge listens, and who may use it."""

    host: str = "127.0.0.1"
    port: int = field(default=1984, metadata=bounds(0, 65535))
    rtsp_host: str = "127.0.0.1"
    rtsp_port: int = field(default=8554, metadata=bounds(0, 65535))
    username: str = ""
    password: Secret | None = None
    # Prometheus sends `Authorization: Bearer <token>`: this token grants GET /metrics (and
    # nothing else) without the password, so a scraper's config never holds the password.
    metrics_token: Secret | None = None
    # "any" offers Digest and Basic; some NVRs only speak one of them.
    rtsp_auth: RtspAuth = "any"
    # AAC is what Frigate and most NVRs can record; passthrough keeps G.711 as the doorbell sends it.
    rtsp_audio: RtspAudio = "aac"
    # Without a password the bridge refuses to listen beyond loopback, unless this says the
    # user really wants live video and clip deletion open to the whole LAN.
    allow_lan_without_password: bool = False
    # Comma-separated extra names the Host header may carry; "*" turns the check off. Always
    # allowed: loopback names, the bound host, this machine's name (and NAME.local), and any IP
    # literal (DNS rebinding needs a name the attacker controls). Other Hosts get 421.
    allowed_hosts: str = ""
    # Comma-separated proxy addresses whose X-Forwarded-For is believed (for rate limiting).
    trusted_proxies: str = ""
    # Connection limits shared by HTTP and RTSP: a client that has not sent a whole request (or
    # authenticated) within header_timeout is closed; caps overall and per client address.
    header_timeout: float = field(default=10.0, metadata=bounds(1, 300))
    max_connections: int = field(default=512, metadata=bounds(8, 100_000))
    max_connections_per_client: int = field(default=64, metadata=bounds(1, 100_000))
    # UDP transport sessions one RTSP connection may set up (each holds two sockets).
    rtsp_max_udp_sessions: int = field(default=4, metadata=bounds(1, 64))


@dataclass(frozen=True)
class StorageSettings:
    """Where clips and the index live."""

    clips_dir: Path = Path("clips")


@dataclass(frozen=True)
class ArchiveSettings:
    """Downloading SkyBell's own recordings into the clips folder."""

    # Also on a vready event (the cloud finished a recording), whatever the interval.
    enabled: bool = False
    sync_interval: float = field(default=900.0, metadata=bounds(60, 86400))
    since_days: float = field(default=1.0, metadata=bounds(0.01, 90))  # each sync looks back


@dataclass(frozen=True)
class SwitchBotSettings:
    """The SwitchBot account that rules drive (API v1.1)."""

    token: Secret | None = None
    secret: Secret | None = None
    api_url: str = "https://api.switch-bot.com"
    # SwitchBot allows 10,000 calls a day per token; other apps on the token share it.
    daily_limit: int = field(default=10_000, metadata=bounds(1, 1_000_000))
    # Where the day's call count is kept across restarts (default: beside the clips index).
    budget_path: Path | None = None
    # The random path part of the webhook URL SwitchBot calls (it signs nothing, so this is the
    # credential); `switchbot webhook add` makes one to paste here when it is unset.
    webhook_token: Secret | None = None

    @property
    def configured(self) -> bool:
        """True when both the token and the secret are set."""
        return self.token is not None and self.secret is not None


@dataclass(frozen=True)
class LogSettings:
    """Log format and verbosity."""

    format: LogFormat = "text"
    level: LogLevel = "info"


@dataclass(frozen=True)
class Settings:
    """All settings; one attribute per TOML section."""

    skybell: SkyBellSettings = field(default_factory=SkyBellSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    streams: StreamOptions = field(default_factory=StreamOptions)
    hls: HlsOptions = field(default_factory=HlsOptions)
    mjpeg: MjpegOptions = field(default_factory=MjpegOptions)
    webrtc: WebRtcOptions = field(default_factory=WebRtcOptions)
    storage: StorageSettings = field(default_factory=StorageSettings)
    events: EventOptions = field(default_factory=EventOptions)
    record: RecordOptions = field(default_factory=RecordOptions)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    s3: S3Options = field(default_factory=S3Options)
    switchbot: SwitchBotSettings = field(default_factory=SwitchBotSettings)
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    talk: TalkOptions = field(default_factory=TalkOptions)
    # [[rules]] tables: events -> actions (see bridge.automation.rules); TOML only.
    rules: tuple[Rule, ...] = ()
    # [[publish]] tables: streams pushed to media servers (see bridge.publish); TOML only.
    publish: tuple[PublishTarget, ...] = ()
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def has_credentials(self) -> bool:
        """True when an API key or an email and password are configured."""
        sb = self.skybell
        return bool(sb.api_key) or bool(sb.email and sb.password)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate, and return Settings."""
    env = os.environ if env is None else env
    if path is None and env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(Path(path))
    # Rules are an array of tables, not a section: their own parser checks them.
    base = Path(path).parent if path is not None else None  # say = "x.wav" is read from there
    rules = tuple(parse_rules(data.pop("rules", None), base=base))
    sections: dict[str, Any] = {"rules": rules}
    sections["publish"] = tuple(parse_publish(data.pop("publish", None)))
    hints = typing.get_type_hints(Settings)
    known = {f.name for f in dataclasses.fields(Settings)}
    for name in data:
        if name not in known:
            raise ConfigError(
                name, f"unknown section; accepted sections: {', '.join(sorted(known))}"
            )
    for f in dataclasses.fields(Settings):
        if f.name in ("rules", "publish"):
            continue
        raw = data.get(f.name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f.name, "must be a table ([section])")
        sections[f.name] = _load_section(f.name, hints[f.name], raw, env)
    settings = Settings(**sections)
    _check_cross_field(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config file", f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("config file", f"{path} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        # TOML is UTF-8 by definition; a file saved as Latin-1 or UTF-16 lands here.
        raise ConfigError(
            "config file", f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise ConfigError("config file", f"{path} cannot be read: {err.strerror}") from None


def _load_section(section: str, cls: type[Any], raw: dict[str, Any], env: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in config_fields(cls)}
    for key in raw:
        base = key.removesuffix("_file")
        if key not in fields and not (base in fields and _is_secret(hints[base])):
            accepted = ", ".join(sorted(fields))
            raise ConfigError(f"{section}.{key}", f"unknown key; accepted keys: {accepted}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        dotted = f"{section}.{name}"
        env_name = f"{ENV_PREFIX}{section}_{name}".upper()
        typ = hints[name]
        table = _table_of(typ)
        if table is not None:
            if name in raw:
                values[name] = _load_table(dotted, table, raw[name])
            continue
        if env_name in env:
            value, origin = env[env_name], f"environment variable {env_name}"
        elif _is_secret(typ) and env.get(env_name + "_FILE"):
            value, origin = _read_secret_file(dotted, env[env_name + "_FILE"]), env_name + "_FILE"
        elif name in raw:
            value, origin = raw[name], "config file"
        elif _is_secret(typ) and raw.get(f"{name}_file"):  # "" is unset, as in the env
            value, origin = _read_secret_file(dotted, str(raw[f"{name}_file"])), f"{name}_file"
        else:
            continue
        values[name] = _convert(dotted, typ, value, origin, f.metadata)
    return cls(**values)


def _table_of(typ: Any) -> type[Any] | None:
    """The dataclass X when ``typ`` is ``dict[str, X]`` (a table of sub-tables), else None."""
    if typing.get_origin(typ) is dict:
        value_type = typing.get_args(typ)[1]
        if dataclasses.is_dataclass(value_type):
            return value_type  # type: ignore[return-value]
    return None


def _load_table(key: str, cls: type[Any], raw: Any) -> dict[str, Any]:
    # Sub-tables come from the file only: environment variables name flat keys.
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(key, f"expected tables like [{key}.NAME]")
    return {name: _load_section(f"{key}.{name}", cls, sub, {}) for name, sub in raw.items()}


def _is_secret(typ: Any) -> bool:
    return Secret in typing.get_args(typ) or typ is Secret


def _read_secret_file(key: str, path: str) -> str:
    # A path with a newline or other control character is shown quoted: the error stays one line.
    shown = path if path.isprintable() else repr(path)
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(key, f"secret file {shown} cannot be read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(key, f"secret file {shown} is not UTF-8 text") from None


def _convert(key: str, typ: Any, value: Any, origin: str, meta: Mapping[str, Any]) -> Any:
    from_env = isinstance(value, str) and origin.startswith("environment")
    origin_note = f" (from {origin})"
    shown = "***" if _is_secret(typ) else repr(value)

    def fail(expected: str) -> ConfigError:
        return ConfigError(key, f"expected {expected}, got {shown}{origin_note}")

    args = typing.get_args(typ)
    if isinstance(typ, types.UnionType) and type(None) in args:
        if value == "" and from_env:
            return None
        typ = next(a for a in args if a is not type(None))
    origin_type = typing.get_origin(typ)
    if origin_type is Literal:
        if value not in args:
            raise fail("one of " + ", ".join(map(str, args)))
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if from_env and text in {"1", "true", "yes", "on"}:
            return True
        if from_env and text in {"0", "false", "no", "off"}:
            return False
        raise fail("true or false")
    if typ in (int, float):
        try:
            number = typ(value) if from_env else value
        except ValueError:
            raise fail(_describe_number(typ, meta)) from None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise fail(_describe_number(typ, meta))
        if not math.isfinite(number):
            # NaN passes every range comparison and infinity overflows timers and dates:
            # "never sleep" or "keep forever" must be spelled as a number.
            raise fail(_describe_number(typ, meta) + " (not NaN or infinity)")
        if typ is int and not isinstance(number, int):
            raise fail(_describe_number(typ, meta))
        lo, hi = meta.get("range", (None, None))
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise fail(_describe_number(typ, meta))
        return typ(number)
    if typ is str:
        if not isinstance(value, str) or not _is_clean_text(value):
            raise fail("a string")
        return value
    if typ == tuple[str, ...]:
        # A TOML array of strings, or comma-separated in an environment variable.
        items = [v.strip() for v in value.split(",") if v.strip()] if from_env else value
        if not isinstance(items, list) or not all(
            isinstance(v, str) and v and _is_clean_text(v) for v in items
        ):
            raise fail("a list of non-empty strings")
        return tuple(v for v in items if v)
    if typ is Secret:
        if not isinstance(value, str) or not _is_clean_text(value):
            raise fail("a string")
        # Empty is unset, never "auth off": the listen checks treat both as no password.
        return Secret(value) if value else None
    if typ is Path:
        if not isinstance(value, str) or not value or not _is_clean_text(value):
            raise fail("a path")
        try:
            return Path(value).expanduser()
        except RuntimeError:  # "~name" for a user this system does not have
            raise fail("a path (~ names no user here)") from None
    raise TypeError(f"config: no converter for {typ!r} ({key})")


def _is_clean_text(value: str) -> bool:
    # A NUL cannot reach a socket or a path, and a lone surrogate (undecodable bytes in an
    # environment variable) fails later, far from the key that carried it.
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe_number(typ: type, meta: Mapping[str, Any]) -> str:
    kind = "an integer" if typ is int else "a number"
    lo, hi = meta.get("range", (None, None))
    if lo is not None and hi is not None:
        return f"{kind} from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"{kind} of at least {_num(lo)}"
    return kind


def _num(bound: float) -> str:
    # 10000000, not 1e+07: the bound is read by someone about to type a value.
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _check_cross_field(settings: Settings) -> None:
    sb = settings.skybell
    if not sb.api_url.startswith(("http://", "https://")):
        raise ConfigError(
            "skybell.api_url", f"expected an http:// or https:// URL, got {sb.api_url!r}"
        )
    if bool(sb.email) != bool(sb.password) and not sb.api_key:
        missing = "skybell.password" if sb.email else "skybell.email"
        raise ConfigError(
            missing, "email and password go together; set both, or set skybell.api_key"
        )
    if settings.bridge.instance and not _INSTANCE.fullmatch(settings.bridge.instance):
        raise ConfigError(
            "bridge.instance",
            f"expected lowercase letters, digits and dashes, got {settings.bridge.instance!r}",
        )
    hls = settings.hls
    if hls.part_target > hls.segment_target / 2:
        raise ConfigError(
            "hls.part_target",
            f"must be at most half of hls.segment_target ({hls.segment_target:g} s)",
        )
    rec, buffered = settings.record, settings.streams.buffer_seconds
    gop = settings.streams.keyframe_interval
    prerolls = [("record.preroll", rec.preroll)] + [
        (f"record.devices.{name}.preroll", d.preroll)
        for name, d in rec.devices.items()
        if d.preroll is not None
    ]
    for key, preroll in prerolls:
        # Pre-roll starts at a keyframe, so the buffer must reach a GOP further back.
        if preroll + gop > buffered:
            raise ConfigError(
                key,
                f"{preroll:g} s needs streams.buffer_seconds of at least {preroll + gop:g} "
                f"(pre-roll + streams.keyframe_interval; now {buffered:g})",
            )
    if settings.s3.enabled and not settings.s3.bucket:
        raise ConfigError("s3.bucket", "s3.enabled is true, so a bucket is needed")
    sw = settings.switchbot
    if (sw.token is None) != (sw.secret is None):
        missing = "switchbot.secret" if sw.token else "switchbot.token"
        raise ConfigError(missing, "the SwitchBot token and secret go together; set both")
    if settings.mqtt.enabled:
        for key, reason in mqtt_problems(settings.mqtt):
            raise ConfigError(f"mqtt.{key}", reason)
    srv = settings.server
    if srv.password and not srv.username:
        raise ConfigError(
            "server.username", "a server.password is set, so a username is needed too"
        )
