"""The running bridge: hub streams, recorder, events, the HTTP app and the RTSP listener.

``serve`` is this plus a wait; tests start a ``Bridge`` on port 0 against the simulator and
talk to it only through its ports, as a user's tools would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from bridge.app import Parts, build_app, build_auth_limiter
from bridge.automation import SwitchBotClient
from bridge.automation.engine import RuleEngine
from bridge.config import RecordDeviceSettings, RecordSettings, Settings
from bridge.errors import UnknownDevice
from bridge.events import Event, EventOptions, EventService
from bridge.limits import ConnectionLimiter, install_accept_error_filter
from bridge.media.aiortc_patch import parse_host_addresses
from bridge.media.hub import Hub, Session
from bridge.media.live import open_live_session
from bridge.preflight import bind_error, check_exposure
from bridge.record import ClipStore, DeviceRecordOptions, Recorder, RecordOptions, StorageFull
from bridge.record.archive import CloudArchive
from bridge.record.s3 import S3Options, S3Uploader
from bridge.routes.limits import LimitedSite
from bridge.rtsp import RtspServer
from bridge.skybell import SkyBellClient

__all__ = ["INDEX_NAME", "Bridge", "record_options"]

_LOGGER = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite3"  # clips and events share one database in the clips folder
_RECORDED_EVENTS = ("doorbell", "motion")
_GIB = 1 << 30


def _gib(value: float | None) -> int | None:
    return None if value is None else int(value * _GIB)


def _device_options(d: RecordDeviceSettings) -> DeviceRecordOptions:
    return DeviceRecordOptions(
        preroll=d.preroll,
        postroll=d.postroll,
        max_length=d.max_length,
        record_motion=d.record_motion,
        keep_warm=d.keep_warm,
        audio=d.audio,
        max_bytes=_gib(d.max_gb),
        max_age_days=d.max_age_days,
    )


def s3_options(settings: Settings) -> S3Options:
    """The uploader's options from the ``[s3]`` settings."""
    s3 = settings.s3
    return S3Options(
        bucket=s3.bucket,
        prefix=s3.prefix,
        endpoint_url=s3.endpoint_url or None,
        region=s3.region or None,
        delete_local_after_upload=s3.delete_local,
        addressing_style=s3.addressing_style,
    )


def record_options(r: RecordSettings) -> RecordOptions:
    """The recorder's options from the ``[record]`` settings."""
    return RecordOptions(
        preroll=r.preroll,
        postroll=r.postroll,
        max_length=r.max_length,
        record_motion=r.record_motion,
        keep_warm=r.keep_warm,
        audio=r.audio,
        min_free_bytes=r.min_free_mb << 20,
        max_total_bytes=_gib(r.max_total_gb),
        max_age_days=r.max_age_days,
        devices={name: _device_options(d) for name, d in r.devices.items()},
    )


class Bridge:
    """Everything ``skybell-bridge serve`` runs; ``start()`` then ``close()``."""

    def __init__(
        self,
        settings: Settings,
        client: SkyBellClient,
        http: aiohttp.ClientSession,
        switchbot: SwitchBotClient | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.switchbot = switchbot
        st = settings.streams
        self.hub = Hub(
            idle_timeout=st.idle_timeout,
            media_timeout=st.media_timeout,
            silence_timeout=st.silence_timeout,
            ring_seconds=st.buffer_seconds,
            ring_bytes=st.buffer_mb << 20,
            keyframe_interval=st.keyframe_interval,
        )
        # URLs a client on this machine can use; *_bound are the addresses really listened on.
        self.http_url = ""
        self.rtsp_url = ""
        self.http_bound: list[str] = []
        self.rtsp_bound: list[str] = []
        self.parts: Parts | None = None
        self._http = http
        self._runner: web.AppRunner | None = None
        self._rtsp: RtspServer | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._closed = False

    @property
    def devices(self) -> list[str]:
        """The stream names being served."""
        return [s.name for s in self.hub.streams]

    def _connector(self, device_id: str) -> Callable[[], Awaitable[Session]]:
        async def connect() -> Session:
            # The doorbell-side peer only: browser-facing ones follow webrtc.ice_host_addresses.
            hosts = parse_host_addresses(self.settings.streams.ice_host_addresses)
            return await open_live_session(
                self.client, self._http, device_id, ice_host_addresses=hosts
            )

        return connect

    async def start(self) -> None:
        """Find the doorbells, start recording and events, then open the listeners."""
        settings = self.settings
        check_exposure(settings.server)
        devices = await self.client.devices()
        for device in devices:
            self.hub.add(device.id, device.slug, self._connector(device.id))
        self._closers.append(self.hub.close)

        clips_dir = settings.storage.clips_dir
        store = await asyncio.to_thread(ClipStore, clips_dir)
        self._closers.append(lambda: asyncio.to_thread(store.close))
        recorder = Recorder(self.hub, store, record_options(settings.record))
        self._closers.append(recorder.close)
        for stream in self.hub.streams:
            # Presses (and rules' record actions) are recorded with the device's pre-roll, so
            # while its stream is live the hub keeps keyframes coming (streams.keyframe_interval).
            preroll = recorder.options.for_device(stream.device_id, stream.name).preroll
            stream.wants_preroll = preroll > 0
        recovered = await recorder.start()
        if recovered:
            _LOGGER.info("recovered %d clip(s) left by an earlier run", len(recovered))

        uploader = None
        if settings.s3.enabled:
            uploader = S3Uploader(store, s3_options(settings))
            self._closers.append(uploader.close)
            await uploader.start()
        archive = CloudArchive(self.client, self._http, store, retention=recorder.retention)
        self._closers.append(archive.close)
        if settings.archive.enabled:
            archive.run_periodic(
                settings.archive.sync_interval, lookback=settings.archive.since_days * 86400
            )

        ev = settings.events
        options = EventOptions(**{f.name: getattr(ev, f.name) for f in dataclasses.fields(ev)})
        events = EventService(self.client, devices, options, log_path=clips_dir / INDEX_NAME)
        self._closers.append(events.close)
        await events.start()
        events.bus.subscribe("recorder", self._record_event(recorder))
        if settings.archive.enabled:
            events.bus.subscribe("archive", self._archive_event(archive))

        engine = RuleEngine(
            settings.rules,
            switchbot=self.switchbot,
            record=self._record_action(recorder),
            warm=self._warm_action(),
            http=self._http,
            log=events.log,
            devices=events.directory,
        )
        self._closers.append(engine.close)
        await engine.start()
        engine.attach(events.bus)

        srv = settings.server
        password = srv.password.reveal() if srv.password is not None else None
        # One limiter for both listeners: the descriptors they spend come from one budget.
        limiter = ConnectionLimiter(
            max_connections=srv.max_connections,
            max_per_client=srv.max_connections_per_client,
            exempt=[a for a in srv.trusted_proxies.split(",") if a.strip()],
        )
        uninstall = install_accept_error_filter(asyncio.get_running_loop())
        self._closers.append(lambda: asyncio.to_thread(uninstall))
        auth_limiter = build_auth_limiter(srv)  # one wrong-password count for HTTP and RTSP
        self._rtsp = RtspServer(
            self.hub.get,
            host=srv.rtsp_host,
            port=srv.rtsp_port,
            username=srv.username if password is not None else None,
            password=password,
            auth=srv.rtsp_auth,
            audio=srv.rtsp_audio,
            header_timeout=srv.header_timeout,
            max_udp_sessions=srv.rtsp_max_udp_sessions,
            limiter=limiter,
            auth_limiter=auth_limiter,
        )
        self._closers.append(self._rtsp.close)

        self.parts = Parts(
            settings, self.client, self.hub, devices, events, store, recorder, engine, uploader
        )
        self.parts.limiter = limiter
        self.parts.auth_limiter = auth_limiter
        # aiohttp closes a connection that sends no whole request within its keep-alive timeout
        # (from the connect on): the slowloris guard, and idle keep-alive connections go too.
        self._runner = web.AppRunner(
            build_app(self.parts),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=srv.header_timeout,
        )
        self._closers.append(self._runner.cleanup)
        await self._runner.setup()
        # HTTP binds first and RTSP (which announces itself) second, so a busy port or a bad
        # host stops the start before anything claims to be listening.
        try:
            await LimitedSite(self._runner, srv.host, srv.port, limiter=limiter).start()
        except OSError as err:
            raise bind_error(err, "", srv.host, srv.port) from None
        try:
            await self._rtsp.start()
        except OSError as err:
            raise bind_error(err, "rtsp_", srv.rtsp_host, srv.rtsp_port) from None
        self.parts.rtsp_port = self._rtsp.port
        self.http_bound = [_hostport(a[0], a[1]) for a in self._runner.addresses]
        self.rtsp_bound = [_hostport(self._rtsp.host, self._rtsp.port)]
        host, port = self._runner.addresses[0][:2]
        self.http_url = f"http://{_urlhost(host)}:{port}/"
        self.rtsp_url = f"rtsp://{_urlhost(self._rtsp.host)}:{self._rtsp.port}/"

    @staticmethod
    def _record_event(recorder: Recorder) -> Callable[[Event], Awaitable[None]]:
        async def on_event(event: Event) -> None:
            if event.type not in _RECORDED_EVENTS or not event.known_device:
                return
            try:
                await recorder.trigger(event.device_id, event.type, activity_id=event.activity_id)
            except StorageFull as err:
                # Live view goes on; the log says why this event has no clip.
                _LOGGER.warning("not recording %s at %s: %s", event.type, event.device, err)

        return on_event

    @staticmethod
    def _archive_event(archive: CloudArchive) -> Callable[[Event], Awaitable[None]]:
        async def on_event(event: Event) -> None:
            # vready: the cloud finished uploading a recording; fetch it into the clips folder.
            if event.type == "vready" and event.activity_id and event.known_device:
                archive.on_vready(event.device_id, event.activity_id)

        return on_event

    @staticmethod
    def _record_action(recorder: Recorder) -> Callable[[Event], Awaitable[str]]:
        async def record(event: Event) -> str:
            clip = await recorder.trigger(
                event.device_id, event.type, activity_id=event.activity_id
            )
            return f"recording {event.device}" if clip else f"{event.type} is not recorded"

        return record

    def _warm_action(self) -> Callable[[Event, float], Awaitable[str]]:
        async def warm(event: Event, seconds: float) -> str:
            stream = self.hub.get(event.device_id)
            if stream is None:
                raise UnknownDevice(event.device, [s.name for s in self.hub.streams])
            stream.keep_warm(seconds)
            return f"{stream.name} kept live for {seconds:g} s"

        return warm

    async def close(self) -> None:
        """Stop listening, finish clips, end every live session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        # Last started, first stopped: the listeners go before what they serve from.
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:
                _LOGGER.exception("error while shutting down")


def _urlhost(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
