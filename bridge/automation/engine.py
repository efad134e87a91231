"""The rules engine: matches each new event against the rules and runs their actions.

The bus calls ``handle`` from its own task and waits for it, so ``handle`` only decides (type,
doorbell, time window, cooldown) and spawns one owned task per firing rule; the actions of a rule
then run concurrently, each under its own timeout. A failing or slow action never holds up the
other actions, other rules or the event pipeline; every outcome is written to the event log
(``event_results``) and logged.

Recording, keeping the stream warm and the HTTP session come in as callables and objects from the
caller: this package must not import the recorder, the config module or aiohttp.web.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, TypedDict, TypeVar

import aiohttp

from bridge.automation.budget import BudgetUsageDict
from bridge.automation.doorbell_actions import DoorbellActions
from bridge.automation.rules import (
    DOORBELL_ACTIONS,
    Action,
    ChimeAction,
    CommandAction,
    LedAction,
    RecordAction,
    Rule,
    SayAction,
    SceneAction,
    StopRecordingAction,
    ToneAction,
    WarmAction,
    WebhookAction,
)
from bridge.automation.switchbot import SwitchBotClient
from bridge.automation.switchbot_errors import DeviceOffline, HubOffline, SwitchBotError
from bridge.automation.switchbot_events import is_switchbot_event, normalise_mac
from bridge.automation.switchbot_models import (
    Scene,
    SwitchBotDevice,
    find_scene,
    find_switchbot_device,
)
from bridge.automation.zones import parse_zone
from bridge.errors import BridgeError
from bridge.events.bus import EventBus, Subscription
from bridge.events.log import EventLog
from bridge.redact import redact
from bridge.skybell.directory import DeviceDirectory
from bridge.skybell.models import slugify
from bridge.skybell.payloads import Event
from bridge.tasks import TaskSet

__all__ = [
    "ActionResult",
    "ActionResultDict",
    "AutomationStats",
    "ClipStarter",
    "OutcomeCounts",
    "RuleEngine",
    "RuleStats",
    "SkipCounts",
    "Warmer",
]

_LOGGER = logging.getLogger(__name__)

ClipStarter = Callable[[Event], Awaitable[str]]  # start/extend a clip; returns a detail line
Warmer = Callable[[Event, float], Awaitable[str]]  # keep the live session up N s; detail line
_T = TypeVar("_T", Scene, SwitchBotDevice)
_SAY_WAKE = 20.0  # the talk service's default wait for a sleeping doorbell's live call


class ActionResultDict(TypedDict):
    """What one action did, as ``/api/automation`` gives it."""

    action: str  # "<rule>: <action>"
    ok: bool
    detail: str


class SkipCounts(TypedDict):
    """Events a rule matched but did not act on."""

    window: int  # outside its hours
    cooldown: int  # within its cooldown


class OutcomeCounts(TypedDict):
    """A rule's finished actions since start, by outcome."""

    ok: int
    failed: int


class RuleStats(TypedDict):
    """One rule in ``/api/automation``: its settings, firings and last results."""

    name: str
    enabled: bool
    on: list[str]  # event types
    devices: list[str]  # empty: every doorbell
    actions: list[str]
    fired: int
    last_fired: str | None  # ISO 8601, UTC
    skipped: SkipCounts
    outcomes: OutcomeCounts
    last_results: list[ActionResultDict]


class AutomationStats(TypedDict):
    """The body of ``GET /api/automation``."""

    rules: list[RuleStats]
    running: int  # rule firings whose actions are still running
    switchbot: BudgetUsageDict | None  # None without a SwitchBot account


class _ActionFailed(Exception):
    """An action could not run; the message is the result's detail."""


@dataclass(frozen=True)
class ActionResult:
    """What one action did for one event."""

    action: str
    ok: bool
    detail: str

    def as_dict(self) -> ActionResultDict:
        """JSON-friendly view."""
        return {"action": self.action, "ok": self.ok, "detail": self.detail}


@dataclass
class _RuleState:
    rule: Rule
    fired: int = 0
    last_fired: float | None = None
    skipped_window: int = 0
    skipped_cooldown: int = 0
    actions_ok: int = 0
    actions_failed: int = 0
    last_results: list[ActionResult] = field(default_factory=list)
    last_by_device: dict[str, float] = field(default_factory=dict)  # device id -> clock()

    def as_dict(self) -> RuleStats:
        rule = self.rule
        return {
            "name": rule.name,
            "enabled": rule.enabled,
            "on": sorted(rule.on),
            "devices": list(rule.devices),
            "actions": [a.label for a in rule.actions],
            "fired": self.fired,
            "last_fired": _iso(self.last_fired),
            "skipped": {"window": self.skipped_window, "cooldown": self.skipped_cooldown},
            "outcomes": {"ok": self.actions_ok, "failed": self.actions_failed},
            "last_results": [r.as_dict() for r in self.last_results],
        }


class _Catalog:
    """SwitchBot scene and device ids by name: listed once, listed again on a miss.

    Names are resolved before the first event so a firing costs one API call (and one unit of
    the daily budget); a miss re-lists at most once per ``refresh_interval``, so a misspelt
    scene cannot spend the budget on every press.
    """

    def __init__(
        self, switchbot: SwitchBotClient, clock: Callable[[], float], refresh_interval: float
    ) -> None:
        self._switchbot = switchbot
        self._clock = clock
        self._interval = refresh_interval
        self._lists: dict[str, Sequence[Any]] = {}
        self._listed: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def scenes(self, *, fresh: bool = False) -> Sequence[Scene]:
        """The account's scenes (cached)."""
        return await self._list("scene", self._switchbot.scenes, fresh)

    async def devices(self, *, fresh: bool = False) -> Sequence[SwitchBotDevice]:
        """The account's devices and remotes (cached)."""
        return await self._list("device", self._switchbot.devices, fresh)

    async def _list(
        self, kind: str, fetch: Callable[[], Awaitable[list[_T]]], fresh: bool
    ) -> Sequence[_T]:
        async with self._lock:
            if fresh or kind not in self._lists:
                self._lists[kind] = await fetch()
                self._listed[kind] = self._clock()
            return self._lists[kind]

    async def scene_id(self, wanted: str) -> str:
        """The id of the scene named (or with id) ``wanted``."""
        return await self._resolve("scene", wanted, self.scenes, find_scene)

    async def device_id(self, wanted: str) -> str:
        """The id of the device named (or with id) ``wanted``."""
        return await self._resolve("device", wanted, self.devices, find_switchbot_device)

    async def device_name(self, device_id: str) -> str | None:
        """The name of the device with this id (upper-case hex, as ``normalise_mac`` gives)."""

        def find(devices: Sequence[SwitchBotDevice], wanted: str) -> SwitchBotDevice | None:
            return next((d for d in devices if normalise_mac(d.id) == wanted), None)

        try:
            found = await self._resolve("device", device_id, self.devices, find)
        except _ActionFailed:  # not on the account, even listed afresh
            return None
        return next((d.name for d in await self.devices() if d.id == found), None)

    async def _resolve(
        self,
        kind: str,
        wanted: str,
        listing: Callable[..., Awaitable[Sequence[_T]]],
        find: Callable[[Sequence[_T], str], _T | None],
    ) -> str:
        found = find(await listing(), wanted)
        if found is None and self._clock() - self._listed.get(kind, 0.0) >= self._interval:
            found = find(await listing(fresh=True), wanted)
        if found is None:
            raise _ActionFailed(f"no SwitchBot {kind} named {wanted!r} on the account")
        return found.id


class RuleEngine:
    """Runs the rules' actions for events from the bus."""

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        switchbot: SwitchBotClient | None,
        record: ClipStarter | None,
        warm: Warmer | None,
        http: aiohttp.ClientSession,
        log: EventLog | None,
        devices: DeviceDirectory | None = None,
        doorbell: DoorbellActions | None = None,
        clock: Callable[[], float] = time.time,
        action_timeout: float = 10.0,
        webhook_timeout: float = 5.0,
        offline_retries: int = 1,
        retry_delay: float = 2.0,
        refresh_interval: float = 60.0,
    ) -> None:
        self._states = [_RuleState(rule) for rule in rules]
        self._switchbot = switchbot
        self._record = record
        self._warm = warm
        self._http = http
        self._log = log
        self._devices = devices
        self._doorbell = doorbell or DoorbellActions()
        self._clock = clock
        self._action_timeout = action_timeout
        self._webhook_timeout = aiohttp.ClientTimeout(total=webhook_timeout)
        self._offline_retries = max(0, offline_retries)
        self._retry_delay = retry_delay
        self._catalog = (
            _Catalog(switchbot, clock, refresh_interval) if switchbot is not None else None
        )
        self._tasks = TaskSet()  # running actions: given a grace period on close
        self._sub: Subscription | None = None
        self._bad_zones: set[str] = set()
        self._closed = False

    @property
    def rules(self) -> list[Rule]:
        """The rules, in configuration order."""
        return [state.rule for state in self._states]

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable the rule named ``name`` until the bridge stops (the config file
        says what it is at the next start); False when no rule has that name."""
        for state in self._states:
            if state.rule.name == name:
                state.rule = dataclasses.replace(state.rule, enabled=enabled)
                return True
        return False

    # -- start -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Warn about rules that cannot work, and resolve SwitchBot names before any event."""
        for rule in self.rules:
            kinds = {type(a) for a in rule.actions}
            if rule.needs_switchbot and self._switchbot is None:
                _LOGGER.warning("rule %r uses SwitchBot, which is not configured", rule.name)
            if RecordAction in kinds and self._record is None:
                _LOGGER.warning("rule %r records, but recording is not available", rule.name)
            if WarmAction in kinds and self._warm is None:
                _LOGGER.warning("rule %r keeps streams warm, but no stream hub is set", rule.name)
            self._check_doorbells(rule)
        if self._catalog is not None:
            await self._check_names(self._catalog)

    def _check_doorbells(self, rule: Rule) -> None:
        if self._devices is None or not self._devices.devices:
            return
        known = self._devices.devices
        for wanted in rule.devices:
            if not any(wanted in (d.id, d.name) or d.slug == slugify(wanted) for d in known):
                _LOGGER.warning(
                    "rule %r names doorbell %r, which is not on the account (known: %s)",
                    rule.name,
                    wanted,
                    ", ".join(d.slug for d in known),
                )

    async def _check_names(self, catalog: _Catalog) -> None:
        scenes, devices = [], []
        for rule in self.rules:
            scenes += [(rule, a.scene) for a in rule.actions if isinstance(a, SceneAction)]
            devices += [(rule, a.device) for a in rule.actions if isinstance(a, CommandAction)]
            # A misspelt sensor would never fire the rule: say so at start, like a scene.
            devices += [(rule, name) for name in rule.switchbot_devices]
        if scenes:
            await _warn_missing("scene", scenes, catalog.scenes, find_scene)
        if devices:
            await _warn_missing("device", devices, catalog.devices, find_switchbot_device)

    def attach(self, bus: EventBus) -> Subscription:
        """Subscribe to new events on ``bus`` (merged duplicates never fire a rule twice)."""
        self._sub = bus.subscribe("rules", self.handle, max_queue=1024)
        return self._sub

    # -- events ----------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        """Decide which rules fire for ``event`` and start their actions; returns at once."""
        if self._closed:
            return
        now = self._clock()
        for state in self._states:
            rule = state.rule
            if not rule.wants(event):
                continue
            if rule.when is not None:
                local = datetime.fromtimestamp(now, self._zone(rule, event)).time()
                if not rule.when.contains(local):
                    state.skipped_window += 1
                    continue
            last = state.last_by_device.get(event.device_id)
            if rule.cooldown and last is not None and now - last < rule.cooldown:
                state.skipped_cooldown += 1
                _LOGGER.debug("rule %r cooling down for %s", rule.name, event.device)
                continue
            state.last_by_device[event.device_id] = now
            state.fired += 1
            state.last_fired = now
            self._tasks.spawn(self._fire(state, event), name=f"rule:{rule.name}")

    def _zone(self, rule: Rule, event: Event) -> tzinfo | None:
        """The rule's zone, else the doorbell's (SkyBell's time_zone setting), else local."""
        name = rule.when.timezone if rule.when is not None else None
        if name is None and self._devices is not None:
            device = self._devices.by_id.get(event.device_id)
            if device is not None:
                value = device.settings.get("time_zone") or device.raw.get("time_zone")
                name = value if isinstance(value, str) and value else None
        if name is None:
            return None  # fromtimestamp(..., None): this machine's local time
        try:
            return parse_zone(name)
        except ValueError:
            if name not in self._bad_zones:
                self._bad_zones.add(name)
                _LOGGER.warning(
                    "doorbell %s has an unreadable time zone %r; using local time",
                    event.device,
                    name,
                )
            return None

    async def _fire(self, state: _RuleState, event: Event) -> None:
        _LOGGER.info("rule %r fired by %s on %s", state.rule.name, event.type, event.device)
        results = await asyncio.gather(
            *(self._act(state.rule, a, event) for a in state.rule.actions)
        )
        state.last_results = list(results)
        ok = sum(1 for r in results if r.ok)
        state.actions_ok += ok
        state.actions_failed += len(results) - ok

    async def switchbot_name(self, device_id: str) -> str | None:
        """The account's name for a SwitchBot device id (as webhooks give it), from the cached
        device list (listed again for an unknown id at most once per refresh interval); None
        without SwitchBot, for an unknown id, or when the list cannot be had now."""
        if self._catalog is None:
            return None
        try:
            return await self._catalog.device_name(normalise_mac(device_id))
        except SwitchBotError as err:
            _LOGGER.debug("no SwitchBot device names: %s", err)
            return None

    async def _act(self, rule: Rule, action: Action, event: Event) -> ActionResult:
        label = f"{rule.name}: {action.label}"
        limit = self._action_timeout
        if isinstance(action, SayAction):
            # The file plays in real time, after the doorbell wakes (talk.wake_timeout).
            limit += action.seconds + _SAY_WAKE
        try:
            async with asyncio.timeout(limit):
                detail, ok = await self._do(rule, action, event), True
        except TimeoutError:
            detail, ok = f"no result within {limit:g} s", False
        except _ActionFailed as err:
            detail, ok = str(err), False
        except SwitchBotError as err:
            detail, ok = _switchbot_detail(err), False
        except BridgeError as err:
            detail, ok = str(err), False
        except Exception as err:  # a bug in a callable must not kill the rule's other actions
            _LOGGER.exception("rule %r: %s crashed", rule.name, action.label)
            detail, ok = f"{type(err).__name__}: {err}", False
        detail = redact(detail)
        log = _LOGGER.info if ok else _LOGGER.warning
        log("rule %r on %s: %s: %s", rule.name, event.device, action.label, detail)
        if self._log is not None:
            try:
                await self._log.add_result(event.id, label, ok, detail)
            except Exception as err:  # the log closing at shutdown, a full disk
                _LOGGER.warning("cannot log the result of %s: %s", label, err)
        return ActionResult(label, ok, detail)

    async def _do(self, rule: Rule, action: Action, event: Event) -> str:
        if isinstance(action, SceneAction | CommandAction):
            return await self._switchbot_action(action)
        if isinstance(action, DOORBELL_ACTIONS):
            targets = self._targets(rule, event)
            if len(targets) == 1:
                return await self._at_doorbell(action, targets[0])
            return await self._at_doorbells(action, targets)
        if isinstance(action, ChimeAction):
            if self._doorbell.chime is None:
                raise _ActionFailed("chimes are not available")
            return await self._doorbell.chime(action.address, action.port)
        return await self._webhook(rule, action, event)

    def _targets(self, rule: Rule, event: Event) -> list[Event]:
        """The doorbell(s) an action acts on: the event's own, or for a SwitchBot event (which
        happened at no doorbell) those the rule names, each as the event seen at that doorbell."""
        if not is_switchbot_event(event.type):
            return [event]
        known = self._devices.devices if self._devices is not None else []
        targets = []
        for wanted in rule.devices:
            found = next(
                (d for d in known if wanted in (d.id, d.name) or d.slug == slugify(wanted)), None
            )
            if found is None:
                raise _ActionFailed(f"no doorbell {wanted!r} on the account")
            targets.append(
                dataclasses.replace(event, device_id=found.id, device=found.slug, known_device=True)
            )
        return targets

    async def _at_doorbells(self, action: Action, targets: list[Event]) -> str:
        results = await asyncio.gather(
            *(self._at_doorbell(action, t) for t in targets), return_exceptions=True
        )
        lines, failed = [], False
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled: not an outcome
                failed = True
                result = str(result) or type(result).__name__
            lines.append(f"{target.device}: {result}")
        if failed:
            raise _ActionFailed("; ".join(lines))
        return "; ".join(lines)

    async def _at_doorbell(self, action: Action, event: Event) -> str:
        actions = self._doorbell
        if isinstance(action, RecordAction):
            if self._record is None:
                raise _ActionFailed("recording is not available")
            return await self._record(event)
        if isinstance(action, WarmAction):
            if self._warm is None:
                raise _ActionFailed("no stream hub to keep warm")
            return await self._warm(event, action.seconds)
        if isinstance(action, SayAction):
            if actions.say is None:
                raise _ActionFailed("talking to the doorbell is not available")
            return await actions.say(event, action.path)
        if isinstance(action, ToneAction):
            if actions.tone is None:
                raise _ActionFailed("the SkyBell cloud is not available")
            return await actions.tone(event, action.tone)
        if isinstance(action, LedAction):
            if actions.led is None:
                raise _ActionFailed("the SkyBell cloud is not available")
            return await actions.led(event, action.colour, action.seconds)
        if isinstance(action, StopRecordingAction):
            if actions.stop_recording is None:
                raise _ActionFailed("recording is not available")
            return await actions.stop_recording(event)
        raise _ActionFailed(f"{action.label} is not a doorbell action")

    # -- SwitchBot -------------------------------------------------------------------------------

    async def _switchbot_action(self, action: SceneAction | CommandAction) -> str:
        switchbot, catalog = self._switchbot, self._catalog
        if switchbot is None or catalog is None:
            raise _ActionFailed("SwitchBot is not configured")
        if isinstance(action, SceneAction):
            scene_id = await catalog.scene_id(action.scene)
            await self._retrying(lambda: switchbot.execute_scene(scene_id))
            return f"scene {action.scene} executed"
        device_id = await catalog.device_id(action.device)
        await self._retrying(
            lambda: switchbot.command(
                device_id, action.command, action.parameter, command_type=action.command_type
            )
        )
        return f"{action.device}: {action.command} sent"

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> None:
        # The client leaves 161/171 to us: a BLE device or hub that dropped off usually comes
        # back within seconds, so one late try is worth it; more would burn the daily budget.
        tries = self._offline_retries + 1
        for attempt in range(1, tries + 1):
            try:
                await call()
                return
            except (DeviceOffline, HubOffline) as err:
                if attempt == tries:
                    note = f" ({tries} attempts)" if tries > 1 else ""
                    raise _ActionFailed(_switchbot_detail(err) + note) from err
                await asyncio.sleep(self._retry_delay)

    # -- webhook ---------------------------------------------------------------------------------

    async def _webhook(self, rule: Rule, action: WebhookAction, event: Event) -> str:
        body: bytes | None = None
        params: dict[str, str] | None = None
        headers = {"Content-Type": "application/json"} if action.method == "POST" else {}
        headers.update(action.headers)
        if action.method == "POST":
            # default=str: a payload value JSON cannot carry must not cost the call.
            body = json.dumps({**event.as_dict(), "rule": rule.name}, default=str).encode()
        else:
            # GET has no body; the essentials go in the query.
            params = {
                "event": event.type,
                "device": event.device,
                "device_id": event.device_id,
                "id": event.id,
                "time": event.time.isoformat(),
                "rule": rule.name,
            }
        try:
            async with self._http.request(
                action.method,
                action.url,
                data=body,
                params=params,
                headers=headers,
                timeout=self._webhook_timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
        except TimeoutError:
            raise _ActionFailed(f"no answer within {self._webhook_timeout.total:g} s") from None
        except aiohttp.ClientError as err:
            # The type only: aiohttp's messages can quote the URL, which may hold a secret.
            raise _ActionFailed(f"cannot call it ({type(err).__name__})") from None
        if not 200 <= status < 300:
            raise _ActionFailed(f"HTTP {status}")
        return f"HTTP {status}"

    # -- state -----------------------------------------------------------------------------------

    def stats(self) -> AutomationStats:
        """Per rule: firings, skips and last results; plus the SwitchBot call budget."""
        return {
            "rules": [state.as_dict() for state in self._states],
            "running": len(self._tasks),
            "switchbot": self._switchbot.usage().as_dict() if self._switchbot else None,
        }

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every started action has finished (for tests and benchmarks)."""
        async with asyncio.timeout(timeout):
            await self._tasks.join()

    async def close(self, grace: float = 2.0) -> None:
        """Stop taking events, give running actions ``grace`` seconds, cancel the rest;
        safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.cancel()
        await self._tasks.cancel_all(grace)


async def _warn_missing(
    kind: str,
    wanted: list[tuple[Rule, str]],
    listing: Callable[[], Awaitable[Sequence[_T]]],
    find: Callable[[Sequence[_T], str], _T | None],
) -> None:
    """Warn, naming the rule, about each scene or device the account does not have."""
    try:
        items = await listing()
    except SwitchBotError as err:
        _LOGGER.warning(
            "cannot list SwitchBot %ss now (%s); will try at the first event", kind, err
        )
        return
    for rule, name in wanted:
        if find(items, name) is None:
            _LOGGER.warning(
                "rule %r: no SwitchBot %s %r on the account (known: %s)",
                rule.name,
                kind,
                name,
                ", ".join(repr(i.name) for i in items) or "none",
            )


def _switchbot_detail(err: SwitchBotError) -> str:
    if err.status_code is not None:
        return f"SwitchBot {err.status_code}: {err.message}"
    return str(err)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
