"""The SkyBell client against the simulated cloud: every endpoint, both auth modes, every error."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.errors import (
    ApiError,
    AuthError,
    BadResponse,
    CloudConnectionError,
    CloudTimeout,
    DeviceUnreachable,
    NotFound,
    ServerError,
    UnknownDevice,
)
from bridge.redact import Secret
from bridge.sim.cloud import SimCloud
from bridge.skybell import SkyBellClient, find_device, slugify

from .conftest import ClientFactory, FakeClock

FRONT = "0579ce92-72a5-4b1f-8191-e360876705c3"


@pytest.fixture(params=["key", "login"])
def client(request: pytest.FixtureRequest, make_client: ClientFactory) -> SkyBellClient:
    return make_client(request.param)


async def test_user_and_health(client: SkyBellClient) -> None:
    user = await client.user()
    assert user.email == "demo@skybell.example"
    assert user.premium_status == "premium"
    health = await client.health()
    assert health["SKYBELL_API_VER"] == "1.4.0"


async def test_devices_follow_pagination(sim: SimCloud, client: SkyBellClient) -> None:
    from bridge.sim.cloud import SimDevice

    for n in range(60):
        sim.devices[f"dev-{n}"] = SimDevice(id=f"dev-{n}", name=f"Door {n}", serial=f"S{n}")
    devices = await client.devices()
    assert len(devices) == 62
    assert len({d.id for d in devices}) == 62
    assert sum(1 for m, p in sim.calls if p.endswith("/devices/")) == 2


async def test_device_model(client: SkyBellClient) -> None:
    device = await client.device(FRONT)
    assert device.name == "Front Door"
    assert device.slug == "front-door"
    assert device.ip_address == "127.0.0.21"
    assert device.model == "SB_SLIM2_0001"
    assert device.online
    assert device.settings["image_quality"] == 1


async def test_battery_reported_where_given(client: SkyBellClient) -> None:
    devices = {d.slug: d for d in await client.devices()}
    assert devices["back-garden"].battery == 87
    assert devices["front-door"].battery is None


async def test_settings_update(sim: SimCloud, client: SkyBellClient) -> None:
    await client.update_settings(FRONT, {"image_quality": 3, "led_color": "#FF00FF"})
    assert sim.devices[FRONT].settings["image_quality"] == 3
    with pytest.raises(ApiError, match="image_quality"):
        await client.update_settings(FRONT, {"image_quality": 9})


async def test_snapshot_is_a_jpeg(client: SkyBellClient) -> None:
    snap = await client.snapshot(FRONT)
    assert snap.jpeg[:2] == b"\xff\xd8"
    assert snap.jpeg[-2:] == b"\xff\xd9"
    assert snap.taken_at is not None


async def test_live_call_parsed(sim: SimCloud, client: SkyBellClient) -> None:
    call = await client.start_live_call(FRONT)
    assert call.device_id == FRONT
    assert call.wss_endpoint.startswith("ws://127.0.0.1:")
    assert call.channel_arn.startswith("arn:aws:kinesisvideo:")
    assert call.region == "us-east-1"
    assert call.credentials.access_key_id
    assert call.credentials.expiration is not None
    assert call.client_id.startswith("VIEWER-FOR-CHANNEL")
    assert sim.live_sessions[FRONT] == 1
    assert "SecretAccessKey" not in repr(call)
    await client.stop_live_call(FRONT)
    assert sim.live_sessions[FRONT] == 0


def test_live_call_parses_the_documented_example() -> None:
    from bridge.skybell import LiveCall

    data = {
        "ice": [
            {"urls": "stun:stun.kinesisvideo.us-east-1.amazonaws.com:443"},
            {
                "urls": ["turn:1.2.3.4:443?transport=udp", "turns:1.2.3.4:443?transport=tcp"],
                "username": "u",
                "credential": "c-secret-value",
            },
        ],
        "endpoints": [
            {
                "Protocol": "HTTPS",
                "ResourceEndpoint": "https://r-1.kinesisvideo.us-east-1.amazonaws.com",
            },
            {
                "Protocol": "WSS",
                "ResourceEndpoint": "wss://v-1.kinesisvideo.us-east-1.amazonaws.com",
            },
        ],
        "signed": [
            '{"service":"kinesisvideo","headers":{"X-Amz-ClientId":"VIEWER-FOR-CHANNELarn:x"}}'
        ],
        "channelARN": "arn:aws:kinesisvideo:eu-west-1:5:channel/2274_be0e/17",
        "credentials": {
            "AccessKeyId": "ASIA1",
            "SecretAccessKey": "s3cr3t-key",
            "SessionToken": "tok-123456",
            "Expiration": "2024-02-29T18:31:11.000Z",
        },
        "signedWSS": "wss://v-1.kinesisvideo.us-east-1.amazonaws.com/?X-Amz-Signature=abc",
    }
    call = LiveCall.from_api("dev", data)
    assert call.region == "eu-west-1"  # taken from the ARN when aws_region is missing
    assert call.client_id == "VIEWER-FOR-CHANNELarn:x"
    assert call.ice_servers[1].urls == (
        "turn:1.2.3.4:443?transport=udp",
        "turns:1.2.3.4:443?transport=tcp",
    )
    assert call.ice_servers[1].as_dict()["credential"] == "c-secret-value"
    assert call.credentials.expiration == datetime(2024, 2, 29, 18, 31, 11, tzinfo=UTC)
    assert call.https_endpoint is not None
    with pytest.raises(BadResponse, match="WSS"):
        LiveCall.from_api("dev", {**data, "endpoints": []})


async def test_reboot(client: SkyBellClient) -> None:
    await client.reboot(FRONT)


async def test_activities_filters_and_pagination(sim: SimCloud, client: SkyBellClient) -> None:
    everything = await client.activities(limit=100)
    assert len(everything) == 8
    assert all(a.raw["image"] is None for a in everything)  # nopreviews by default
    front = await client.activities(device_id=FRONT)
    assert {a.device_id for a in front} == {FRONT}
    bells = await client.activities(event_type="doorbell")
    assert {a.event_type for a in bells} == {"doorbell"}
    newest = everything[0].event_time
    recent = await client.activities(start=newest - timedelta(hours=8))
    assert 0 < len(recent) < len(everything)
    paged = [a async for a in client.iter_activities(page=3)]
    assert [a.id for a in paged] == [a.id for a in everything]
    with_previews = await client.activities(limit=1, previews=True)
    assert with_previews[0].raw["image"]


async def test_activity_video_and_delete(sim: SimCloud, client: SkyBellClient) -> None:
    activity = (await client.activities(limit=1))[0]
    url = await client.activity_video_url(activity.id)
    assert f"/_sim/videos/{activity.id}.mp4" in url
    await client.delete_activity(activity.id)
    assert activity.id not in {a.id for a in await client.activities()}
    with pytest.raises(NotFound):
        await client.delete_activity(activity.id)


async def test_triggers_create_list_delete(sim: SimCloud, client: SkyBellClient) -> None:
    trigger = await client.create_trigger(
        FRONT,
        "http://127.0.0.1:1984/api/skybell/webhook",
        ["doorbell", "motion"],
        header_name="x-bridge-secret",
        header_value=Secret("hunter22-secret"),
    )
    assert trigger.enabled
    assert trigger.events == ("doorbell", "motion")
    assert sim.triggers[trigger.id]["meta_config"]["header_value"] == "hunter22-secret"
    listed = await client.triggers(FRONT)
    assert [t.id for t in listed] == [trigger.id]
    await client.delete_trigger(FRONT, trigger.id)
    assert await client.triggers(FRONT) == []
    with pytest.raises(ApiError, match="events"):
        await client.create_trigger(FRONT, "http://127.0.0.1/x", ["bogus"])


# -- auth ------------------------------------------------------------------------------------


async def test_api_key_refused(make_client: ClientFactory) -> None:
    client = make_client("key", api_key=Secret("00000000-bad0-key0-0000-000000000000"))
    with pytest.raises(AuthError, match="invalid API key"):
        await client.user()


async def test_wrong_password(make_client: ClientFactory) -> None:
    client = make_client("login", password=Secret("not-the-password"))
    with pytest.raises(AuthError, match="Incorrect username or password"):
        await client.user()


async def test_token_refreshed_before_expiry(
    sim: SimCloud, make_client: ClientFactory, clock: FakeClock
) -> None:
    client = make_client("login")
    await client.user()
    logins = sim.calls.count(("POST", "/api/v5/login/"))
    clock.advance(3600 - 60)  # inside the refresh margin, before the deadline
    await client.user()
    assert sim.calls.count(("PUT", "/api/v5/token/")) == 1
    assert sim.calls.count(("POST", "/api/v5/login/")) == logins


async def test_expired_token_gets_401_then_refresh_and_retry(
    sim: SimCloud, make_client: ClientFactory
) -> None:
    client = make_client("login")
    await client.user()
    sim.faults.expire_tokens = True  # the cloud revokes the token early
    user = await client.user()
    assert user.email
    assert sim.calls.count(("PUT", "/api/v5/token/")) == 1


async def test_refused_refresh_falls_back_to_login(
    sim: SimCloud, make_client: ClientFactory, clock: FakeClock
) -> None:
    client = make_client("login")
    await client.user()
    sim.faults.refuse_refresh = True
    clock.advance(4000)  # past expiry
    await client.user()
    assert sim.calls.count(("PUT", "/api/v5/token/")) == 1
    assert sim.calls.count(("POST", "/api/v5/login/")) == 2


async def test_concurrent_requests_refresh_once(
    sim: SimCloud, make_client: ClientFactory, clock: FakeClock
) -> None:
    client = make_client("login")
    await client.user()
    clock.advance(3590)
    await asyncio.gather(*(client.user() for _ in range(5)))
    assert sim.calls.count(("PUT", "/api/v5/token/")) == 1


async def test_logout_revokes_tokens(sim: SimCloud, make_client: ClientFactory) -> None:
    client = make_client("login")
    await client.user()
    await client.logout()
    assert ("GET", "/api/v5/logout/") in sim.calls
    await client.user()  # logs in again
    assert sim.calls.count(("POST", "/api/v5/login/")) == 2


def test_no_credentials_is_an_auth_error(session: aiohttp.ClientSession) -> None:
    with pytest.raises(AuthError, match="no SkyBell credentials"):
        SkyBellClient(session, base_url="http://127.0.0.1:1")


# -- errors ----------------------------------------------------------------------------------


async def test_device_unreachable_retried_once(sim: SimCloud, client: SkyBellClient) -> None:
    sim.faults.unreachable.add(FRONT)
    before = len(sim.calls)
    with pytest.raises(DeviceUnreachable) as info:
        await client.snapshot(FRONT)
    assert info.value.status == 599
    assert info.value.transient
    snapshot_calls = [c for c in sim.calls[before:] if c[1].endswith("/snapshot/")]
    assert len(snapshot_calls) == 2


async def test_unreachable_live_call(sim: SimCloud, client: SkyBellClient) -> None:
    sim.faults.unreachable.add(FRONT)
    with pytest.raises(DeviceUnreachable):
        await client.start_live_call(FRONT)


async def test_live_call_missed_then_failing_then_back(
    sim: SimCloud, client: SkyBellClient
) -> None:
    # The soak's "599, then 500, then back": the client retries the 599 once and meets the 500.
    sim.faults.live_call_statuses = [599, 500]
    with pytest.raises(ServerError) as info:
        await client.start_live_call(FRONT)
    assert info.value.status == 500
    assert sim.faults.live_call_statuses == []
    assert (await client.start_live_call(FRONT)).device_id == FRONT


async def test_not_your_device(client: SkyBellClient) -> None:
    with pytest.raises(NotFound, match="Not your device"):
        await client.device("11111111-2222-3333-4444-555555555555")


async def test_server_error(sim: SimCloud, client: SkyBellClient) -> None:
    sim.faults.server_errors = 1
    with pytest.raises(ServerError) as info:
        await client.user()
    assert info.value.status == 503
    assert info.value.transient
    assert (await client.user()).email  # the burst is over


async def test_malformed_body(sim: SimCloud, client: SkyBellClient) -> None:
    sim.faults.malformed = 1
    with pytest.raises(BadResponse, match="expected the JSON envelope"):
        await client.user()


async def test_timeout(sim: SimCloud, make_client: ClientFactory) -> None:
    client = make_client("key", timeout=0.2)
    sim.faults.delay = 1.0
    with pytest.raises(CloudTimeout) as info:
        await client.user()
    assert info.value.transient


async def test_connection_refused(session: aiohttp.ClientSession, unused_tcp_port: int) -> None:
    client = SkyBellClient(
        session, base_url=f"http://127.0.0.1:{unused_tcp_port}/api/v5", api_key=Secret("k" * 36)
    )
    with pytest.raises(CloudConnectionError, match="cannot reach"):
        await client.user()


async def test_error_envelope_and_data_false(
    aiohttp_server: object, session: aiohttp.ClientSession
) -> None:
    async def error_true(request: web.Request) -> web.Response:
        return web.json_response({"error": True, "message": "Something broke", "data": None})

    async def data_false(request: web.Request) -> web.Response:
        return web.json_response({"error": False, "message": "Nope", "data": False})

    app = web.Application()
    app.router.add_get("/user/", error_true)
    app.router.add_get("/devices/{id}/", data_false)
    app.router.add_delete("/devices/{id}/videostream/", data_false)
    server: TestServer = await aiohttp_server(app)  # type: ignore[operator]
    client = SkyBellClient(session, base_url=str(server.make_url("")), api_key=Secret("k" * 36))
    with pytest.raises(ApiError, match="Something broke"):
        await client.user()
    with pytest.raises(ApiError, match="Nope"):
        await client.device("x")
    await client.stop_live_call("x")  # data false is success for this endpoint


# -- names -----------------------------------------------------------------------------------


async def test_find_device_by_name_slug_or_id(client: SkyBellClient) -> None:
    devices = await client.devices()
    assert find_device(devices, "Front Door").id == FRONT
    assert find_device(devices, "front door").id == FRONT
    assert find_device(devices, "front-door").id == FRONT
    assert find_device(devices, FRONT).name == "Front Door"
    with pytest.raises(UnknownDevice, match="known devices: Front Door"):
        find_device(devices, "Garage")


def test_slugify() -> None:
    assert slugify("Front Door") == "front-door"
    assert slugify("  Café / Porch #2 ") == "cafe-porch-2"
    assert slugify("!!!") == "doorbell"
