"""The page's doorbell settings view in headless Chromium, against a whole bridge and the
simulated cloud: a change made in the page is stored by the cloud and shown as confirmed; a
refused value and a doorbell that does not answer are explained next to the control."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.sim.world import SimWorld

from .serve_util import FRONT, BridgeFactory
from .web_util import (  # noqa: F401 - browser_fixture is a fixture
    browser_fixture,
    expected_only,
    new_page,
    shot,
    until,
)

# Chromium logs every HTTP error answer of a fetch; these are the ones the tests provoke.
PROVOKED = ("status of 400", "status of 504")


async def _stored(world: SimWorld, key: str, value: Any) -> bool:
    return world.cloud.devices[FRONT].settings.get(key) == value


async def _text(page: Any, selector: str, wanted: str) -> bool:
    return wanted in (await page.text_content(selector) or "")


@pytest.mark.slow
async def test_settings_view_changes_reach_the_simulated_cloud(
    make_bridge: BridgeFactory, world: SimWorld, browser: Any
) -> None:
    bridge = await make_bridge()
    page, watch = await new_page(browser)
    await page.goto(bridge.http_url)
    await page.get_by_role("link", name="Doorbell settings of Front Door").click()
    await page.wait_for_selector("#ctl-indoor_chime")
    assert await page.text_content("main h1") == "Front Door: settings"
    assert await page.is_checked("#ctl-indoor_chime")
    assert await page.input_value("#ctl-chime_file") == "1.wav"
    assert await page.input_value("#ctl-led_color") == "#00ff00"

    await page.get_by_label("Indoor chime (mechanical)").uncheck()
    await until(lambda: _stored(world, "indoor_chime", False))
    await until(lambda: _text(page, "#settings-status", "Saved: Indoor chime"))
    assert not await page.is_checked("#ctl-indoor_chime")

    await page.select_option("#ctl-chime_file", "modern.wav")
    await until(lambda: _stored(world, "chime_file", "modern.wav"))

    await page.fill("#ctl-led_color", "#ff00ff")
    await until(lambda: _stored(world, "led_color", "#FF00FF"))

    await page.get_by_label("LED", exact=True).uncheck()
    await until(lambda: _stored(world, "led_color", "#000000"))
    await until(lambda: _text(page, "#settings-status", "Saved: LED"))
    assert await page.input_value("#ctl-led_color") == "#000000"

    await page.select_option("#ctl-outdoor_chime_volume", "high")
    await until(lambda: _stored(world, "outdoor_chime_volume", 2))

    await page.fill("#ctl-motion_sensitivity", "400")
    await page.press("#ctl-motion_sensitivity", "Tab")
    await until(lambda: _stored(world, "motion_sensitivity", 400))

    # Out of range: the bridge's message next to the control, which shows the cloud's value.
    await page.fill("#ctl-motion_sensitivity", "2000")
    await page.press("#ctl-motion_sensitivity", "Tab")
    error = page.locator("#err-motion_sensitivity")
    await error.wait_for()
    assert "motion_sensitivity: 2000 is out of range 0 to 1000" in (
        await error.text_content() or ""
    )
    await until(lambda: _value_is(page, "#ctl-motion_sensitivity", "400"))
    assert world.cloud.devices[FRONT].settings["motion_sensitivity"] == 400
    await shot(page, "doorbell-settings")

    # A reload shows what the cloud has.
    await page.reload()
    await page.wait_for_selector("#ctl-indoor_chime")
    assert not await page.is_checked("#ctl-indoor_chime")
    assert await page.input_value("#ctl-chime_file") == "modern.wav"

    await page.get_by_role("button", name="Reboot doorbell").click()
    await page.get_by_role("button", name="Reboot now").click()
    await until(lambda: _text(page, "#settings-status", "reboot sent: Front Door restarts"))
    assert ("POST", f"/api/v5/devices/{FRONT}/reboot/") in world.cloud.calls

    phone, phone_watch = await new_page(browser, width=360, height=740)
    await phone.goto(bridge.http_url + "#/doorbell/front-door")
    await phone.wait_for_selector("#ctl-speaker_volume")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the settings view scrolls sideways: {width} px"
    await shot(phone, "doorbell-settings-360")
    assert expected_only(watch, *PROVOKED) == []
    assert phone_watch.errors == []


async def _value_is(page: Any, selector: str, value: str) -> bool:
    return bool(await page.input_value(selector) == value)


@pytest.mark.slow
async def test_settings_view_says_the_doorbell_did_not_answer(
    make_bridge: BridgeFactory, world: SimWorld, browser: Any
) -> None:
    bridge = await make_bridge()
    page, watch = await new_page(browser)
    await page.goto(bridge.http_url + "#/live/front-door")
    await page.get_by_role("link", name="Doorbell settings").click()
    await page.wait_for_selector("#ctl-motion_detection")
    assert await page.is_checked("#ctl-motion_detection")
    world.cloud.faults.unreachable.add(FRONT)

    # click(), not uncheck(): the page puts the box back as soon as the cloud says no, which
    # can be before Playwright looks, and uncheck() would call that a click that did nothing.
    await page.get_by_label("Motion detection").click()
    error = page.locator("#err-motion_detection")
    await error.wait_for()
    text = await error.text_content() or ""
    assert text.startswith("doorbell did not answer: Front Door did not answer"), text
    await until(lambda: _text(page, "#settings-status", "Not saved: Motion detection"))
    assert await page.is_checked("#ctl-motion_detection")  # back to what the cloud has
    assert world.cloud.devices[FRONT].settings["motion_detection"] is True
    await shot(page, "doorbell-settings-599")

    # The next change, once the doorbell answers again, clears the message and goes through.
    world.cloud.faults.unreachable.clear()
    await page.get_by_label("Motion detection").uncheck()
    await until(lambda: _stored(world, "motion_detection", False))
    await until(lambda: error.is_hidden())
    assert expected_only(watch, *PROVOKED) == []
