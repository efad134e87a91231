"""The whole simulated world on one aiohttp server: SkyBell cloud, KVS signaling, doorbells.

When the bridge starts a live call, the simulated doorbell connects to its KVS channel as master
(as a real one does when the cloud wakes it) and answers each viewer's offer with a fresh aiortc
peer streaming H.264 from a picture with a burned-in clock. Ending the live call closes them.

Each doorbell's media can be read and changed while it runs, from Python
(:meth:`SimDoorbell.media_stats`, :meth:`SimDoorbell.update_media`) or over HTTP:
``GET /_sim/doorbells/{name_or_id}/media`` returns the settings and the counters summed over
every viewer it has had (PLI, FIR, NACK, keyframe requests honoured/ignored, keyframes and
frames sent, current resolution); ``POST`` the same path with a JSON object of settings to
change (``keyframes``, ``gop_seconds``, ``loss_percent``, ``resolution: [w, h]``, ...). Live
peers take ``resolution``, ``loss_percent``, ``retransmit``, ``keyframes`` and ``gop_seconds``
at once; everything applies to the next viewer. ``POST /_sim/doorbells/{name_or_id}/fault``
with ``{"fault": NAME}`` breaks it the way the field does: ``drop`` (the peers close),
``vanish`` (they go silent without closing), ``expire_credentials`` (the channel's temporary
AWS keys expire now), and ``go_away``/``reconnect_ice``/``junk`` (armed for the next viewer's
offer: GO_AWAY instead of relaying it, or RECONNECT_ICE_SERVER/junk frames before it).
``GET /_sim/doorbells/{name_or_id}/heard`` tells what viewers said through the doorbell's
speaker (level, dominant frequency, onset time, packets and bytes: see bridge/sim/hearing.py);
``talk: false`` in the media settings makes the next viewers' calls refuse audio (answered
sendonly). ``relay_only: true`` in the media settings makes the next viewers reach the doorbell only
through the TURN server of ``POST /_sim/extra_ice``. The default keyframe mode of a whole run
comes from ``SKYBELL_BRIDGE_SIM_KEYFRAMES`` (see bridge/sim/doorbell.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from bridge.kvs.presign import presign_wss
from bridge.media.webrtc_source import choose_ice_servers
from bridge.sim.cloud import SimCloud, SimDevice
from bridge.sim.doorbell import LIVE_FIELDS, SimDoorbellPeer, SimMediaSettings, SimPeerStats
from bridge.sim.hearing import Ear
from bridge.sim.kvs import VIEWER_FAULTS, SimKvs
from bridge.sim.kvs_master import SimKvsMaster, master_url_factory
from bridge.sim.media_control import parse_media_changes, settings_json
from bridge.sim.press import PressRecord, SimPresser
from bridge.sim.switchbot import SimSwitchBot
from bridge.sim.videos import SimVideos

__all__ = ["SWITCHBOT_PREFIX", "SimDoorbell", "SimWorld"]

_LOGGER = logging.getLogger(__name__)


class SimDoorbell:
    """One simulated doorbell's media side: a KVS master and a peer per viewer."""

    def __init__(self, world: SimWorld, device: SimDevice) -> None:
        self.world = world
        self.device = device
        self.media = SimMediaSettings(label=device.name.upper())
        self.peers: dict[str, SimDoorbellPeer] = {}
        self.offers = 0
        # Fault switches for tests: delay the answer; answer the next offer with garbage.
        self.answer_delay = 0.0
        self.garbage_answers = 0
        # True: something outside the simulator (a browser page in tests) is this doorbell's
        # KVS master, connected with ``master_url()``; live calls then start no master here.
        self.external_master = False
        self._master: SimKvsMaster | None = None
        self._ended = SimPeerStats()  # counters of viewers already gone, summed
        self._last_ear: Ear | None = None  # the latest viewer that said something, even if gone

    @property
    def settings(self) -> SimMediaSettings:
        """Media settings for the next viewer; resolution follows the cloud's image_quality."""
        quality = int(self.device.settings.get("image_quality", self.media.image_quality))
        return dataclasses.replace(self.media, image_quality=quality)

    def configure(self, **changes: Any) -> None:
        """Change media settings (fps, bitrate, profile, audio_codec, loss_percent, cut_after...)."""
        self.media = dataclasses.replace(self.media, **changes)

    def update_media(self, **changes: Any) -> None:
        """Like configure(), and apply what can change live to the connected viewers too."""
        self.configure(**changes)
        live = {k: v for k, v in changes.items() if k in LIVE_FIELDS and v is not None}
        if live:
            for peer in self.peers.values():
                peer.update(**live)

    def set_resolution(self, width: int, height: int) -> None:
        """Switch every viewer (and the next ones) to a new size; each gets an IDR."""
        self.update_media(resolution=(width, height))

    def media_stats(self) -> dict[str, Any]:
        """Settings and counters (summed over all viewers so far) as the control API shows them."""
        totals = self._ended.as_dict()
        for peer in self.peers.values():
            for name, value in peer.stats.as_dict().items():
                totals[name] += value
        for name in ("width", "height"):
            totals.pop(name)  # a sum of sizes means nothing; "resolution" is the live one
        latest = list(self.peers.values())[-1] if self.peers else None
        return {
            "id": self.device.id,
            "name": self.device.name,
            "settings": settings_json(self.settings),
            "viewers": len(self.peers),
            "offers": self.offers,
            "heard": self.heard(),
            "stats": {
                **totals,
                "resolution": list(latest.resolution) if latest is not None else None,
            },
        }

    def heard(self) -> dict[str, Any]:
        """What the latest viewer that talked said through the doorbell (see hearing.py)."""
        ears = [p.ear for p in self.peers.values() if p.ear.packets]
        ear = ears[-1] if ears else self._last_ear
        return {"id": self.device.id, "name": self.device.name, **(ear or Ear()).stats()}

    def _retire(self, peer: SimDoorbellPeer) -> None:
        if peer.ear.packets:
            self._last_ear = peer.ear
        for name, value in peer.stats.as_dict().items():
            setattr(self._ended, name, getattr(self._ended, name) + value)

    async def ensure_master(self, channel_arn: str, endpoint: str, creds: dict[str, str]) -> None:
        """Connect to the channel as master if not already connected."""
        if self.external_master or (self._master is not None and self._master.connected):
            return
        if self._master is not None:
            await self._master.close()
        self._master = SimKvsMaster(
            self.world.http,
            master_url_factory(
                endpoint, channel_arn, self.world.kvs.region, creds, self.world.kvs.clock
            ),
            self._on_offer,
            self._on_candidate,
        )
        self._master.start()
        await asyncio.wait_for(self._master.wait_connected(), 5.0)

    def master_url(self) -> str:
        """A freshly presigned master URL for this doorbell's channel (created if needed)."""
        kvs = self.world.kvs
        arn = kvs.create_channel(f"{self.device.serial}_{self.device.id}")  # as _live_call names it
        creds = kvs.issue_credentials(arn)
        return presign_wss(
            kvs.endpoint(self.world.base_url),
            arn,
            None,  # no client id: the master
            kvs.region,
            creds["AccessKeyId"],
            creds["SecretAccessKey"],
            creds["SessionToken"],
            now=kvs.clock(),
        )

    async def _on_offer(self, viewer_id: str, offer: str) -> str:
        self.offers += 1
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if self.garbage_answers > 0:
            self.garbage_answers -= 1
            return "v=0\r\nthis is not an answer\r\n"
        old = self.peers.pop(viewer_id, None)
        if old is not None:
            self._retire(old)
            await old.close()
        master = self._master

        async def trickle(candidate: str, mid: str | None, index: int | None) -> None:
            if master is not None:
                await master.send_candidate(viewer_id, candidate, mid, index)

        settings = self.settings
        # Only a relay-only doorbell uses the call's ICE servers: others need none on loopback,
        # and a benchmark's deliberately dead STUN server must not slow their answers.
        ice = choose_ice_servers(self.world.extra_ice) if settings.relay_only else []
        peer = SimDoorbellPeer(settings, ice_servers=ice, on_candidate=trickle)
        self.peers[viewer_id] = peer
        return await peer.handle_offer(offer)

    async def _on_candidate(
        self, viewer_id: str, cand: str, mid: str | None, index: int | None
    ) -> None:
        peer = self.peers.get(viewer_id)
        if peer is not None:
            await peer.add_remote_candidate(cand, mid, index)

    async def end_calls(self) -> None:
        """The cloud ended the live call: stop streaming to every viewer."""
        peers, self.peers = list(self.peers.values()), {}
        for peer in peers:
            self._retire(peer)
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)

    def vanish(self) -> None:
        """Every viewer's peer goes silent without closing (see SimDoorbellPeer.vanish)."""
        for peer in self.peers.values():
            peer.vanish()

    async def close(self) -> None:
        """Stop everything; safe to call twice."""
        await self.end_calls()
        if self._master is not None:
            master, self._master = self._master, None
            await master.close()


SWITCHBOT_PREFIX = "/switchbot"


class SimWorld:
    """Cloud, signaling and doorbells served from one port on 127.0.0.1."""

    def __init__(self, cloud: SimCloud | None = None, kvs: SimKvs | None = None) -> None:
        self.cloud = cloud or SimCloud()
        self.kvs = kvs or SimKvs()
        self.doorbells = {d.id: SimDoorbell(self, d) for d in self.cloud.devices.values()}
        # Extra ICE servers in every live call (e.g. a dead STUN server, for benchmarks).
        self.extra_ice: list[dict[str, Any]] = []
        # Fault switch: break the signature of the next N signedWSS URLs (the bridge must get a
        # 403 and presign for itself).
        self.tampered_signed_wss = 0
        self.base_url = ""
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.cloud.live_provider = self._live_call
        self.cloud.on_live_stop = self._live_stop
        # Presses: set presser.udp_target (e.g. ("127.0.0.1", 5000)) to send the UDP packets.
        self.presser = SimPresser(self.cloud, lambda: self.http)
        self.videos = SimVideos(self.cloud)  # the activity MP4s behind the download URLs
        # A simulated SwitchBot account under /switchbot, for rules when none is configured.
        self.switchbot = SimSwitchBot()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The doorbells' own HTTP session (for their signaling sockets)."""
        assert self._http is not None, "SimWorld.start() first"
        return self._http

    def app(self) -> web.Application:
        """The combined application."""
        app = self.cloud.app()
        self.kvs.setup(app)
        app.router.add_post("/_sim/extra_ice", self._set_extra_ice)
        app.router.add_get("/_sim/doorbells/{name_or_id}/media", self._get_media)
        app.router.add_post("/_sim/doorbells/{name_or_id}/media", self._set_media)
        app.router.add_post("/_sim/doorbells/{name_or_id}/fault", self._fault)
        app.router.add_get("/_sim/doorbells/{name_or_id}/heard", self._get_heard)
        self.presser.setup(app)
        self.videos.setup(app)
        app.add_subapp(SWITCHBOT_PREFIX, self.switchbot.app())
        return app

    async def press(self, device: str, event: str = "doorbell") -> PressRecord:
        """Press a doorbell (or trigger motion): UDP packet, cloud activity, webhooks."""
        return await self.presser.press(device, event)

    async def _set_extra_ice(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, list):
            return web.json_response({"error": "expected a list of ICE servers"}, status=400)
        self.extra_ice = body
        return web.json_response(self.extra_ice)

    def _bell_or_404(self, request: web.Request) -> SimDoorbell:
        name_or_id = request.match_info["name_or_id"]
        try:
            return self.doorbell(name_or_id)
        except KeyError:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no simulated doorbell {name_or_id!r}"}),
                content_type="application/json",
            ) from None

    async def _get_media(self, request: web.Request) -> web.Response:
        return web.json_response(self._bell_or_404(request).media_stats())

    async def _get_heard(self, request: web.Request) -> web.Response:
        return web.json_response(self._bell_or_404(request).heard())

    async def _set_media(self, request: web.Request) -> web.Response:
        bell = self._bell_or_404(request)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        try:
            changes = parse_media_changes(body, bell.media)
            bell.update_media(**changes)
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response(bell.media_stats())

    async def _fault(self, request: web.Request) -> web.Response:
        bell = self._bell_or_404(request)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        name = body.get("fault") if isinstance(body, dict) else None
        arn = self.kvs.create_channel(f"{bell.device.serial}_{bell.device.id}")
        if name == "drop":
            await bell.end_calls()
        elif name == "vanish":
            bell.vanish()
        elif name == "expire_credentials":
            self.kvs.expire_credentials(arn)
        elif name in VIEWER_FAULTS:
            self.kvs.arm_viewer_fault(arn, name)
        else:
            known = ", ".join(("drop", "vanish", "expire_credentials", *VIEWER_FAULTS))
            return web.json_response(
                {"error": f"unknown fault {name!r}; known: {known}"}, status=400
            )
        return web.json_response({"fault": name, "viewers": len(bell.peers)})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` and return the base URL (``http://127.0.0.1:PORT``)."""
        # The simulated doorbells' peers offer loopback only (SimDoorbellPeer scopes them); the
        # rest of the process keeps its own ICE settings.
        self._http = aiohttp.ClientSession()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    def bind(self, base_url: str) -> None:
        """Use an externally served ``app()`` (pytest's aiohttp_server) at ``base_url``."""
        self._http = self._http or aiohttp.ClientSession()
        self.base_url = base_url

    async def close(self) -> None:
        """Stop the doorbells and the server; safe to call twice."""
        await asyncio.gather(*(d.close() for d in self.doorbells.values()))
        await self.kvs.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    def doorbell(self, name_or_id: str) -> SimDoorbell:
        """Find a simulated doorbell by device id or name."""
        for bell in self.doorbells.values():
            if name_or_id in (bell.device.id, bell.device.name):
                return bell
        raise KeyError(name_or_id)

    async def _live_call(self, device: SimDevice, base: str) -> dict[str, Any]:
        bell = self.doorbells.get(device.id) or self.doorbells.setdefault(
            device.id, SimDoorbell(self, device)
        )
        client_id = f"VIEWER-{secrets.token_hex(8)}"
        fields = self.kvs.live_call_fields(f"{device.serial}_{device.id}", base, client_id)
        await bell.ensure_master(
            fields["channelARN"], fields["endpoints"][1]["ResourceEndpoint"], fields["credentials"]
        )
        if self.tampered_signed_wss > 0:
            self.tampered_signed_wss -= 1
            fields["signedWSS"] = fields["signedWSS"].replace(
                "X-Amz-Signature=", "X-Amz-Signature=00"
            )
        headers = {"X-Amz-ChannelARN": fields["channelARN"], "X-Amz-ClientId": client_id}
        signed_header = json.dumps({"service": "kinesisvideo", "headers": headers})
        return {**fields, "ice": list(self.extra_ice), "signed": [signed_header]}

    async def _live_stop(self, device: SimDevice) -> None:
        bell = self.doorbells.get(device.id)
        if bell is not None:
            await bell.end_calls()
